//! The `dittofs-agent` binary run as its container runs it: environment from the pod template, a
//! kubeconfig holding only the ServiceAccount's token (what the projected token gives in a pod), the admin
//! server, SIGTERM. Also measures its footprint (RSS, CPU while idle) and checks its log for secrets.
//!
//! The binary is `$DITTOFS_AGENT_BIN`, else the one built next to this test (`cargo build --bins`;
//! `make test` does that). Point `DITTOFS_AGENT_BIN` at `target/release/dittofs-agent` for release figures,
//! and set `DITTOFS_AGENT_IDLE_SECS` (default 20) for a longer CPU measurement.

mod agent_common;

use std::{
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use agent_common::{POD, Rig, SERVER};
use anyhow::Context as _;
use dittofs_api::{agent_env, names};
use dittofs_tests::{
    dittofs::{ADMIN_PASSWORD, Options},
    kube_env::{ControlPlane, wait_until},
};
use k8s_openapi::api::{
    authentication::v1::{TokenRequest, TokenRequestSpec},
    core::v1::ServiceAccount,
};
use kube::api::PostParams;
use serde_json::json;

fn agent_bin() -> anyhow::Result<PathBuf> {
    if let Some(bin) = std::env::var_os("DITTOFS_AGENT_BIN").filter(|b| !b.is_empty()) {
        return Ok(bin.into());
    }
    let exe = std::env::current_exe()?;
    exe.ancestors()
        .skip(1)
        .take(2)
        .map(|d| d.join("dittofs-agent"))
        .find(|c| c.is_file())
        .with_context(|| format!("dittofs-agent not found next to {}: run `cargo build --bins`", exe.display()))
}

/// Kills the agent if the test ends early.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
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
    let bin = agent_bin()?;
    let cp = ControlPlane::shared();
    cp.with_temp_ns("agent-process", async |ns| {
        let rig = Rig::new(ns, Options::default(), "30s").await?;

        // A kubeconfig with only the ServiceAccount token, like the projected token in the pod.
        let request = TokenRequest {
            spec: TokenRequestSpec { expiration_seconds: Some(3600), ..Default::default() },
            ..Default::default()
        };
        let token = ns
            .api::<ServiceAccount>()
            .create_token_request(&names::agent_service_account(SERVER), &PostParams::default(), &request)
            .await?
            .status
            .context("no token")?
            .token;
        let admin_kubeconfig = kube::config::Kubeconfig::read_from(cp.kubeconfig_path())?;
        let cluster = admin_kubeconfig.clusters[0].cluster.clone().context("no cluster")?;
        let dir = tempfile::tempdir()?;
        let kubeconfig = dir.path().join("kubeconfig");
        std::fs::write(
            &kubeconfig,
            serde_json::to_string(&json!({
                "apiVersion": "v1", "kind": "Config",
                "clusters": [{ "name": "test", "cluster": {
                    "server": cluster.server,
                    "certificate-authority-data": cluster.certificate_authority_data,
                }}],
                "users": [{ "name": "agent", "user": { "token": token } }],
                "contexts": [{ "name": "agent", "context": { "cluster": "test", "user": "agent", "namespace": ns.name() } }],
                "current-context": "agent",
            }))?,
        )?;
        let admin_port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let log_path = dir.path().join("agent.log");
        let log = std::fs::File::create(&log_path)?;
        let started = Instant::now();
        let child = Command::new(&bin)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("KUBECONFIG", &kubeconfig)
            .env(agent_env::POD_NAME, POD)
            .env(agent_env::POD_NAMESPACE, ns.name())
            .env(agent_env::DITTOSERVER_NAME, SERVER)
            .env(agent_env::DITTOFS_URL, rig.fs.url())
            .env(agent_env::ADMIN_PASSWORD, ADMIN_PASSWORD)
            .env(agent_env::ADMIN_USERNAME, "admin")
            .env(agent_env::ADMIN_SECRET_NAME, names::admin_bootstrap_secret(SERVER))
            .env(agent_env::ADMIN_SECRET_KEY, "password")
            .env(agent_env::ADMIN_ADDR, format!("127.0.0.1:{admin_port}"))
            .env(agent_env::LOG_FORMAT, "json")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("spawn {}", bin.display()))?;
        let pid = child.id();
        let mut proc = Proc(child);
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

        // Footprint after start-up, and CPU over an idle stretch (fast path every second).
        tokio::time::sleep(Duration::from_secs(5)).await;
        let ticks_before = cpu_ticks(pid)?;
        // `DITTOFS_AGENT_IDLE_SECS` lengthens the window for finer CPU figures (10 ms ticks).
        let idle_secs = std::env::var("DITTOFS_AGENT_IDLE_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(20);
        let idle = Duration::from_secs(idle_secs);
        tokio::time::sleep(idle).await;
        let ticks = cpu_ticks(pid)? - ticks_before;
        let (rss, peak) = rss_kib(pid)?;
        let millicores = ticks as f64 * 10.0 / idle.as_secs_f64();
        eprintln!(
            "MEASURED {}: RSS {:.1} MiB (peak {:.1} MiB), idle CPU {ticks} ticks in {idle:?} = {millicores:.2} millicores",
            bin.display(),
            rss as f64 / 1024.0,
            peak as f64 / 1024.0
        );
        assert!(rss < 48 * 1024, "RSS {rss} KiB");

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
        Command::new("kill").args(["-TERM", &pid.to_string()]).status()?;
        let status = loop {
            if let Some(status) = proc.0.try_wait()? {
                break status;
            }
            anyhow::ensure!(term.elapsed() < Duration::from_secs(5), "still running 5s after SIGTERM");
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
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
