//! The controller's adapter part against the real control plane, with the agents' reports written
//! exactly as the agent writes them: Services, NetworkPolicies and container ports follow the reports
//! (enable, disable, port change) with their Events, status and the `kubectl get` column; Service
//! annotations removed from the spec disappear while other managers' stay; static Services, the
//! baseline policy, unlabelled policies and an unlabelled Service with an adapter's name are untouched.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::{Resource, ResourceExt};
use serde_json::{Value, json};

use dittofs_api::DittoServer;
use dittofs_tests::controller_world::adapters::*;
use dittofs_tests::controller_world::*;
use dittofs_tests::kube_env::{ControlPlane, TempNamespace, wait_until};
use dittofs_tests::objects::*;

const CR: &str = "fs";
const WAIT: Duration = Duration::from_secs(10);

/// A controller for `ns` and a server `fs` with `adapter_services` as its `spec.adapterServices`.
async fn start(ns: &TempNamespace<'_>, adapter_services: Value) -> anyhow::Result<(Running, Api<DittoServer>)> {
    started(ns, CR, json!({"storage": {"metadataSize": "1Gi"}, "adapterServices": adapter_services})).await
}

fn event_reasons(events: &[k8s_openapi::api::events::v1::Event]) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for e in events {
        *counts.entry(e.reason.clone().unwrap_or_default()).or_default() += 1;
    }
    counts
}

