//! The `dittofs-agent` binary run as its container runs it: environment from the pod template, a
//! kubeconfig holding only the ServiceAccount's token (what the projected token gives in a pod), the admin
//! server, SIGTERM. Also bounds its footprint (RSS, CPU while idle) and checks its log for secrets.
//!
//! The binary is `$DITTOFS_AGENT_BIN`, else the one built next to this test (`cargo build --bins`;
//! `make test` does that). Release figures over a longer idle window come from `make bench`.

use std::{
    process::Command,
    time::{Duration, Instant},
};

use anyhow::Context as _;
use dittofs_api::{agent_env, names};
use dittofs_tests::{
    agent_world::{POD, Rig, SERVER},
    dittofs::{ADMIN_PASSWORD, Options},
    free_port,
    kube_env::{ControlPlane, wait_until},
    pod::{Proc, service_account_env},
    workspace_bin,
};

/// Fast-path polls (one a second) the idle CPU is measured over.
const IDLE_POLLS: u64 = 10;
/// Idle CPU bound: the debug build idles at a few millicores (one loopback GET a second and a watch); a
/// poller that spins (a deadline in the past, a timer re-armed at once) burns a whole core, 1000.
const IDLE_MILLICORES: f64 = 100.0;

/// A counter's value in Prometheus text (`name{labels} value`), 0 when absent.
fn counter(metrics: &str, series: &str) -> u64 {
    metrics.lines().find_map(|l| l.strip_prefix(series)?.trim().parse().ok()).unwrap_or(0)
}

/// (RSS, peak RSS) in KiB from /proc.
fn rss_kib(pid: u32) -> anyhow::Result<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let field = |name: &str| -> anyhow::Result<u64> {
        let line = status.lines().find(|l| l.starts_with(name)).with_context(|| format!("no {name}"))?;
        Ok(line.split_whitespace().nth(1).context("no value")?.parse()?)
    };
    Ok((field("VmRSS:")?, field("VmHWM:")?))
}

/// User + system CPU time in clock ticks (1/100 s on Linux).
fn cpu_ticks(pid: u32) -> anyhow::Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = &stat[stat.rfind(')').context("bad stat")? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    Ok(fields[11].parse::<u64>()? + fields[12].parse::<u64>()?)
}

