//! What the invariant checker reads each cycle: one snapshot of the namespace's objects (a list per kind,
//! not a get per object, so a cycle costs the same few requests however many servers are watched), and what
//! each DittoFS really runs, asked as its admin.

use std::collections::BTreeMap;

use dittofs_api::{
    constants::resolve_adapter_port,
    labels::{ADAPTER_NETWORK_POLICY_LABEL, ADAPTER_SERVICE_LABEL, ADAPTER_TYPE_LABEL, INSTANCE_LABEL},
    names,
};
use k8s_openapi::{
    api::{
        apps::v1::StatefulSet,
        core::v1::{ConfigMap, Secret, Service, ServiceAccount},
        networking::v1::NetworkPolicy,
        rbac::v1::{Role, RoleBinding},
    },
    apimachinery::pkg::util::intstr::IntOrString,
};
use kube::{
    Resource, ResourceExt,
    api::{Api, ListParams},
};

use crate::{dittofs::ADMIN_PASSWORD, dittofs_client};

/// Adapter type → port.
pub type Adapters = BTreeMap<String, i32>;

/// One object of the snapshot: its uid (a new uid under the same name is a delete and re-create) and labels.
#[derive(Debug, Clone)]
pub struct Obj {
    pub uid: String,
    pub labels: BTreeMap<String, String>,
    /// First port of a Service, first ingress port of a NetworkPolicy.
    pub port: Option<i32>,
}

/// The namespace at one moment (within a few milliseconds: one list per kind).
#[derive(Debug, Default)]
pub struct Snapshot {
    /// Keyed (kind, name).
    pub objects: BTreeMap<(&'static str, String), Obj>,
    /// StatefulSet name → the `adapter-*` ports of its DittoFS container (port name, port).
    pub sts_ports: BTreeMap<String, Vec<(String, i32)>>,
    /// Secret name → its data.
    pub secrets: BTreeMap<String, BTreeMap<String, Vec<u8>>>,
}

/// What Kubernetes exposes for one server, by adapter type.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Exposure {
    pub services: Adapters,
    pub policies: Adapters,
    /// Container ports by port name (`adapter-<type>`, shortened for long types).
    pub ports: Adapters,
}

impl Snapshot {
    /// Reads the namespace. StatefulSets are listed *before* NetworkPolicies: the controller creates the
    /// baseline policy before the StatefulSet, so a StatefulSet seen here had its baseline created before the
    /// policy list was taken, and "StatefulSet without baseline" cannot be an artefact of the list order.
    pub async fn read(client: &kube::Client, ns: &str) -> anyhow::Result<Snapshot> {
        let mut snap = Snapshot::default();
        let lp = ListParams::default();
        for sts in Api::<StatefulSet>::namespaced(client.clone(), ns).list(&lp).await? {
            snap.sts_ports.insert(sts.name_any(), adapter_ports(&sts));
            snap.add(&sts, None);
        }
        let (np, svc, cm) = (
            Api::<NetworkPolicy>::namespaced(client.clone(), ns),
            Api::<Service>::namespaced(client.clone(), ns),
            Api::<ConfigMap>::namespaced(client.clone(), ns),
        );
        let (sa, role, rb) = (
            Api::<ServiceAccount>::namespaced(client.clone(), ns),
            Api::<Role>::namespaced(client.clone(), ns),
            Api::<RoleBinding>::namespaced(client.clone(), ns),
        );
        let secret = Api::<Secret>::namespaced(client.clone(), ns);
        let (policies, services, config_maps, accounts, roles, bindings, secrets) = tokio::try_join!(
            np.list(&lp),
            svc.list(&lp),
            cm.list(&lp),
            sa.list(&lp),
            role.list(&lp),
            rb.list(&lp),
            secret.list(&lp),
        )?;
        for np in policies {
            snap.add(&np, policy_port(&np));
        }
        for svc in services {
            let port = svc.spec.as_ref().and_then(|s| s.ports.as_ref()).and_then(|p| p.first()).map(|p| p.port);
            snap.add(&svc, port);
        }
        config_maps.iter().for_each(|o| snap.add(o, None));
        accounts.iter().for_each(|o| snap.add(o, None));
        roles.iter().for_each(|o| snap.add(o, None));
        bindings.iter().for_each(|o| snap.add(o, None));
        for secret in secrets {
            let data = secret.data.clone().unwrap_or_default().into_iter().map(|(k, v)| (k, v.0)).collect();
            snap.secrets.insert(secret.name_any(), data);
            snap.add(&secret, None);
        }
        Ok(snap)
    }

