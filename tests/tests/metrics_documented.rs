//! docs/reference.md's metrics tables are what the binaries serve: the controller binary and a server pod's agent
//! (DittoFS — the emulator, or the real server with `DITTOFS_BIN` — and the agent binary with its container's env)
//! run against the real control plane until every documented metric shows up in their `/metrics` with its type
//! and labels; then every `dittofs_*` family they serve must be documented, with exactly those labels.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use anyhow::Context as _;
use k8s_openapi::api::core::v1::Secret;
use kube::api::PostParams;
use serde_json::json;

use dittofs_tests::controller_world::AGENT_IMAGE;
use dittofs_tests::deploy::repo_root;
use dittofs_tests::dittofs::ADMIN_PASSWORD;
use dittofs_tests::kube_env::{ControlPlane, wait_until};
use dittofs_tests::metrics_doc::{Metric, documented, served};
use dittofs_tests::objects::{create_server, install_crd, server};
use dittofs_tests::pod::{Pod, Proc};
use dittofs_tests::{free_port, workspace_bin};

const CR: &str = "fs";

/// The documented metrics whose name starts with `prefix`.
fn rows(all: &BTreeMap<String, Metric>, prefix: &str) -> BTreeMap<String, Metric> {
    all.iter().filter(|(name, _)| name.starts_with(prefix)).map(|(n, m)| (n.clone(), m.clone())).collect()
}

/// What of `documented` a scrape lacks: a missing family, another type, or a label set no series has.
fn lacking(documented: &BTreeMap<String, Metric>, scrape: &BTreeMap<String, Metric>) -> Vec<String> {
    let wrong = |name: &String, doc: &Metric| match scrape.get(name) {
        None => Some(format!("{name}: not served")),
        Some(s) if s.kind != doc.kind => Some(format!("{name}: served as a {}, documented as a {}", s.kind, doc.kind)),
        Some(s) if !doc.label_sets.is_subset(&s.label_sets) => {
            Some(format!("{name}: documented labels {:?}, served {:?}", doc.label_sets, s.label_sets))
        }
        Some(_) => None,
    };
    documented.iter().filter_map(|(name, doc)| wrong(name, doc)).collect()
}

#[tokio::test]
#[ignore = "real-server tier: needs the Kubernetes test binaries, DittoFS and the built binaries; run `make test`"]
async fn every_documented_metric_is_served_and_every_served_metric_is_documented() -> anyhow::Result<()> {
    let cp = ControlPlane::shared();
    cp.with_temp_ns("metrics-docs", async |ns| {
        install_crd(ns.client()).await?;
        // The bootstrap admin password the harness starts DittoFS with, so the agent can provision its account.
        let admin: Secret = serde_json::from_value(
            json!({"metadata": {"name": "fs-admin"}, "stringData": {"password": ADMIN_PASSWORD}}),
        )?;
        ns.api::<Secret>().create(&PostParams::default(), &admin).await?;
        let dir = tempfile::tempdir()?;
        let port = free_port()?;
        let mut cmd = Command::new(workspace_bin("dittofs-controller")?);
        cmd.env("KUBECONFIG", cp.kubeconfig_path())
            .env_remove("POD_NAME")
            .env_remove("RUST_LOG")
            .args(["--admin-addr", &format!("127.0.0.1:{port}"), "--agent-image", AGENT_IMAGE])
            .args(["--namespace", ns.name(), "--lease-namespace", ns.name(), "--identity", "metrics-docs"]);
        let controller = Proc::spawn("dittofs-controller", cmd, dir.path().join("controller.log"))?;
        let spec = json!({"storage": {"metadataSize": "1Gi"},
            "identity": {"admin": {"passwordSecretRef": {"name": "fs-admin", "key": "password"}}}});
        create_server(ns, &server(CR, spec)?).await?;
        let pod = Pod::start(cp, ns.name(), CR, dir.path()).await.with_context(|| controller.log_tail(40))?;

        let reference = std::fs::read_to_string(repo_root().join("docs/reference.md"))?;
        let all = documented(&reference)?;
        let expected = [
            ("controller", format!("http://127.0.0.1:{port}/metrics"), rows(&all, "dittofs_controller_")),
            ("agent", format!("{}/metrics", pod.agent_admin), rows(&all, "dittofs_agent_")),
        ];
        anyhow::ensure!(
            expected.iter().map(|(_, _, rows)| rows.len()).sum::<usize>() == all.len(),
            "rows of neither binary: {all:?}"
        );
        let http = reqwest::Client::builder().timeout(Duration::from_secs(5)).build()?;
        for (binary, url, rows) in &expected {
            // Series of a label family appear with their first event (a login, a write): wait for all of them.
            let scrape =
                wait_until(&format!("the {binary}'s documented metrics"), Duration::from_secs(60), async || {
                    let scrape = served(&http.get(url).send().await?.error_for_status()?.text().await?)?;
                    let lacking = lacking(rows, &scrape);
                    anyhow::ensure!(lacking.is_empty(), "{lacking:#?}");
                    Ok(scrape)
                })
                .await
                .with_context(|| format!("{}\n{}", controller.log_tail(40), pod.agent.log_tail(40)))?;
            // The other way: nothing served that the reference does not name, nor with other labels.
            for (name, metric) in &scrape {
                let doc =
                    rows.get(name).with_context(|| format!("the {binary} serves {name}, not in docs/reference.md"))?;
                assert_eq!(&metric.label_sets, &doc.label_sets, "{name}: label sets served by the {binary}");
            }
            eprintln!("{binary}: {} metric families, each documented", scrape.len());
        }
        Ok(())
    })
    .await
}
