//! The DittoServer and its children on the apiserver, as the tests create and inspect them: the CRD, a server
//! from a JSON spec, apply bodies typed through `kube::Resource`, conditions, Events, every child by kind (an
//! unknown kind is an error, never "gone"), and ServiceAccount clients once RBAC lets them in.

use std::{collections::BTreeMap, time::Duration};

use anyhow::Context as _;
use dittofs_api::{DittoServer, names};
use k8s_openapi::{
    api::{
        apps::v1::StatefulSet,
        core::v1::{ConfigMap, Secret, Service, ServiceAccount},
        events::v1::Event,
        networking::v1::NetworkPolicy,
        rbac::v1::{Role, RoleBinding},
    },
    apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
};
use kube::{
    Resource,
    api::{Api, ApiResource, DynamicObject, ListParams, ObjectMeta, Patch, PatchParams, PostParams},
};
use serde_json::{Value, json};

use crate::kube_env::{ControlPlane, TempNamespace, wait_until};

/// Applies the DittoServer CRD and waits until the apiserver serves it.
pub async fn install_crd(client: kube::Client) -> anyhow::Result<()> {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let crd = dittofs_api::custom_resource_definition();
    let name = crd.metadata.name.clone().context("CRD without a name")?;
    crds.patch(&name, &PatchParams::apply("dittofs-tests").force(), &Patch::Apply(&crd)).await?;
    wait_until("the DittoServer CRD to be served", Duration::from_secs(30), async || {
        let crd = crds.get(&name).await?;
        let conditions = crd.status.and_then(|s| s.conditions).unwrap_or_default();
        let established = conditions.iter().any(|c| c.type_ == "Established" && c.status == "True");
        anyhow::ensure!(established, "not Established yet");
        // The endpoint can lag the condition. Listed untyped: a malformed stored object must not fail the check.
        let resource = ApiResource::erase::<DittoServer>(&());
        Api::<DynamicObject>::all_with(client.clone(), &resource).list(&ListParams::default().limit(1)).await?;
        Ok(())
    })
    .await
}

/// A DittoServer named `name` from a JSON spec.
pub fn server(name: &str, spec: Value) -> anyhow::Result<DittoServer> {
    Ok(DittoServer::new(name, serde_json::from_value(spec)?))
}

/// Creates a DittoServer in `ns` (retrying while a fresh CRD's endpoint warms up).
pub async fn create_server(ns: &TempNamespace<'_>, ds: &DittoServer) -> anyhow::Result<DittoServer> {
    let api: Api<DittoServer> = ns.api();
    wait_until("the DittoServer to be created", Duration::from_secs(10), async || {
        Ok(api.create(&PostParams::default(), ds).await?)
    })
    .await
}

/// A server-side apply body for a `K` named `name`: `apiVersion` and `kind` from `kube::Resource`, then
/// `fields` (`spec`, `status`, …).
pub fn apply_body<K: Resource<DynamicType = ()>>(name: &str, fields: Value) -> Value {
    let mut body = json!({"apiVersion": K::api_version(&()), "kind": K::kind(&()), "metadata": {"name": name}});
    if let (Value::Object(body), Value::Object(fields)) = (&mut body, fields) {
        body.extend(fields);
    }
    body
}

/// Waits until the server's status has observed its current generation with the given condition status.
pub async fn wait_for_condition(
    api: &Api<DittoServer>,
    name: &str,
    type_: &str,
    status: &str,
    timeout: Duration,
) -> anyhow::Result<DittoServer> {
    wait_until(&format!("{name}: {type_}={status} at the current generation"), timeout, async || {
        let ds = api.get(name).await?;
        let st = ds.status.clone().unwrap_or_default();
        anyhow::ensure!(
            st.observed_generation == ds.metadata.generation,
            "observedGeneration {:?} vs generation {:?}",
            st.observed_generation,
            ds.metadata.generation
        );
        let cond = st.conditions.iter().find(|c| c.type_ == type_);
        anyhow::ensure!(cond.is_some_and(|c| c.status == status), "{type_} is {cond:?}");
        Ok(ds)
    })
    .await
}