    fn add<K: Resource<DynamicType = ()>>(&mut self, obj: &K, port: Option<i32>) {
        let meta = obj.meta();
        let name = meta.name.clone().unwrap_or_default();
        let kind = kind_str(&K::kind(&()));
        let labels = meta.labels.clone().unwrap_or_default();
        self.objects.insert((kind, name), Obj { uid: meta.uid.clone().unwrap_or_default(), labels, port });
    }

    /// The labelled adapter Services and NetworkPolicies of server `cr`, and its StatefulSet's adapter ports.
    pub fn exposure(&self, cr: &str) -> Exposure {
        let mut out = Exposure::default();
        for ((kind, _), obj) in &self.objects {
            let label = |key: &str| obj.labels.get(key).map(String::as_str);
            if label(INSTANCE_LABEL) != Some(cr) {
                continue;
            }
            let Some(kind_label) = label(ADAPTER_TYPE_LABEL) else { continue };
            let port = obj.port.unwrap_or(0);
            match *kind {
                "Service" if label(ADAPTER_SERVICE_LABEL) == Some("true") => {
                    out.services.insert(kind_label.to_owned(), port);
                }
                "NetworkPolicy" if label(ADAPTER_NETWORK_POLICY_LABEL) == Some("true") => {
                    out.policies.insert(kind_label.to_owned(), port);
                }
                _ => {}
            }
        }
        for (name, port) in self.sts_ports.get(&names::statefulset(cr)).into_iter().flatten() {
            out.ports.insert(name.clone(), *port);
        }
        out
    }
}

/// The kinds the snapshot holds, as `'static` names (the key type of [`Snapshot::objects`]).
fn kind_str(kind: &str) -> &'static str {
    ["StatefulSet", "NetworkPolicy", "Service", "ConfigMap", "ServiceAccount", "Role", "RoleBinding", "Secret"]
        .into_iter()
        .find(|k| *k == kind)
        .unwrap_or("Other")
}

fn adapter_ports(sts: &StatefulSet) -> Vec<(String, i32)> {
    let containers = sts.spec.as_ref().and_then(|s| s.template.spec.as_ref()).map(|p| p.containers.clone());
    let dittofs = containers.unwrap_or_default().into_iter().find(|c| c.name == names::SERVER_CONTAINER);
    let ports = dittofs.and_then(|c| c.ports).unwrap_or_default();
    ports
        .into_iter()
        .filter_map(|p| Some((p.name.filter(|n| names::is_adapter_port_name(n))?, p.container_port)))
        .collect()
}

fn policy_port(np: &NetworkPolicy) -> Option<i32> {
    let rule = np.spec.as_ref()?.ingress.as_ref()?.first()?;
    match rule.ports.as_ref()?.first()?.port.as_ref()? {
        IntOrString::Int(p) => Some(*p),
        IntOrString::String(_) => None,
    }
}

/// An admin session with one DittoFS, logging in again when its token is refused (expired, or the database
/// was reset under it).
#[derive(Debug)]
pub struct Session {
    api: dittofs_client::Api,
}

impl Session {
    pub fn new(url: &str) -> Session {
        Session { api: dittofs_client::Api::new(url) }
    }

    /// What runs: enabled and running adapters, each at its resolved port. The health report is not read:
    /// it comes from a 5 s cache (docs/dittofs-api.md#adapter-status-caching) and the grace covers its lag.
    pub async fn running(&mut self) -> anyhow::Result<Adapters> {
        if self.api.token.is_none() {
            self.api.login("admin", ADMIN_PASSWORD).await?;
        }
        let mut reply = self.api.get("/api/v1/adapters").await?;
        if reply.status == 401 {
            self.api.login("admin", ADMIN_PASSWORD).await?;
            reply = self.api.get("/api/v1/adapters").await?;
        }
        let list = reply.expect_status(200)?.json()?;
        let mut out = Adapters::new();
        for a in list.as_array().into_iter().flatten() {
            let kind = a["type"].as_str().unwrap_or_default();
            let serving = a["enabled"] == true && a["running"] == true;
            let port = resolve_adapter_port(kind, a["port"].as_i64().unwrap_or(0));
            if let (true, Some(port)) = (serving, port) {
                out.insert(kind.to_owned(), i32::from(port));
            }
        }
        Ok(out)
    }
}
