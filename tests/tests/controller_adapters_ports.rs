//! The `adapter-*` container ports against the real control plane (agent reports written as the agent
//! writes them): their own field manager and a minimal body, 15-character names, never a static port's
//! number; with `syncContainerPorts: false` adapter toggles leave the pod template (and its hash) alone,
//! and switching the flag off removes previously synced ports once.

use std::time::Duration;

use k8s_openapi::api::apps::v1::StatefulSet;
use kube::api::{Api, Patch, PatchParams};
use serde_json::{Value, json};

use dittofs_api::constants::CONTROLLER_PORTS_FIELD_MANAGER;
use dittofs_api::{DittoServer, conditions};
use dittofs_tests::controller_world::adapters::*;
use dittofs_tests::controller_world::*;
use dittofs_tests::kube_env::{ControlPlane, TempNamespace, wait_until};
use dittofs_tests::objects::*;

const CR: &str = "fs";
const WAIT: Duration = Duration::from_secs(10);

async fn start(ns: &TempNamespace<'_>, sync: bool) -> anyhow::Result<(Running, Api<DittoServer>)> {
    // Two extra allowed types: a long one (short port names) and one that will be reported on the API port.
    let services = json!({"syncContainerPorts": sync, "allowedTypes": ["nfs", "smb", "odd", "very-long-adap"]});
    started(ns, CR, json!({"storage": {"metadataSize": "1Gi"}, "adapterServices": services})).await
}

/// The pod template as JSON and the StatefulSet's generation.
async fn template(ns: &TempNamespace<'_>) -> anyhow::Result<(Value, Option<i64>)> {
    let sts = ns.api::<StatefulSet>().get(CR).await?;
    Ok((serde_json::to_value(&sts.spec.unwrap().template)?, sts.metadata.generation))
}

/// What the agent reports, and the (type, port) pairs that must then be exposed.
type Round = (Vec<Value>, &'static [(&'static str, i32)]);

async fn set_sync(servers: &Api<DittoServer>, sync: bool) -> anyhow::Result<()> {
    let patch = json!({"spec": {"adapterServices": {"syncContainerPorts": sync}}});
    servers.patch(CR, &PatchParams::default(), &Patch::Merge(&patch)).await?;
    Ok(())
}

#[tokio::test]
#[ignore = "real-server tier: needs the Kubernetes test binaries; run `make test`"]
async fn without_port_sync_adapter_toggles_leave_the_pod_template_unchanged() -> anyhow::Result<()> {
    ControlPlane::shared()
        .with_temp_ns("ctrl-adapter-nosync", async |ns| {
            let (running, servers) = start(ns, false).await?;
            report(&servers, CR, "fs-0", vec![serving("nfs", 12049)]).await?;
            wait_view(ns, CR, &expected(CR, &[("nfs", 12049)], false), WAIT).await?;
            let (tpl, generation) = template(ns).await?;

            let rounds: [Round; 3] = [
                (vec![serving("nfs", 12049), serving("smb", 1445)], &[("nfs", 12049), ("smb", 1445)]),
                (vec![serving("nfs", 12049), stopped("smb", 1445)], &[("nfs", 12049)]),
                (vec![serving("nfs", 2049)], &[("nfs", 2049)]),
            ];
            for (reported, want) in rounds {
                report(&servers, CR, "fs-0", reported).await?;
                wait_view(ns, CR, &expected(CR, want, false), WAIT).await?;
            }
            running.settle(Duration::from_millis(500)).await?;
            assert_eq!(template(ns).await?, (tpl, generation), "the pod template (and its hash) never changed");

            // Turning sync on adds the ports (one template change); off removes them, once.
            set_sync(&servers, true).await?;
            wait_view(ns, CR, &expected(CR, &[("nfs", 2049)], true), WAIT).await?;
            set_sync(&servers, false).await?;
            wait_view(ns, CR, &expected(CR, &[("nfs", 2049)], false), WAIT).await?;
            running.settle(Duration::from_millis(500)).await?;
            let (tpl, generation) = template(ns).await?;
            report(&servers, CR, "fs-0", vec![serving("nfs", 2049), serving("smb", 1445)]).await?;
            wait_view(ns, CR, &expected(CR, &[("nfs", 2049), ("smb", 1445)], false), WAIT).await?;
            running.settle(Duration::from_millis(500)).await?;
            assert_eq!(template(ns).await?, (tpl, generation));
            running.stop().await
        })
        .await
}

