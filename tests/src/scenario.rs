//! A DittoServer scenario on the local control plane, shared by the demo and the benchmark: set-up (CRD,
//! namespace, admin Secret, DittoServer) and what Kubernetes exposes per adapter, with a convergence wait.

use std::{collections::BTreeMap, time::Duration};

use dittofs_api::{DittoServer, labels, names};
use k8s_openapi::{
    ByteString,
    api::{
        apps::v1::StatefulSet,
        core::v1::{Namespace, Secret, Service},
        networking::v1::NetworkPolicy,
    },
    apimachinery::pkg::util::intstr::IntOrString,
};
use kube::{
    Api,
    api::{ListParams, PostParams},
};
use serde_json::json;

use crate::{
    dittofs::ADMIN_PASSWORD,
    kube_env::{ControlPlane, measure_until},
    objects::{install_crd, server},
};

pub const NS: &str = "demo";
pub const SERVER: &str = "files";
pub const CONVERGE_TIMEOUT: Duration = Duration::from_secs(20);

/// Adapter type → (Service port, NetworkPolicy port, container port) as Kubernetes has them.
pub type Seen = BTreeMap<String, (Option<i32>, Option<i32>, Option<i32>)>;

pub async fn seen(client: &kube::Client) -> anyhow::Result<Seen> {
    let svcs = Api::<Service>::namespaced(client.clone(), NS)
        .list(&ListParams::default().labels(&labels::adapter_services_selector(SERVER)))
        .await?;
    let nps = Api::<NetworkPolicy>::namespaced(client.clone(), NS)
        .list(&ListParams::default().labels(&labels::adapter_network_policies_selector(SERVER)))
        .await?;
    let sts = Api::<StatefulSet>::namespaced(client.clone(), NS).get(SERVER).await?;
    Ok(seen_of(&svcs.items, &nps.items, Some(&sts)))
}

/// What the adapter Services, NetworkPolicies and the StatefulSet's ports expose, per adapter type.
pub fn seen_of(svcs: &[Service], nps: &[NetworkPolicy], sts: Option<&StatefulSet>) -> Seen {
    let mut out = Seen::new();
    let by_type = |labels: &Option<BTreeMap<String, String>>| {
        labels.as_ref().and_then(|l| l.get(labels::ADAPTER_TYPE_LABEL).cloned()).unwrap_or_default()
    };
    for svc in svcs {
        let port = svc.spec.as_ref().and_then(|s| s.ports.as_ref()).and_then(|p| p.first().map(|p| p.port));
        out.entry(by_type(&svc.metadata.labels)).or_default().0 = port;
    }
    for np in nps {
        let rule = np.spec.as_ref().and_then(|s| s.ingress.as_ref()).and_then(|i| i.first());
        let port = rule.and_then(|r| r.ports.as_ref()).and_then(|p| p.first()).and_then(|p| p.port.clone());
        out.entry(by_type(&np.metadata.labels)).or_default().1 = match port {
            Some(IntOrString::Int(p)) => Some(p),
            _ => None,
        };
    }
    let template = sts.and_then(|s| s.spec.as_ref()).and_then(|s| s.template.spec.as_ref());
    let containers = template.map(|p| p.containers.as_slice()).unwrap_or_default();
    let ports = containers.iter().filter(|c| c.name == "dittofs").flat_map(|c| c.ports.iter().flatten());
    for port in ports {
        if let Some(kind) = port.name.as_deref().and_then(|n| n.strip_prefix(names::ADAPTER_PORT_PREFIX)) {
            out.entry(kind.to_string()).or_default().2 = Some(port.container_port);
        }
    }
    out
}

/// Waits until exactly `want` (type → port) is exposed; returns how long that took.
pub async fn converge(client: &kube::Client, want: &BTreeMap<String, i32>) -> anyhow::Result<Duration> {
    let expected: Seen = want.iter().map(|(k, p)| (k.clone(), (Some(*p), Some(*p), Some(*p)))).collect();
    let what = format!("Kubernetes to expose {expected:?}");
    let ((), took) = measure_until(&what, CONVERGE_TIMEOUT, async || {
        let now = seen(client).await?;
        anyhow::ensure!(now == expected, "Kubernetes has {now:?}");
        Ok(())
    })
    .await?;
    Ok(took)
}

/// The CRD, namespace `demo` and the admin password Secret the DittoServer references.
pub async fn set_up(cp: &ControlPlane) -> anyhow::Result<()> {
    let client = cp.client();
    install_crd(client.clone()).await?;
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": NS}}))?;
    Api::<Namespace>::all(client.clone()).create(&PostParams::default(), &ns).await?;
    // The bootstrap admin password the DittoServer references (the harness starts DittoFS with it).
    let mut admin = Secret::default();
    admin.metadata.name = Some("files-admin".into());
    admin.data = Some([("password".to_string(), ByteString(ADMIN_PASSWORD.as_bytes().to_vec()))].into());
    Api::<Secret>::namespaced(client, NS).create(&PostParams::default(), &admin).await?;
    Ok(())
}

/// The spec of the scenario's servers: the admin password from `files-admin` ([`set_up`]), adapters listed
/// every 30 s.
pub fn server_spec() -> serde_json::Value {
    json!({
        "storage": {"metadataSize": "1Gi"},
        "identity": {"admin": {"passwordSecretRef": {"name": "files-admin", "key": "password"}}},
        "adapterDiscovery": {"pollingInterval": "30s"},
    })
}

pub async fn create_server(client: &kube::Client) -> anyhow::Result<()> {
    let ds = server(SERVER, server_spec())?;
    Api::<DittoServer>::namespaced(client.clone(), NS).create(&PostParams::default(), &ds).await?;
    Ok(())
}