/// Events about DittoServer `name` in `ns`.
pub async fn events_for(client: kube::Client, ns: &str, name: &str) -> anyhow::Result<Vec<Event>> {
    let events: Api<Event> = Api::namespaced(client, ns);
    let kind = DittoServer::kind(&());
    let about = |e: &Event| {
        e.regarding.as_ref().is_some_and(|r| r.name.as_deref() == Some(name) && r.kind.as_deref() == Some(&kind))
    };
    Ok(events.list(&ListParams::default()).await?.items.into_iter().filter(about).collect())
}

/// The Events about DittoServer `name` that `matching` selects, once there is at least one. The controller
/// publishes Events from its own task, after the reconcile (and the status write) that queued them, so an
/// Event is waited for, never read right after a condition shows.
pub async fn wait_events(
    client: kube::Client,
    ns: &str,
    name: &str,
    what: &str,
    matching: impl Fn(&Event) -> bool,
) -> anyhow::Result<Vec<Event>> {
    wait_until(&format!("{name}: {what}"), EVENT_WAIT, async || {
        let found: Vec<Event> = events_for(client.clone(), ns, name).await?.into_iter().filter(&matching).collect();
        anyhow::ensure!(!found.is_empty(), "none yet");
        Ok(found)
    })
    .await
}

/// How long an Event may take to be published after what it reports is visible.
const EVENT_WAIT: Duration = Duration::from_secs(30);

/// The Events about DittoServer `name` with `reason`, once there is at least one.
pub async fn wait_reason(client: kube::Client, ns: &str, name: &str, reason: &str) -> anyhow::Result<Vec<Event>> {
    wait_events(client, ns, name, &format!("an Event {reason}"), |e| e.reason.as_deref() == Some(reason)).await
}

/// The API of `kind`, for every kind the controller creates and DittoServer itself; another kind is an error.
pub fn resource(kind: &str) -> anyhow::Result<ApiResource> {
    let known = [
        ApiResource::erase::<StatefulSet>(&()),
        ApiResource::erase::<Service>(&()),
        ApiResource::erase::<Secret>(&()),
        ApiResource::erase::<ConfigMap>(&()),
        ApiResource::erase::<ServiceAccount>(&()),
        ApiResource::erase::<Role>(&()),
        ApiResource::erase::<RoleBinding>(&()),
        ApiResource::erase::<NetworkPolicy>(&()),
        ApiResource::erase::<DittoServer>(&()),
    ];
    known.into_iter().find(|r| r.kind == kind).with_context(|| format!("unknown kind {kind}"))
}

/// The metadata of the object `name` of API `resource` in `ns`; `None` when it does not exist.
pub async fn metadata(
    ns: &TempNamespace<'_>,
    resource: &ApiResource,
    name: &str,
) -> anyhow::Result<Option<ObjectMeta>> {
    let api: Api<DynamicObject> = Api::namespaced_with(ns.client(), ns.name(), resource);
    Ok(api.get_opt(name).await?.map(|o| o.metadata))
}

/// The resourceVersion of each `(kind, name)` (keyed `kind/name`); a missing object is an error.
pub async fn resource_versions(
    ns: &TempNamespace<'_>,
    objects: &[(&str, String)],
) -> anyhow::Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for (kind, name) in objects {
        let meta = metadata(ns, &resource(kind)?, name).await?.with_context(|| format!("{kind}/{name} is missing"))?;
        out.insert(format!("{kind}/{name}"), meta.resource_version.unwrap_or_default());
    }
    Ok(out)
}

