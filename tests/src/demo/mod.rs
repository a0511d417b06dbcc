//! The demo behind `make demo`: a local real control plane, the controller, DittoFS (the emulator, or the
//! real server with `DITTOFS_BIN`) and its agent run as the pod's containers would; then SMB and NFS are
//! turned off and on through the DittoFS API, and after each step it shows what Kubernetes has and how long
//! it took to converge (with `TRACES=1`, also the Jaeger URL of one change's trace). With a terminal it stays up until Ctrl-C; without one (CI, scripts) it prints a
//! summary, tears down, and exits non-zero unless every step converged.

mod walkthrough;

use std::{io::IsTerminal, time::Instant};

use anyhow::Context as _;

use crate::jaeger::Jaeger;
use crate::kube_env::{ControlPlane, ControlPlaneOptions};

/// `TRACES=1` (`make demo TRACES=1`): export both binaries' traces to a local Jaeger and print the URL of
/// the trace of one adapter change.
pub const TRACES_ENV: &str = "TRACES";

/// Progress lines for the set-up steps, with how long each took.
pub(crate) struct Progress {
    started: Instant,
}

impl Progress {
    pub(crate) async fn step<T>(&self, what: &str, step: impl Future<Output = anyhow::Result<T>>) -> anyhow::Result<T> {
        eprintln!("demo: {what}…");
        let start = Instant::now();
        let value = step.await.with_context(|| format!("demo step failed: {what}"))?;
        eprintln!("demo: {what}: {:.1}s", start.elapsed().as_secs_f64());
        Ok(value)
    }
}

pub async fn run() -> anyhow::Result<()> {
    let interactive = std::io::stdin().is_terminal() && std::io::stdout().is_terminal();
    let progress = Progress { started: Instant::now() };
    let cp = progress
        .step("start Kubernetes: etcd, kube-apiserver (RBAC on), kube-controller-manager", async {
            ControlPlane::start(ControlPlaneOptions::default()).await
        })
        .await?;
    let dir = tempfile::Builder::new().prefix("dittofs-demo-").tempdir()?;
    let jaeger = match std::env::var(TRACES_ENV).is_ok_and(|v| v == "1") {
        true => Some(progress.step("start Jaeger (OTLP receiver and query API)", Jaeger::start(dir.path())).await?),
        false => None,
    };
    let result = walkthrough::run(&cp, dir.path(), &progress, interactive, jaeger.as_ref()).await;
    if let Err(e) = &result {
        eprintln!("\ndemo failed: {e:#}\n\n{}", cp.log_tails(20));
    }
    eprintln!("demo: tearing down (total {:.0}s)", progress.started.elapsed().as_secs_f64());
    drop(cp);
    let all_converged = result?;
    anyhow::ensure!(all_converged, "some steps did not converge (see the summary above)");
    Ok(())
}
