//! Helpers shared by the controller_* integration tests: the real CRD, an in-process controller, waits.

#![allow(dead_code)]

pub mod adapters;
pub mod deploy;

use std::collections::BTreeMap;
use std::time::Duration;

use dittofs_controller::CancellationToken;
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, ListParams, PostParams};
use serde_json::Value;
use tokio::task::JoinHandle;

use dittofs_api::DittoServer;
use dittofs_controller::{Config, Controller};
use dittofs_tests::kube_env::{TempNamespace, wait_until};

/// Agent image the tests' controllers inject.
pub const AGENT_IMAGE: &str = "registry.invalid/dittofs-agent:test";

/// Installs the real CRD and waits until it serves.
pub use dittofs_tests::pod::install_crd as ensure_crd;

/// A controller running in-process on its own task.
pub struct Running {
    pub controller: Controller,
    pub token: CancellationToken,
    pub task: JoinHandle<Result<(), dittofs_controller::Error>>,
}

impl Running {
    /// Graceful stop: cancel and wait.
    pub async fn stop(self) -> anyhow::Result<()> {
        self.token.cancel();
        self.task.await??;
        Ok(())
    }
}

/// Starts a controller watching only `ns` (so parallel tests never reconcile each other's servers).
pub fn start_controller(client: kube::Client, ns: &str) -> Running {
    let mut config = Config::new(AGENT_IMAGE);
    config.namespace = Some(ns.to_owned());
    start_with(client, config)
}

/// Starts a controller with `config`.
pub fn start_with(client: kube::Client, config: Config) -> Running {
    let controller = Controller::new(client, config);
    let token = CancellationToken::new();
    let task = tokio::spawn({
        let (controller, token) = (controller.clone(), token.clone());
        async move { controller.run(token).await }
    });
    Running { controller, token, task }
}

/// A DittoServer named `name` from a JSON spec.
pub fn server(name: &str, spec: Value) -> anyhow::Result<DittoServer> {
    let spec = serde_json::from_value(spec)?;
    Ok(DittoServer::new(name, spec))
}

/// Creates a DittoServer in `ns` (retrying while a fresh CRD's endpoint warms up).
pub async fn create_server(ns: &TempNamespace<'_>, ds: &DittoServer) -> anyhow::Result<DittoServer> {
    let api: Api<DittoServer> = ns.api();
    wait_until("the DittoServer to be created", Duration::from_secs(10), async || {
        Ok(api.create(&PostParams::default(), ds).await?)
    })
    .await
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
    let list = events.list(&ListParams::default()).await?;
    Ok(list
        .items
        .into_iter()
        .filter(|e| {
            e.regarding
                .as_ref()
                .is_some_and(|r| r.name.as_deref() == Some(name) && r.kind.as_deref() == Some("DittoServer"))
        })
        .collect())
}

/// The resourceVersion of every object of `kinds` named in `names` (kind/name → rv), via dynamic GETs.
pub async fn resource_versions(
    ns: &TempNamespace<'_>,
    objects: &[(&str, String)],
) -> anyhow::Result<BTreeMap<String, String>> {
    use k8s_openapi::api::apps::v1::StatefulSet;
    use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service, ServiceAccount};
    use k8s_openapi::api::networking::v1::NetworkPolicy;
    use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
    use kube::ResourceExt;
    let mut out = BTreeMap::new();
    for (kind, name) in objects {
        let rv = match *kind {
            "StatefulSet" => ns.api::<StatefulSet>().get(name).await?.resource_version(),
            "Service" => ns.api::<Service>().get(name).await?.resource_version(),
            "Secret" => ns.api::<Secret>().get(name).await?.resource_version(),
            "ConfigMap" => ns.api::<ConfigMap>().get(name).await?.resource_version(),
            "ServiceAccount" => ns.api::<ServiceAccount>().get(name).await?.resource_version(),
            "Role" => ns.api::<Role>().get(name).await?.resource_version(),
            "RoleBinding" => ns.api::<RoleBinding>().get(name).await?.resource_version(),
            "NetworkPolicy" => ns.api::<NetworkPolicy>().get(name).await?.resource_version(),
            "DittoServer" => ns.api::<DittoServer>().get(name).await?.resource_version(),
            other => anyhow::bail!("unknown kind {other}"),
        };
        out.insert(format!("{kind}/{name}"), rv.unwrap_or_default());
    }
    Ok(out)
}

/// Every child the controller creates for server `cr` with default settings, as (kind, name).
pub fn children_of(cr: &str) -> Vec<(&'static str, String)> {
    use dittofs_api::names;
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
