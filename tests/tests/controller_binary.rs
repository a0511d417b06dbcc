//! The `dittofs-controller` binary as a process: `crd` prints the CRD; run against the real apiserver it
//! serves `/livez`, `/readyz` (after the first sync) and Prometheus `/metrics`, logs JSON, reconciles, and
//! on SIGTERM stops cleanly and releases its Lease.

mod controller_common;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use kube::api::Api;
use serde_json::json;

use controller_common::*;
use dittofs_api::{DittoServer, conditions};
use dittofs_tests::kube_env::{ControlPlane, wait_until};

/// The binary built next to this test executable (`cargo build --bins`, as `make test` does).
fn binary() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    exe.ancestors()
        .skip(1)
        .take(2)
        .map(|d| d.join("dittofs-controller"))
        .find(|p| p.is_file())
        .ok_or_else(|| anyhow::anyhow!("dittofs-controller not built: run `cargo build -p dittofs-controller`"))
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

#[test]
#[ignore = "real-server tier: needs the built dittofs-controller binary; run `make test`"]
fn crd_subcommand_prints_the_committed_crd() -> anyhow::Result<()> {
    let out = Command::new(binary()?).arg("crd").output()?;
    assert!(out.status.success());
    let committed =
        std::fs::read_to_string(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../deploy/crds/dittoservers.yaml"))?;
    assert_eq!(String::from_utf8(out.stdout)?, committed);
    Ok(())
}

#[tokio::test]
#[ignore = "real-server tier: needs the Kubernetes test binaries and the built controller; run `make test`"]
async fn the_binary_serves_health_and_metrics_and_stops_on_sigterm() -> anyhow::Result<()> {
    let cp = ControlPlane::shared();
    cp.with_temp_ns("ctrl-binary", async |ns| {
        ensure_crd(ns.client()).await?;
        let port = free_port()?;
        let log = tempfile::NamedTempFile::new()?;
        let mut child = Command::new(binary()?)
            .env("KUBECONFIG", cp.kubeconfig_path())
            .env_remove("POD_NAME")
            .env_remove("RUST_LOG")
            .args(["--admin-addr", &format!("127.0.0.1:{port}"), "--log-format", "json", "--agent-image", AGENT_IMAGE])
            .args(["--namespace", ns.name(), "--lease-namespace", ns.name(), "--identity", "binary-under-test"])
            .stdout(Stdio::from(log.reopen()?))
            .stderr(Stdio::from(log.reopen()?))
            .spawn()?;
        let http = reqwest::Client::new();
        let url = |path: &str| format!("http://127.0.0.1:{port}{path}");
        let result = async {
            wait_until("/livez", Duration::from_secs(20), async || {
                let r = http.get(url("/livez")).send().await?;
                anyhow::ensure!(r.status() == 200, "{}", r.status());
                Ok(())
            })
            .await?;
            let ready_after = Instant::now();
            wait_until("/readyz", Duration::from_secs(20), async || {
                let r = http.get(url("/readyz")).send().await?;
                anyhow::ensure!(r.status() == 200, "{}", r.status());
                Ok(())
            })
            .await?;
            eprintln!("ready {:?} after /livez", ready_after.elapsed());

            create_server(ns, &server("fs", json!({"storage": {"metadataSize": "1Gi"}}))?).await?;
            let servers: Api<DittoServer> = ns.api();
            wait_for_condition(&servers, "fs", conditions::CONFIG_READY, "True", Duration::from_secs(30)).await?;
            let metrics = wait_until("reconcile metrics", Duration::from_secs(10), async || {
                let text = http.get(url("/metrics")).send().await?.text().await?;
                anyhow::ensure!(text.contains("dittofs_controller_reconciles_total{result=\"ok\"}"), "{text}");
                Ok(text)
            })
            .await?;
            assert!(metrics.contains("dittofs_controller_leader 1"), "{metrics}");
            let value = |name: &str| -> f64 {
                metrics.lines().find_map(|l| l.strip_prefix(name)?.trim().parse().ok()).unwrap_or(f64::NAN)
            };
            let (sum, count) = (
                value("dittofs_controller_reconcile_duration_seconds_sum"),
                value("dittofs_controller_reconcile_duration_seconds_count"),
            );
            eprintln!("{count} reconciles, mean {:.1} ms", 1000.0 * sum / count);
            assert!(metrics.contains("dittofs_controller_writes_total{kind=\"StatefulSet\"} 1"), "{metrics}");
            anyhow::Ok(())
        }
        .await;

        // SIGTERM: a clean exit, the Lease handed back.
        let stopped = Instant::now();
        Command::new("kill").args(["-TERM", &child.id().to_string()]).status()?;
        let status = wait_until("the controller to exit", Duration::from_secs(15), async || {
            child.try_wait()?.ok_or_else(|| anyhow::anyhow!("still running"))
        })
        .await;
        let text = std::fs::read_to_string(log.path())?;
        if result.is_err() || status.is_err() {
            eprintln!("controller log:\n{text}");
        }
        result?;
        let status = status?;
        eprintln!("exited {status} {:?} after SIGTERM", stopped.elapsed());
        assert!(status.success(), "{status}");
        let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
        assert!(!lines.is_empty());
        for line in &lines {
            serde_json::from_str::<serde_json::Value>(line).map_err(|e| anyhow::anyhow!("not JSON ({e}): {line}"))?;
        }
        let lease = Api::<Lease>::namespaced(ns.client(), ns.name()).get("dittofs-controller-leader").await?;
        assert_eq!(lease.spec.unwrap().holder_identity, None, "the Lease is released");
        Ok(())
    })
    .await
}