#[tokio::test]
#[ignore = "real-server tier: needs the Kubernetes test binaries; run `make test`"]
async fn ports_have_their_own_manager_short_names_and_never_take_a_static_port() -> anyhow::Result<()> {
    ControlPlane::shared()
        .with_temp_ns("ctrl-adapter-ports", async |ns| {
            let (running, servers) = start(ns, true).await?;
            // A long type name, and an allowed type reported on the API port (8080): refused, never exposed.
            let adapters = vec![serving("nfs", 12049), serving("very-long-adap", 9000), serving("odd", 8080)];
            report(&servers, CR, "fs-0", adapters).await?;
            let sts_api: Api<StatefulSet> = ns.api();
            let ports = wait_until("the container ports", WAIT, async || {
                let ports = sts_adapter_ports(&sts_api.get(CR).await?);
                anyhow::ensure!(ports.len() == 2, "{ports:?}");
                Ok(ports)
            })
            .await?;
            assert_eq!(ports[0], ("adapter-nfs".to_owned(), 12049));
            let (long, port) = &ports[1];
            assert!(long.len() <= 15 && long.starts_with("adapter-ve-") && *port == 9000, "{long}");
            let v = view(ns, CR).await?;
            let services: Vec<&str> = v.services.iter().map(|(n, _)| n.as_str()).collect();
            assert_eq!(services, ["fs-adapter-nfs", "fs-adapter-very-long-adap"], "odd on the API port is refused");
            let svc = ns.api::<k8s_openapi::api::core::v1::Service>().get("fs-adapter-very-long-adap").await?;
            assert_eq!(svc.spec.unwrap().ports.unwrap()[0].name.as_deref(), Some(long.as_str()), "same name on the Service");

            // The ports manager owns exactly the adapter entries; the API port stays the main manager's.
            let sts = sts_api.get(CR).await?;
            let managers = sts.metadata.managed_fields.unwrap_or_default();
            let ports_manager = managers
                .iter()
                .find(|m| m.manager.as_deref() == Some(CONTROLLER_PORTS_FIELD_MANAGER))
                .expect("the ports manager's entry");
            let fields = serde_json::to_string(&ports_manager.fields_v1)?;
            assert!(fields.contains("12049") && fields.contains("9000") && !fields.contains("8080"), "{fields}");
            for forbidden in ["f:image", "f:env", "f:volumes", "f:replicas"] {
                assert!(!fields.contains(forbidden), "minimal body: {forbidden} in {fields}");
            }
            let api_ports: Vec<_> = sts.spec.unwrap().template.spec.unwrap().containers[0]
                .ports
                .clone()
                .unwrap()
                .into_iter()
                .filter(|p| p.container_port == 8080)
                .map(|p| p.name.unwrap())
                .collect();
            assert_eq!(api_ports, ["api"], "the API port keeps its name");

            // A spec change re-applies the main StatefulSet body: the adapter ports survive it.
            let touch = json!({"spec": {"adapterDiscovery": {"pollingInterval": "10s"}, "resources": {"limits": {"memory": "1Gi"}}}});
            servers.patch(CR, &PatchParams::default(), &Patch::Merge(&touch)).await?;
            wait_for_condition(&servers, CR, conditions::CONFIG_READY, "True", WAIT).await?;
            running.settle(Duration::from_millis(500)).await?;
            let sts = sts_api.get(CR).await?;
            let limits = sts.spec.as_ref().unwrap().template.spec.as_ref().unwrap().containers[0].resources.clone();
            assert!(limits.is_some_and(|r| r.limits.is_some()), "the main apply ran");
            assert_eq!(sts_adapter_ports(&sts), ports);
            assert_eq!(running.controller.metrics().reconcile_count("conflict"), 0);
            running.stop().await
        })
        .await
}