/// Every child the controller creates for server `cr` with default settings, as (kind, name).
pub fn children_of(cr: &str) -> Vec<(&'static str, String)> {
    vec![
        ("Secret", names::jwt_secret(cr)),
        ("Secret", names::admin_bootstrap_secret(cr)),
        ("Secret", names::operator_credentials_secret(cr)),
        ("ConfigMap", names::config_map(cr)),
        ("ServiceAccount", names::agent_service_account(cr)),
        ("Role", names::agent_role(cr)),
        ("RoleBinding", names::agent_role_binding(cr)),
        ("Service", names::headless_service(cr)),
        ("Service", names::api_service(cr)),
        ("NetworkPolicy", names::baseline_network_policy(cr)),
        ("StatefulSet", names::statefulset(cr)),
    ]
}

/// Whose DittoServers a ServiceAccount must be able to read before its client is handed out.
#[derive(Debug, Clone, Copy)]
pub enum Reads<'a> {
    /// One server in the ServiceAccount's own namespace (the agent's Role).
    Server(&'a str),
    /// Every server, cluster-wide (the controller's ClusterRole).
    All,
}

/// A client of ServiceAccount `namespace/name`, returned once RBAC lets it read what `reads` says. The
/// authorizer learns of new bindings through an informer, so a fresh binding may refuse for a moment.
pub async fn service_account_client(
    cp: &ControlPlane,
    namespace: &str,
    name: &str,
    reads: Reads<'_>,
) -> anyhow::Result<kube::Client> {
    let client = cp.service_account_client(namespace, name).await?;
    wait_until(&format!("RBAC to let {namespace}/{name} read {reads:?}"), Duration::from_secs(15), async || {
        match reads {
            Reads::Server(server) => drop(Api::<DittoServer>::namespaced(client.clone(), namespace).get(server).await?),
            Reads::All => drop(Api::<DittoServer>::all(client.clone()).list(&ListParams::default().limit(1)).await?),
        }
        Ok(())
    })
    .await?;
    Ok(client)
}

/// Server-side applies every document of a multi-document YAML file of `deploy/` (as `kubectl apply
/// --server-side` would); returns `Kind/name` of each.
pub async fn apply_deploy_file(client: &kube::Client, file: &str) -> anyhow::Result<Vec<String>> {
    use kube::discovery::{Scope, pinned_kind};
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy").join(file);
    let text = std::fs::read_to_string(&path).with_context(|| format!("read {}", path.display()))?;
    let docs: Vec<Value> = serde_saphyr::from_multiple(&text)?;
    let mut applied = Vec::new();
    for doc in docs.into_iter().filter(|d| !d.is_null()) {
        let obj: DynamicObject = serde_json::from_value(doc.clone())?;
        let types = obj.types.clone().context("a document without apiVersion and kind")?;
        let (ar, caps) = pinned_kind(client, &kube::api::GroupVersionKind::try_from(&types)?).await?;
        let api: Api<DynamicObject> = match (caps.scope, obj.metadata.namespace.as_deref()) {
            (Scope::Namespaced, Some(ns)) => Api::namespaced_with(client.clone(), ns, &ar),
            (Scope::Namespaced, None) => anyhow::bail!("{file}: namespaced object without namespace"),
            (Scope::Cluster, _) => Api::all_with(client.clone(), &ar),
        };
        let name = obj.metadata.name.clone().context("a document without a name")?;
        api.patch(&name, &PatchParams::apply("kubectl").force(), &Patch::Apply(&doc)).await?;
        applied.push(format!("{}/{name}", types.kind));
    }
    Ok(applied)
}

/// Waits until `name` is gone from `api` (deleted and, with finalizers, released).
pub async fn wait_gone<K>(api: &Api<K>, name: &str, timeout: Duration) -> anyhow::Result<()>
where
    K: Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let what = format!("{} {name} to be gone", K::kind(&()));
    wait_until(&what, timeout, async || {
        anyhow::ensure!(api.get_opt(name).await?.is_none(), "still there");
        Ok(())
    })
    .await
}