#[tokio::test]
#[ignore = "real-server tier: needs the Kubernetes test binaries; run `make test`"]
async fn objects_follow_enable_disable_and_port_changes_with_events_status_and_column() -> anyhow::Result<()> {
    ControlPlane::shared()
        .with_temp_ns("ctrl-adapters", async |ns| {
            let (running, servers) = start(ns, json!({})).await?;
            wait_adapters_ready(&servers, CR, "Unknown", "NoReport").await?;

            report(&servers, CR, "fs-0", vec![serving("nfs", 12049), stopped("smb", 1445)]).await?;
            wait_view(ns, CR, &expected(CR, &[("nfs", 12049)], true), WAIT).await?;
            let ds = servers.get(CR).await?;
            let svc = ns.api::<Service>().get("fs-adapter-nfs").await?;
            let owner = &svc.owner_references()[0];
            assert_eq!(
                (owner.kind.as_str(), owner.uid.as_str(), owner.controller),
                (DittoServer::kind(&()).as_ref(), ds.uid().unwrap().as_str(), Some(true))
            );
            assert_eq!(svc.labels()["dittofs.io/adapter-type"], "nfs");
            assert_eq!(svc.labels()["app.kubernetes.io/managed-by"], "dittofs-controller");
            let spec = svc.spec.unwrap();
            assert_eq!(spec.type_.as_deref(), Some("LoadBalancer"), "the default type");
            assert_eq!(spec.selector.unwrap()["app.kubernetes.io/instance"], CR);
            let ports = spec.ports.unwrap();
            assert_eq!(ports.len(), 1, "only the adapter's port: DittoFS runs no companion by default");
            assert_eq!(
                (ports[0].name.as_deref(), ports[0].target_port.clone()),
                (Some("adapter-nfs"), Some(IntOrString::Int(12049)))
            );
            let np = ns.api::<NetworkPolicy>().get("fs-adapter-nfs").await?.spec.unwrap();
            assert_eq!(np.policy_types.as_deref(), Some(&["Ingress".to_string()][..]));
            assert_eq!(np.pod_selector.unwrap().match_labels.unwrap()["app.kubernetes.io/instance"], CR);
            let rule = &np.ingress.unwrap()[0];
            assert!(rule.from.is_none(), "no allowedSources: any source");
            assert_eq!(rule.ports.as_ref().unwrap().len(), 1);
            let message = wait_adapters_ready(&servers, CR, "True", "AdaptersExposed").await?;
            assert_eq!(message, "exposed: nfs:12049");
            let st = servers.get(CR).await?.status.unwrap();
            assert_eq!(st.adapters_summary.as_deref(), Some("nfs:12049"));
            assert_eq!(st.adapters[0].service_name.as_deref(), Some("fs-adapter-nfs"));

            // Enable SMB: its Service, NetworkPolicy and container port appear.
            report(&servers, CR, "fs-0", vec![serving("nfs", 12049), serving("smb", 1445)]).await?;
            wait_view(ns, CR, &expected(CR, &[("nfs", 12049), ("smb", 1445)], true), WAIT).await?;
            // Disable it: all three go.
            report(&servers, CR, "fs-0", vec![serving("nfs", 12049), stopped("smb", 1445)]).await?;
            wait_view(ns, CR, &expected(CR, &[("nfs", 12049)], true), WAIT).await?;
            // Change NFS's port: Service, NetworkPolicy and port follow.
            report(&servers, CR, "fs-0", vec![serving("nfs", 2049), stopped("smb", 1445)]).await?;
            wait_view(ns, CR, &expected(CR, &[("nfs", 2049)], true), WAIT).await?;
            let svc = ns.api::<Service>().get("fs-adapter-nfs").await?;
            assert_eq!(svc.spec.unwrap().ports.unwrap()[0].target_port, Some(IntOrString::Int(2049)));

            let table = wait_until("the ADAPTERS column", WAIT, async || {
                let out = ns.kubectl(&["get", "ditto", CR])?;
                anyhow::ensure!(out.contains("nfs:2049"), "{out}");
                Ok(out)
            })
            .await?;
            assert!(table.lines().next().unwrap().contains("ADAPTERS"), "{table}");

            let counts = wait_until("the Events", WAIT, async || {
                let counts = event_reasons(&events_for(ns.client(), ns.name(), CR).await?);
                for reason in [
                    "AdapterServiceCreated",
                    "AdapterServiceUpdated",
                    "AdapterServiceDeleted",
                    "AdapterNetworkPolicyCreated",
                    "AdapterNetworkPolicyUpdated",
                    "AdapterNetworkPolicyDeleted",
                    "ContainerPortsUpdated",
                ] {
                    anyhow::ensure!(counts.contains_key(reason), "no {reason} in {counts:?}");
                }
                Ok(counts)
            })
            .await?;
            assert!(
                !counts.contains_key("AdapterServiceFailed") && !counts.contains_key("ReconcileFailed"),
                "{counts:?}"
            );
            let described = ns.kubectl(&["describe", "ditto", CR])?;
            for needle in ["AdapterServiceDeleted", "Deleted Service fs-adapter-smb", "AdaptersReady"] {
                assert!(described.contains(needle), "no {needle:?} in:\n{described}");
            }
            running.stop().await
        })
        .await
}

#[tokio::test]
#[ignore = "real-server tier: needs the Kubernetes test binaries; run `make test`"]
async fn annotations_removed_from_the_spec_disappear_and_other_managers_ones_stay() -> anyhow::Result<()> {
    ControlPlane::shared()
        .with_temp_ns("ctrl-adapter-annot", async |ns| {
            let (running, servers) = start(ns, json!({"annotations": {"keep": "1", "drop": "2"}})).await?;
            report(&servers, CR, "fs-0", vec![serving("nfs", 12049)]).await?;
            wait_view(ns, CR, &expected(CR, &[("nfs", 12049)], true), WAIT).await?;
            let services: Api<Service> = ns.api();
            let svc = services.get("fs-adapter-nfs").await?;
            assert_eq!((svc.annotations()["keep"].as_str(), svc.annotations()["drop"].as_str()), ("1", "2"));
            // Someone else (a cloud controller, a user) annotates the Service.
            let theirs = json!({"metadata": {"annotations": {"theirs": "x"}}});
            services.patch("fs-adapter-nfs", &PatchParams::default(), &Patch::Merge(&theirs)).await?;

            let spec =
                json!({"spec": {"adapterServices": {"annotations": {"keep": "1", "drop": null}, "type": "ClusterIP"}}});
            servers.patch(CR, &PatchParams::default(), &Patch::Merge(&spec)).await?;
            let svc = wait_until("drop to go and the type to follow", WAIT, async || {
                let svc = services.get("fs-adapter-nfs").await?;
                anyhow::ensure!(!svc.annotations().contains_key("drop"), "{:?}", svc.annotations());
                anyhow::ensure!(svc.spec.as_ref().unwrap().type_.as_deref() == Some("ClusterIP"), "type");
                Ok(svc)
            })
            .await?;
            assert_eq!(svc.annotations().get("keep").map(String::as_str), Some("1"));
            assert_eq!(
                svc.annotations().get("theirs").map(String::as_str),
                Some("x"),
                "another manager's annotation stays"
            );
            running.stop().await
        })
        .await
}

