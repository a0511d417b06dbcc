//! Safety rules of the controller's adapter part against the real control plane (agent reports written
//! as the agent writes them): no report or a fresh agent acts on nothing; an unreachable DittoFS keeps
//! everything; a successful empty report removes everything; entries of pods that cannot exist are
//! pruned and a server scaled to zero exposes nothing; a reconcile with nothing changed writes nothing
//! and a restarted controller changes nothing that was right; the garbage collector removes it all.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

use dittofs_api::{DittoServer, conditions};
use dittofs_tests::controller_world::adapters::*;
use dittofs_tests::controller_world::*;
use dittofs_tests::kube_env::{ControlPlane, TempNamespace, wait_until};
use dittofs_tests::objects::*;

const CR: &str = "fs";
const WAIT: Duration = Duration::from_secs(10);

async fn start(ns: &TempNamespace<'_>) -> anyhow::Result<(Running, Api<DittoServer>)> {
    started(ns, CR, json!({"storage": {"metadataSize": "1Gi"}})).await
}

/// Every object of the server, adapter ones included, with its resourceVersion; for the StatefulSet
/// (whose status kube-controller-manager keeps writing) its generation, which only spec changes move.
async fn all_versions(ns: &TempNamespace<'_>) -> anyhow::Result<BTreeMap<String, String>> {
    let mut objects: Vec<_> = children_of(CR).into_iter().filter(|(k, _)| *k != "StatefulSet").collect();
    let v = view(ns, CR).await?;
    objects.extend(v.services.into_iter().map(|(n, _)| ("Service", n)));
    objects.extend(v.policies.into_iter().map(|(n, _)| ("NetworkPolicy", n)));
    let mut versions = resource_versions(ns, &objects).await?;
    let sts = ns.api::<StatefulSet>().get(CR).await?;
    versions.insert("StatefulSet generation".into(), format!("{:?}", sts.metadata.generation));
    Ok(versions)
}

fn writes(running: &Running) -> BTreeMap<&'static str, u64> {
    let kinds = ["Service", "NetworkPolicy", "StatefulSet", "DittoServerStatus", "Secret", "ConfigMap"];
    kinds.into_iter().map(|k| (k, running.controller.metrics().write_count(k))).collect()
}

fn agents(ds: &DittoServer) -> Vec<String> {
    ds.status.iter().flat_map(|s| s.agents.iter()).map(|a| a.pod_name.clone()).collect()
}

#[tokio::test]
#[ignore = "real-server tier: needs the Kubernetes test binaries; run `make test`"]
async fn without_a_completed_poll_nothing_is_created_or_deleted() -> anyhow::Result<()> {
    ControlPlane::shared()
        .with_temp_ns("ctrl-adapter-noreport", async |ns| {
            let (running, servers) = start(ns).await?;
            // A labelled adapter Service of this server exists from before (e.g. the controller restarted),
            // and a labelled one that is not the server's (no owner reference): that one is never touched.
            let uid = servers.get(CR).await?.metadata.uid.unwrap_or_default();
            let labelled = |name: &str, owners: Value| -> anyhow::Result<Service> {
                Ok(serde_json::from_value(json!({
                    "metadata": {"name": name, "ownerReferences": owners, "labels": {
                        "app.kubernetes.io/instance": CR, "dittofs.io/adapter-service": "true",
                        "dittofs.io/adapter-type": "old"}},
                    "spec": {"ports": [{"port": 7}]}
                }))?)
            };
            let owner = json!([{"apiVersion": "dittofs.dittofs.com/v1alpha1", "kind": "DittoServer", "name": CR,
                                "uid": uid, "controller": true}]);
            ns.api::<Service>().create(&PostParams::default(), &labelled("fs-adapter-old", owner)?).await?;
            ns.api::<Service>().create(&PostParams::default(), &labelled("fs-adapter-theirs", json!([]))?).await?;
            let before = view(ns, CR).await?;
            assert_eq!(before.services, [("fs-adapter-old".to_owned(), 7), ("fs-adapter-theirs".to_owned(), 7)]);

            wait_adapters_ready(&servers, CR, "Unknown", "NoReport").await?;
            // An agent that has not completed a poll yet (it only logged in).
            let fresh =
                json!({"podName": "fs-0", "auth": {"authenticated": true, "reason": "AuthenticationSucceeded"}});
            report_entry(&servers, CR, fresh).await?;
            wait_for_condition(&servers, CR, conditions::AUTHENTICATED, "True", WAIT).await?;
            running.settle(Duration::from_millis(500)).await?;
            assert_eq!(view(ns, CR).await?, before, "no report: nothing created or deleted");
            assert_eq!(adapters_ready(&servers, CR).await?.1, "NoReport");

            // The first completed poll is authoritative: the stale Service goes, NFS appears; theirs stays.
            report(&servers, CR, "fs-0", vec![serving("nfs", 12049)]).await?;
            let mut want = expected(CR, &[("nfs", 12049)], true);
            want.services.push(("fs-adapter-theirs".to_owned(), 7));
            wait_view(ns, CR, &want, WAIT).await?;
            running.stop().await
        })
        .await
}

