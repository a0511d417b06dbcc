//! Exposure over time, against the real control plane: a report that goes stale (by itself, with no write)
//! is kept or closed as `onStaleReport` says; IP-block sources keep client addresses on external Services;
//! on the way down (scaled to zero, deleted, even with foreground cascading) the Services go first and the
//! NetworkPolicies stay until the last pod is gone — a pod held by a finalizer shows the order — and the
//! server shows `phase: Deleting` meanwhile, with one `Deleting` Event however many times it is looked at.

use std::time::Duration;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use serde_json::{Value, json};

use dittofs_api::DittoServer;
use dittofs_api::conditions::{events as reasons, reasons as why};
use dittofs_api::constants::CONTROLLER_NAME;
use dittofs_api::crd::Phase;
use dittofs_tests::controller_world::adapters::*;
use dittofs_tests::controller_world::*;
use dittofs_tests::kube_env::{ControlPlane, TempNamespace, wait_until};
use dittofs_tests::objects::*;

const CR: &str = "fs";
const WAIT: Duration = Duration::from_secs(20);
const HOLD: &str = "dittofs.test/hold";

fn seconds_ago(secs: i64) -> String {
    let now = jiff::Timestamp::now().as_second();
    jiff::Timestamp::from_second(now - secs).expect("in range").to_string()
}

async fn patch_spec(servers: &Api<DittoServer>, spec: Value) -> anyhow::Result<()> {
    servers.patch(CR, &PatchParams::default(), &Patch::Merge(&json!({ "spec": spec }))).await?;
    Ok(())
}

#[tokio::test]
#[ignore = "real-server tier: needs the Kubernetes test binaries; run `make test`"]
async fn a_stale_report_is_kept_or_closed_as_the_spec_says() -> anyhow::Result<()> {
    ControlPlane::shared()
        .with_temp_ns("ctrl-stale", async |ns| {
            let spec = json!({"storage": {"metadataSize": "1Gi"}, "adapterServices": {"reportMaxAgeSeconds": 30}});
            let (running, servers) = started(ns, CR, spec).await?;
            // A report already 20 s old: fresh now, stale in 10 s without anybody writing anything.
            let entry = |adapters: Vec<Value>, polled: String| {
                json!({"podName": "fs-0", "reachability": {"reachable": true, "reason": "Reachable",
                       "lastTransitionTime": polled}, "adapters": adapters, "lastPollTime": polled})
            };
            report_entry(&servers, CR, entry(vec![serving("nfs", 12049)], seconds_ago(20))).await?;
            wait_view(ns, CR, &expected(CR, &[("nfs", 12049)], true), WAIT).await?;
            let message = wait_adapters_ready(&servers, CR, "Unknown", why::REPORT_STALE).await?;
            assert!(message.contains("the report of fs-0 dates from") && message.contains("(30)"), "{message}");
            assert!(message.ends_with("adapter objects are kept as they are (onStaleReport: Keep)"), "{message}");
            assert_eq!(view(ns, CR).await?, expected(CR, &[("nfs", 12049)], true), "Keep: nothing removed");
            let stale = wait_reason(ns.client(), ns.name(), CR, reasons::REPORT_STALE).await?;
            assert_eq!(stale.len(), 1, "one Warning for the stale report");

            // Close: the objects go while nobody knows what runs.
            patch_spec(&servers, json!({"adapterServices": {"onStaleReport": "Close"}})).await?;
            wait_view(ns, CR, &expected(CR, &[], true), WAIT).await?;
            let message = wait_adapters_ready(&servers, CR, "False", why::REPORT_STALE).await?;
            assert!(message.ends_with("adapter objects are removed until a fresh report (onStaleReport: Close)"));

            // A fresh report opens again.
            report(&servers, CR, "fs-0", vec![serving("nfs", 12049)]).await?;
            wait_view(ns, CR, &expected(CR, &[("nfs", 12049)], true), WAIT).await?;
            wait_adapters_ready(&servers, CR, "True", why::ADAPTERS_EXPOSED).await?;
            running.stop().await
        })
        .await
}