#[tokio::test]
#[ignore = "real-server tier: needs the Kubernetes test binaries and DittoFS; run `make test`"]
async fn the_binary_runs_like_its_container_and_stays_small() -> anyhow::Result<()> {
    let bin = workspace_bin("dittofs-agent")?;
    let cp = ControlPlane::shared();
    cp.with_temp_ns("agent-process", async |ns| {
        let rig = Rig::new(ns, Options::default(), "30s").await?;

        // The ServiceAccount's projected volume and the apiserver's address, as the kubelet gives them.
        let token = cp.service_account_token(ns.name(), &names::agent_service_account(SERVER)).await?;
        let dir = tempfile::tempdir()?;
        let service_account = service_account_env(cp, &token, ns.name(), &dir.path().join("sa"))?;
        let admin_port = free_port()?;
        let started = Instant::now();
        let mut cmd = Command::new(&bin);
        cmd.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .envs(service_account)
            .env(agent_env::POD_NAME, POD)
            .env(agent_env::POD_NAMESPACE, ns.name())
            .env(agent_env::DITTOSERVER_NAME, SERVER)
            .env(agent_env::DITTOFS_URL, rig.fs.url())
            .env(agent_env::ADMIN_PASSWORD, ADMIN_PASSWORD)
            .env(agent_env::ADMIN_USERNAME, "admin")
            .env(agent_env::ADMIN_SECRET_NAME, names::admin_bootstrap_secret(SERVER))
            .env(agent_env::ADMIN_SECRET_KEY, "password")
            .env(agent_env::ADMIN_ADDR, format!("127.0.0.1:{admin_port}"))
            .env(agent_env::LOG_FORMAT, "json");
        let mut proc = Proc::spawn("dittofs-agent", cmd, dir.path().join("agent.log"))?;
        let pid = proc.pid();
        let log_path = proc.log.clone();
        let show_log = || std::fs::read_to_string(&log_path).unwrap_or_default();

        let http = reqwest::Client::new();
        let admin = format!("http://127.0.0.1:{admin_port}");
        wait_until("/readyz", Duration::from_secs(10), async || {
            let r = http.get(format!("{admin}/readyz")).send().await?;
            anyhow::ensure!(r.status() == 200, "{}", r.status());
            Ok(())
        })
        .await
        .with_context(show_log)?;
        assert_eq!(http.get(format!("{admin}/livez")).send().await?.status(), 200);
        let entry = rig.wait_in_sync(Duration::from_secs(20)).await.with_context(show_log)?;
        eprintln!("MEASURED process start → entry in sync: {:?}", started.elapsed());
        let traceparent = entry.traceparent.clone().context("the entry carries the poll's traceparent")?;
        let parts: Vec<&str> = traceparent.split('-').collect();
        assert!(parts.len() == 4 && parts[1].len() == 32 && parts[2].len() == 16, "{traceparent}");

        // Footprint after start-up, and CPU over an idle stretch: from the settled entry (every adapter's
        // health reported, the recheck after the start done), IDLE_POLLS fast-path polls by its /metrics.
        rig.wait_entry("healthy adapters", Duration::from_secs(10), |e| {
            anyhow::ensure!(e.adapters.iter().all(|a| a.health.as_deref() == Some("healthy")), "not settled");
            Ok(())
        })
        .await
        .with_context(show_log)?;
        let fast_polls = async || -> anyhow::Result<u64> {
            let text = http.get(format!("{admin}/metrics")).send().await?.text().await?;
            Ok(counter(&text, r#"dittofs_agent_polls_total{kind="ready",result="ok"}"#))
        };
        let (polls_before, ticks_before, idle_started) = (fast_polls().await?, cpu_ticks(pid)?, Instant::now());
        wait_until(&format!("{IDLE_POLLS} idle fast-path polls"), Duration::from_secs(3 * IDLE_POLLS), async || {
            let polls = fast_polls().await?;
            anyhow::ensure!(polls >= polls_before + IDLE_POLLS, "{} polls", polls - polls_before);
            Ok(())
        })
        .await?;
        let (ticks, idle) = (cpu_ticks(pid)? - ticks_before, idle_started.elapsed());
        let (rss, peak) = rss_kib(pid)?;
        let millicores = ticks as f64 * 10.0 / idle.as_secs_f64();
        eprintln!(
            "MEASURED {}: RSS {:.1} MiB (peak {:.1} MiB), idle CPU {ticks} ticks in {idle:?} = {millicores:.2} millicores",
            bin.display(),
            rss as f64 / 1024.0,
            peak as f64 / 1024.0
        );
        assert!(rss < 48 * 1024, "RSS {rss} KiB");
        assert!(millicores < IDLE_MILLICORES, "idle CPU {millicores:.1} millicores over {IDLE_POLLS} fast-path polls");

        let metrics = http.get(format!("{admin}/metrics")).send().await?.text().await?;
        for family in [
            r#"dittofs_agent_polls_total{kind="full",result="ok"}"#,
            r#"dittofs_agent_polls_total{kind="ready",result="ok"}"#,
            "dittofs_agent_dittofs_info_requests_total",
            r#"dittofs_agent_status_writes_total{result="done"}"#,
            "dittofs_agent_last_successful_poll_timestamp_seconds",
        ] {
            assert!(metrics.contains(family), "{family} missing from /metrics:\n{metrics}");
        }

        // SIGTERM: a prompt, clean exit.
        let term = Instant::now();
        let status = proc.terminate(Duration::from_secs(5))?;
        eprintln!("MEASURED SIGTERM → exit {status} in {:?}", term.elapsed());
        assert!(status.success(), "{status}\n{}", show_log());

        // No secret in the log.
        let log = show_log();
        let access = rig.secret_key(names::ACCESS_TOKEN_KEY).await?.context("access-token")?;
        let refresh = rig.secret_key(names::REFRESH_TOKEN_KEY).await?.context("refresh-token")?;
        let password = rig.operator_password().await?;
        for (what, secret) in [("access token", access.as_str()), ("refresh token", &refresh), ("operator password", &password), ("admin password", ADMIN_PASSWORD)] {
            assert!(!log.contains(secret), "the {what} appears in the agent's log");
        }
        assert!(log.lines().all(|l| serde_json::from_str::<serde_json::Value>(l).is_ok()), "LOG_FORMAT=json: every line is JSON\n{log}");
        Ok(())
    })
    .await
}
