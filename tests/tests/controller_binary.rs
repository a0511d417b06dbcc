//! The `dittofs-controller` binary as a process: `crd` prints the CRD; run against the real apiserver it
//! serves `/livez`, `/readyz` (after the first sync) and Prometheus `/metrics`, logs JSON, reconciles, and
//! on SIGTERM stops cleanly and releases its Lease.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use kube::api::Api;
use serde_json::json;

use dittofs_api::{DittoServer, conditions};
use dittofs_tests::controller_world::*;
use dittofs_tests::kube_env::{ControlPlane, wait_until};
use dittofs_tests::objects::*;
use dittofs_tests::pod::Proc;
use dittofs_tests::{free_port, workspace_bin};

#[test]
#[ignore = "real-server tier: needs the built dittofs-controller binary; run `make test`"]
fn crd_subcommand_prints_the_committed_crd() -> anyhow::Result<()> {
    let out = Command::new(workspace_bin("dittofs-controller")?).arg("crd").output()?;
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
        install_crd(ns.client()).await?;
        let port = free_port()?;
        let dir = tempfile::tempdir()?;
        let mut cmd = Command::new(workspace_bin("dittofs-controller")?);
        cmd.env("KUBECONFIG", cp.kubeconfig_path())
            .env_remove("POD_NAME")
            .env_remove("RUST_LOG")
            .args(["--admin-addr", &format!("127.0.0.1:{port}"), "--log-format", "json", "--agent-image", AGENT_IMAGE])
            .args(["--namespace", ns.name(), "--lease-namespace", ns.name(), "--identity", "binary-under-test"]);
        let mut controller = Proc::spawn("dittofs-controller", cmd, dir.path().join("controller.log"))?;
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
        let status = controller.terminate(Duration::from_secs(15));
        let text = controller.log_text();
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
        let lease = Api::<Lease>::namespaced(ns.client(), ns.name()).get(LEASE).await?;
        assert_eq!(lease.spec.unwrap().holder_identity, None, "the Lease is released");
        Ok(())
    })
    .await
}