#[tokio::test]
#[ignore = "real-server tier: needs the Kubernetes test binaries; run `make test`"]
async fn ip_block_sources_keep_the_client_address() -> anyhow::Result<()> {
    ControlPlane::shared()
        .with_temp_ns("ctrl-sources", async |ns| {
            let spec = json!({"storage": {"metadataSize": "1Gi"}, "adapterServices": {"allowedSources": [
                {"ipBlock": {"cidr": "203.0.113.0/24", "except": ["203.0.113.128/25"]}}]}});
            let (running, servers) = started(ns, CR, spec).await?;
            report(&servers, CR, "fs-0", vec![serving("nfs", 12049)]).await?;
            wait_view(ns, CR, &expected(CR, &[("nfs", 12049)], true), WAIT).await?;
            let services: Api<Service> = ns.api();
            let svc = services.get("fs-adapter-nfs").await?.spec.unwrap();
            assert_eq!(svc.external_traffic_policy.as_deref(), Some("Local"));
            assert_eq!(svc.load_balancer_source_ranges.as_deref(), Some(&["203.0.113.0/24".to_owned()][..]));

            // Without IP blocks the Service goes back to the cluster's defaults.
            patch_spec(&servers, json!({"adapterServices": {"allowedSources": null}})).await?;
            wait_until("the source ranges gone", WAIT, async || {
                let svc = services.get("fs-adapter-nfs").await?.spec.unwrap();
                anyhow::ensure!(svc.load_balancer_source_ranges.is_none(), "{:?}", svc.load_balancer_source_ranges);
                anyhow::ensure!(
                    svc.external_traffic_policy.as_deref() == Some("Cluster"),
                    "{:?}",
                    svc.external_traffic_policy
                );
                Ok(())
            })
            .await?;
            running.stop().await
        })
        .await
}

/// Waits for pod `fs-0` (created by kube-controller-manager) and holds it with a finalizer.
async fn hold_pod(ns: &TempNamespace<'_>) -> anyhow::Result<Api<Pod>> {
    let pods: Api<Pod> = ns.api();
    wait_until("pod fs-0", WAIT, async || {
        let pod = pods.get_opt("fs-0").await?;
        anyhow::ensure!(pod.is_some_and(|p| p.metadata.deletion_timestamp.is_none()), "not there yet");
        Ok(())
    })
    .await?;
    pods.patch("fs-0", &PatchParams::default(), &Patch::Merge(&json!({"metadata": {"finalizers": [HOLD]}}))).await?;
    Ok(pods)
}

async fn release_pod(pods: &Api<Pod>) -> anyhow::Result<()> {
    pods.patch("fs-0", &PatchParams::default(), &Patch::Merge(&json!({"metadata": {"finalizers": null}}))).await?;
    Ok(())
}

async fn terminating(pods: &Api<Pod>) -> anyhow::Result<bool> {
    Ok(pods.get_opt("fs-0").await?.is_some_and(|p| p.metadata.deletion_timestamp.is_some()))
}

/// Waits until the controller has reconciled twice more: it keeps looking while a pod terminates.
async fn looked_again(running: &Running) -> anyhow::Result<()> {
    let done = running.controller.metrics().total_reconciles();
    running.wait_reconciles("two more looks while the pod terminates", None, done + 1).await
}