#[tokio::test]
#[ignore = "real-server tier: needs the Kubernetes test binaries; run `make test`"]
async fn unreachable_keeps_everything_and_an_empty_report_removes_everything() -> anyhow::Result<()> {
    ControlPlane::shared()
        .with_temp_ns("ctrl-adapter-unreach", async |ns| {
            let (running, servers) = start(ns).await?;
            let both = [("nfs", 12049), ("smb", 1445)];
            report(&servers, CR, "fs-0", vec![serving("nfs", 12049), serving("smb", 1445)]).await?;
            wait_view(ns, CR, &expected(CR, &both, true), WAIT).await?;
            running.settle(Duration::from_millis(500)).await?;
            let versions = all_versions(ns).await?;

            // DittoFS down: the agent keeps its last list, or has none (restarted while DittoFS is down).
            for kept in [vec![serving("nfs", 12049), serving("smb", 1445)], vec![]] {
                report_unreachable(&servers, CR, "fs-0", kept).await?;
                let message = wait_adapters_ready(&servers, CR, "Unknown", "AgentUnreachable").await?;
                assert!(message.contains("fs-0") && message.contains("ConnectionRefused"), "{message}");
                running.settle(Duration::from_millis(500)).await?;
                assert_eq!(view(ns, CR).await?, expected(CR, &both, true), "nothing deleted");
                assert_eq!(all_versions(ns).await?, versions, "nothing changed");
            }
            let st = servers.get(CR).await?.status.unwrap();
            assert_eq!(st.adapters_summary.as_deref(), Some("nfs:12049,smb:1445"), "the stored view is kept");

            // Back, with every adapter off: a successful empty list is authoritative.
            report(&servers, CR, "fs-0", vec![stopped("nfs", 12049), stopped("smb", 1445)]).await?;
            wait_view(ns, CR, &View::default(), WAIT).await?;
            let message = wait_adapters_ready(&servers, CR, "True", "AdaptersExposed").await?;
            assert_eq!(message, "no adapter is serving: none is exposed");
            let st = servers.get(CR).await?.status.unwrap();
            assert!(st.adapters.is_empty() && st.adapters_summary.is_none(), "{st:?}");
            running.stop().await
        })
        .await
}

#[tokio::test]
#[ignore = "real-server tier: needs the Kubernetes test binaries; run `make test`"]
async fn entries_of_pods_that_cannot_exist_are_pruned_and_zero_replicas_expose_nothing() -> anyhow::Result<()> {
    ControlPlane::shared()
        .with_temp_ns("ctrl-adapter-stale", async |ns| {
            let (running, servers) = start(ns).await?;
            report(&servers, CR, "fs-0", vec![serving("nfs", 12049)]).await?;
            // An entry of a pod of a larger, older StatefulSet (only fs-0 can exist with replicas 1).
            report(&servers, CR, "fs-1", vec![serving("smb", 1445)]).await?;
            wait_until("fs-1's entry to be pruned", WAIT, async || {
                let names = agents(&servers.get(CR).await?);
                anyhow::ensure!(names == ["fs-0"], "{names:?}");
                Ok(())
            })
            .await?;
            wait_view(ns, CR, &expected(CR, &[("nfs", 12049)], true), WAIT).await?;

            // Stopped: nothing runs, so nothing is exposed, and fs-0's entry is stale too.
            servers.patch(CR, &PatchParams::default(), &Patch::Merge(json!({"spec": {"replicas": 0}}))).await?;
            wait_view(ns, CR, &View::default(), WAIT).await?;
            let message = wait_adapters_ready(&servers, CR, "True", "AdaptersExposed").await?;
            assert_eq!(message, "scaled to zero replicas: no adapter is exposed");
            wait_until("fs-0's entry to be pruned", WAIT, async || {
                let names = agents(&servers.get(CR).await?);
                anyhow::ensure!(names.is_empty(), "{names:?}");
                Ok(())
            })
            .await?;
            running.stop().await
        })
        .await
}