#[tokio::test]
#[ignore = "real-server tier: needs the Kubernetes test binaries; run `make test`"]
async fn static_services_baseline_and_unlabelled_objects_are_never_touched() -> anyhow::Result<()> {
    ControlPlane::shared()
        .with_temp_ns("ctrl-adapter-static", async |ns| {
            let (running, servers) = start(ns, json!({})).await?;
            // A user's NetworkPolicy selecting the same pods, and a user's Service that happens to carry
            // the name of the SMB adapter Service — neither has the adapter labels.
            let user_np: NetworkPolicy = serde_json::from_value(json!({
                "metadata": {"name": "user-np", "labels": {"app.kubernetes.io/instance": CR}},
                "spec": {"podSelector": {"matchLabels": {"app.kubernetes.io/instance": CR}}, "policyTypes": ["Ingress"],
                         "ingress": [{"ports": [{"port": 12049, "protocol": "TCP"}]}]}
            }))?;
            ns.api::<NetworkPolicy>().create(&PostParams::default(), &user_np).await?;
            let user_svc: Service = serde_json::from_value(json!({
                "metadata": {"name": "fs-adapter-smb"},
                "spec": {"type": "ClusterIP", "ports": [{"name": "mine", "port": 9}]}
            }))?;
            ns.api::<Service>().create(&PostParams::default(), &user_svc).await?;
            let untouched = [
                ("Service", "fs-api".to_owned()),
                ("Service", "fs-headless".to_owned()),
                ("NetworkPolicy", "fs-baseline".to_owned()),
                ("NetworkPolicy", "user-np".to_owned()),
                ("Service", "fs-adapter-smb".to_owned()),
            ];
            let before = resource_versions(ns, &untouched).await?;

            report(&servers, CR, "fs-0", vec![serving("nfs", 12049), serving("smb", 1445)]).await?;
            // The SMB policy is created (its name is free); the SMB Service is someone else's.
            let want = View {
                services: vec![("fs-adapter-nfs".into(), 12049)],
                policies: vec![("fs-adapter-nfs".into(), 12049), ("fs-adapter-smb".into(), 1445)],
                ports: vec![("adapter-nfs".into(), 12049), ("adapter-smb".into(), 1445)],
            };
            wait_view(ns, CR, &want, WAIT).await?;
            let message = wait_adapters_ready(&servers, CR, "False", "ObjectNotManaged").await?;
            assert!(message.contains("Service fs-adapter-smb exists without the adapter labels"), "{message}");

            // Everything off (an authoritative empty report): every adapter object goes, nothing else.
            report(&servers, CR, "fs-0", vec![]).await?;
            wait_view(ns, CR, &View::default(), WAIT).await?;
            wait_adapters_ready(&servers, CR, "True", "AdaptersExposed").await?;
            running.settle(Duration::from_secs(1)).await?;
            assert_eq!(resource_versions(ns, &untouched).await?, before, "static and unlabelled objects untouched");
            running.stop().await
        })
        .await
}