#[tokio::test]
#[ignore = "real-server tier: needs the Kubernetes test binaries; run `make test`"]
async fn policies_outlive_the_pods_on_the_way_down() -> anyhow::Result<()> {
    ControlPlane::shared()
        .with_temp_ns("ctrl-down", async |ns| {
            let (running, servers) = started(ns, CR, json!({"storage": {"metadataSize": "1Gi"}})).await?;
            let pods = hold_pod(ns).await?;
            report(&servers, CR, "fs-0", vec![serving("nfs", 12049)]).await?;
            wait_view(ns, CR, &expected(CR, &[("nfs", 12049)], true), WAIT).await?;

            // Scaled to zero: the Service goes at once, the policy waits for the terminating pod.
            patch_spec(&servers, json!({"replicas": 0})).await?;
            wait_until("the adapter Service gone and the pod terminating", WAIT, async || {
                let v = view(ns, CR).await?;
                anyhow::ensure!(v.services.is_empty() && terminating(&pods).await?, "{v:?}");
                Ok(())
            })
            .await?;
            looked_again(&running).await?;
            let v = view(ns, CR).await?;
            assert_eq!(v.policies, [("fs-adapter-nfs".to_owned(), 12049)], "held while the pod terminates");
            release_pod(&pods).await?;
            wait_view(ns, CR, &expected(CR, &[], false), WAIT).await?;

            // Deleted with foreground cascading (the garbage collector deletes dependents first): the
            // baseline policy stays until the pod is gone, the Services go first.
            patch_spec(&servers, json!({"replicas": 1})).await?;
            let pods = hold_pod(ns).await?;
            servers.delete(CR, &DeleteParams::foreground()).await?;
            let services: Api<Service> = ns.api();
            wait_until("the Services gone and the pod terminating", WAIT, async || {
                let left = services.list(&Default::default()).await?.items.len();
                anyhow::ensure!(left == 0 && terminating(&pods).await?, "{left} Services");
                Ok(())
            })
            .await?;
            looked_again(&running).await?;
            let policies: Api<NetworkPolicy> = ns.api();
            assert!(policies.get_opt("fs-baseline").await?.is_some(), "the baseline outlives the pod");
            assert!(servers.get_opt(CR).await?.is_some(), "the server waits for its pods");
            release_pod(&pods).await?;
            wait_until("the server and its baseline policy gone", Duration::from_secs(60), async || {
                anyhow::ensure!(servers.get_opt(CR).await?.is_none(), "server still there");
                anyhow::ensure!(policies.get_opt("fs-baseline").await?.is_none(), "baseline still there");
                anyhow::ensure!(ns.api::<StatefulSet>().get_opt(CR).await?.is_none(), "StatefulSet still there");
                Ok(())
            })
            .await?;
            running.stop().await
        })
        .await
}

#[tokio::test]
#[ignore = "real-server tier: needs the Kubernetes test binaries; run `make test`"]
async fn a_deleted_server_shows_phase_deleting_with_one_event_while_its_pods_terminate() -> anyhow::Result<()> {
    ControlPlane::shared()
        .with_temp_ns("ctrl-deleting", async |ns| {
            let (running, servers) = started(ns, CR, json!({"storage": {"metadataSize": "1Gi"}})).await?;
            let pods = hold_pod(ns).await?;
            servers.delete(CR, &DeleteParams::default()).await?;
            wait_until("phase Deleting and the pod terminating", WAIT, async || {
                let phase = servers.get(CR).await?.status.and_then(|s| s.phase);
                anyhow::ensure!(phase == Some(Phase::Deleting) && terminating(&pods).await?, "{phase:?}");
                Ok(())
            })
            .await?;
            // Several passes of the way down (one every 2 s while the pod terminates): the phase stays, and
            // the Event of the first pass is the only one (a later pass's would be published before the next).
            for _ in 0..3 {
                looked_again(&running).await?;
            }
            let ds = servers.get(CR).await?;
            assert_eq!(ds.status.and_then(|s| s.phase), Some(Phase::Deleting));
            let deleting = wait_reason(ns.client(), ns.name(), CR, reasons::DELETING).await?;
            assert_eq!(deleting.len(), 1, "one Deleting Event per deletion: {deleting:?}");
            // Not a series either: the recorder counts repeats of an Event into `series` of the first one.
            assert_eq!(deleting[0].series, None, "emitted once, not once per pass");
            assert_eq!(deleting[0].type_.as_deref(), Some("Normal"));
            assert_eq!(deleting[0].reporting_controller.as_deref(), Some(CONTROLLER_NAME));
            assert_eq!(deleting[0].regarding.as_ref().and_then(|r| r.uid.clone()), ds.metadata.uid);

            release_pod(&pods).await?;
            wait_gone(&servers, CR, Duration::from_secs(60)).await?;
            running.stop().await
        })
        .await
}
