//! The database side of the controller tests: a minimal `PerconaPGCluster` CRD (written from Percona's
//! `pgv2.percona.com/v2` types: a spec kept as sent, a `status` subresource with `state`), the test's part as
//! Percona's operator (the user Secret and `status.state`), and the rendered env resolved from Secrets as the
//! kubelet would, to start DittoFS with it.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Context as _;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{Container, Secret};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;

use crate::kube_env::{TempNamespace, wait_until};

/// `pgv2.percona.com/v2` `PerconaPGCluster`.
pub fn percona_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("pgv2.percona.com", "v2", "PerconaPGCluster"),
        "perconapgclusters",
    )
}

/// Installs the CRD (idempotent) and waits until the apiserver serves it.
pub async fn install_percona_crd(client: kube::Client) -> anyhow::Result<()> {
    let preserved = json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true});
    let crd = json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "perconapgclusters.pgv2.percona.com"},
        "spec": {"group": "pgv2.percona.com", "scope": "Namespaced",
            "names": {"kind": "PerconaPGCluster", "plural": "perconapgclusters", "singular": "perconapgcluster",
                "listKind": "PerconaPGClusterList", "shortNames": ["pg"]},
            "versions": [{"name": "v2", "served": true, "storage": true, "subresources": {"status": {}},
                "schema": {"openAPIV3Schema": {"type": "object",
                    "properties": {"spec": preserved, "status": {"type": "object",
                        "properties": {"state": {"type": "string"}}, "x-kubernetes-preserve-unknown-fields": true}}}}}]}});
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let params = PatchParams::apply("dittofs-tests").force();
    api.patch("perconapgclusters.pgv2.percona.com", &params, &Patch::Apply(&crd)).await?;
    let clusters = percona_resource();
    wait_until("the PerconaPGCluster API", Duration::from_secs(30), async || {
        Api::<DynamicObject>::all_with(client.clone(), &clusters).list(&ListParams::default().limit(1)).await?;
        Ok(())
    })
    .await
}

/// The PerconaPGClusters of `ns`.
pub fn clusters(ns: &TempNamespace<'_>) -> Api<DynamicObject> {
    Api::namespaced_with(ns.client(), ns.name(), &percona_resource())
}

/// As Percona's operator: sets the cluster's `status.state`.
pub async fn set_state(ns: &TempNamespace<'_>, cluster: &str, state: &str) -> anyhow::Result<()> {
    let body = json!({"status": {"state": state}});
    clusters(ns).patch_status(cluster, &PatchParams::default(), &Patch::Merge(&body)).await?;
    Ok(())
}

/// As Percona's operator: writes the user Secret `name` with `data`.
pub async fn create_secret(ns: &TempNamespace<'_>, name: &str, data: &BTreeMap<String, String>) -> anyhow::Result<()> {
    let secret = Secret {
        metadata: kube::api::ObjectMeta { name: Some(name.into()), ..Default::default() },
        string_data: Some(data.clone()),
        ..Default::default()
    };
    ns.api::<Secret>().create(&PostParams::default(), &secret).await?;
    Ok(())
}

/// The container `name` of the StatefulSet's pod template (init containers included).
pub fn container<'a>(sts: &'a StatefulSet, name: &str) -> anyhow::Result<&'a Container> {
    let pod = sts.spec.as_ref().and_then(|s| s.template.spec.as_ref()).context("no pod template")?;
    pod.containers
        .iter()
        .chain(pod.init_containers.iter().flatten())
        .find(|c| c.name == name)
        .with_context(|| format!("no container {name}"))
}

/// The env of `container` as the kubelet resolves it: plain values, and Secret keys read now (an absent
/// optional key is left out, an absent required one is an error, as the kubelet refuses to start the pod).
pub async fn resolve_env(ns: &TempNamespace<'_>, container: &Container) -> anyhow::Result<BTreeMap<String, String>> {
    let secrets = ns.api::<Secret>();
    let mut env = BTreeMap::new();
    for var in container.env.iter().flatten() {
        if let Some(value) = &var.value {
            env.insert(var.name.clone(), value.clone());
            continue;
        }
        let Some(r) = var.value_from.as_ref().and_then(|v| v.secret_key_ref.as_ref()) else { continue };
        let secret = secrets.get_opt(&r.name).await?;
        let value = secret.as_ref().and_then(|s| s.data.as_ref()).and_then(|d| d.get(&r.key));
        match value {
            Some(v) => {
                env.insert(var.name.clone(), String::from_utf8(v.0.clone())?);
            }
            None if r.optional == Some(true) => {}
            None => anyhow::bail!("{}: Secret {} has no key {}", var.name, r.name, r.key),
        }
    }
    Ok(env)
}
