//! Third-party CRDs the controller uses when a cluster has them, in minimal schemas written from reading their
//! Go types: the fields the controller sets are typed (so the apiserver checks what it sends), everything
//! else is kept as written (`x-kubernetes-preserve-unknown-fields`).
//!
//! Installing one is cluster-wide: a test that needs it absent runs on a control plane of its own.

use std::time::Duration;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams};
use serde_json::{Value, json};

use crate::kube_env::wait_until;

/// The name of the prometheus-operator's ServiceMonitor CRD.
pub const SERVICE_MONITOR_CRD: &str = "servicemonitors.monitoring.coreos.com";

/// `monitoring.coreos.com/v1` `ServiceMonitor`.
pub fn service_monitor_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("monitoring.coreos.com", "v1", "ServiceMonitor"),
        "servicemonitors",
    )
}

/// The prometheus-operator's `Duration` pattern (pkg/apis/monitoring/v1 `Duration`).
const PROMETHEUS_DURATION: &str =
    "^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$";

/// A string-to-string map (labels).
fn string_map() -> Value {
    json!({"type": "object", "additionalProperties": {"type": "string"}})
}

/// The ServiceMonitor CRD: `spec.selector` (a LabelSelector, required as in prometheus-operator's
/// `ServiceMonitorSpec`), `spec.namespaceSelector` {any, matchNames}, and `spec.endpoints[]` with `port`,
/// `path`, `interval` (its Duration pattern) and `bearerTokenSecret` (a SecretKeySelector: `key` required).
pub fn service_monitor_crd() -> Value {
    let endpoint = json!({
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": true,
        "properties": {
            "port": {"type": "string"},
            "path": {"type": "string"},
            "interval": {"type": "string", "pattern": PROMETHEUS_DURATION},
            "bearerTokenSecret": {"type": "object", "required": ["key"], "properties": {
                "name": {"type": "string"}, "key": {"type": "string"}, "optional": {"type": "boolean"}}}
        }
    });
    let spec = json!({
        "type": "object",
        "required": ["selector"],
        "x-kubernetes-preserve-unknown-fields": true,
        "properties": {
            "selector": {"type": "object", "properties": {
                "matchLabels": string_map(),
                "matchExpressions": {"type": "array", "items": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}
            }},
            "namespaceSelector": {"type": "object", "properties": {
                "any": {"type": "boolean"},
                "matchNames": {"type": "array", "items": {"type": "string"}}
            }},
            "endpoints": {"type": "array", "items": endpoint}
        }
    });
    json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": SERVICE_MONITOR_CRD},
        "spec": {
            "group": "monitoring.coreos.com",
            "scope": "Namespaced",
            "names": {"kind": "ServiceMonitor", "listKind": "ServiceMonitorList", "plural": "servicemonitors",
                "singular": "servicemonitor", "shortNames": ["smon"]},
            "versions": [{"name": "v1", "served": true, "storage": true,
                "schema": {"openAPIV3Schema": {"type": "object", "required": ["spec"], "properties": {"spec": spec}}}}]
        }
    })
}

/// Applies the ServiceMonitor CRD and waits until the apiserver serves it.
pub async fn install_service_monitor_crd(client: kube::Client) -> anyhow::Result<()> {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let params = PatchParams::apply("dittofs-tests").force();
    crds.patch(SERVICE_MONITOR_CRD, &params, &Patch::Apply(&service_monitor_crd())).await?;
    wait_until("the ServiceMonitor API", Duration::from_secs(30), async || {
        let monitors: Api<DynamicObject> = Api::all_with(client.clone(), &service_monitor_resource());
        monitors.list(&ListParams::default().limit(1)).await?;
        Ok(())
    })
    .await
}