#[tokio::test]
#[ignore = "real-server tier: needs the Kubernetes test binaries; run `make test`"]
async fn nothing_changed_means_no_write_and_a_restarted_controller_changes_nothing() -> anyhow::Result<()> {
    ControlPlane::shared()
        .with_temp_ns("ctrl-adapter-restart", async |ns| {
            let (running, servers) = start(ns).await?;
            report(&servers, CR, "fs-0", vec![serving("nfs", 12049), serving("smb", 1445)]).await?;
            wait_view(ns, CR, &expected(CR, &[("nfs", 12049), ("smb", 1445)], true), WAIT).await?;
            wait_adapters_ready(&servers, CR, "True", "AdaptersExposed").await?;
            running.settle(Duration::from_secs(1)).await?;

            // A status change that does not change the adapters (a new traceparent) reconciles, writes nothing.
            let versions = all_versions(ns).await?;
            let before = writes(&running);
            let reconciles = running.controller.metrics().total_reconciles();
            let mut entry = servers.get(CR).await?.status.unwrap().agents.remove(0);
            entry.traceparent = Some(traceparent(99));
            report_entry(&servers, CR, serde_json::to_value(&entry)?).await?;
            running.settle(Duration::from_secs(1)).await?;
            assert!(running.controller.metrics().total_reconciles() > reconciles, "the status change reconciled");
            assert_eq!(all_versions(ns).await?, versions, "nothing written when nothing changed");
            let after = writes(&running);
            for kind in ["Service", "NetworkPolicy"] {
                assert_eq!(after[kind], before[kind], "{kind}: {before:?} → {after:?}");
            }
            let ds_version = servers.get(CR).await?.resource_version();
            running.stop().await?;

            let restarted = start_controller(ns.client(), ns.name());
            restarted.wait_reconciles("the restarted controller to reconcile", Some("ok"), 0).await?;
            restarted.settle(Duration::from_secs(1)).await?;
            assert_eq!(all_versions(ns).await?, versions, "the restarted controller changed nothing");
            assert_eq!(servers.get(CR).await?.resource_version(), ds_version, "not even the status");
            let wrote = writes(&restarted);
            for kind in ["Service", "NetworkPolicy", "DittoServerStatus", "Secret", "ConfigMap"] {
                assert_eq!(wrote[kind], 0, "{wrote:?}");
            }
            restarted.stop().await
        })
        .await
}

#[tokio::test]
#[ignore = "real-server tier: needs the Kubernetes test binaries; run `make test`"]
async fn deleting_the_server_lets_the_garbage_collector_remove_the_adapter_objects() -> anyhow::Result<()> {
    ControlPlane::shared()
        .with_temp_ns("ctrl-adapter-gc", async |ns| {
            anyhow::ensure!(ns.control_plane().runs_controller_manager(), "needs the garbage collector");
            let (running, servers) = start(ns).await?;
            report(&servers, CR, "fs-0", vec![serving("nfs", 12049), serving("smb", 1445)]).await?;
            wait_view(ns, CR, &expected(CR, &[("nfs", 12049), ("smb", 1445)], true), WAIT).await?;
            servers.delete(CR, &DeleteParams::default()).await?;
            wait_until("the garbage collector to remove the adapter objects", Duration::from_secs(60), async || {
                let services: Vec<Value> = ns
                    .api::<Service>()
                    .list(&Default::default())
                    .await?
                    .items
                    .iter()
                    .filter(|s| s.name_any().starts_with("fs-adapter-"))
                    .map(|s| json!(s.name_any()))
                    .collect();
                let policies = ns.api::<NetworkPolicy>().list(&Default::default()).await?.items.len();
                anyhow::ensure!(services.is_empty() && policies == 0, "{services:?}, {policies} policies");
                Ok(())
            })
            .await?;
            running.stop().await
        })
        .await
}
