//! The prometheus-operator ServiceMonitor `<cr>-metrics`, in the Go operator's shape: the user's labels under
//! the controller's, a selector of the `<cr>-metrics` Service's labels, the server's namespace, and one
//! endpoint (port `metrics`, the path, the interval and the bearer token Secret when set).
//!
//! The type holds only the fields the controller sets: a server-side apply of it owns exactly those, and
//! whatever else someone adds to the monitor (relabelings, a scrape timeout) stays theirs. It is a typed
//! resource (not a `DynamicObject`) so that it goes through the same cache and applier as every other child;
//! every field defaults when read, so a monitor shaped by someone else (the Go operator's) still reads.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::{CustomResource, ResourceExt};
use serde::{Deserialize, Serialize};

use dittofs_api::labels::metrics_service_labels;
use dittofs_api::{DittoServer, names};

use super::child_meta;
use super::config::metrics;

/// `monitoring.coreos.com/v1` `ServiceMonitor`: the fields the controller sets.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[kube(group = "monitoring.coreos.com", version = "v1", kind = "ServiceMonitor", namespaced, schema = "disabled")]
#[serde(rename_all = "camelCase")]
pub struct ServiceMonitorSpec {
    /// The Services to scrape: the `<cr>-metrics` Service's labels.
    #[serde(default)]
    pub selector: LabelSelector,
    /// The namespaces of those Services: the server's.
    #[serde(default)]
    pub namespace_selector: NamespaceSelector,
    /// One endpoint, the metrics port.
    #[serde(default)]
    pub endpoints: Vec<Endpoint>,
}

/// Which namespaces the selector looks in.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct NamespaceSelector {
    /// The namespaces by name.
    #[serde(default)]
    pub match_names: Vec<String>,
}

/// One scrape endpoint of the selected Services.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct Endpoint {
    /// The Service port's name.
    #[serde(default)]
    pub port: String,
    /// The HTTP path of the metrics.
    #[serde(default)]
    pub path: String,
    /// How often to scrape; unset: Prometheus' default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<String>,
    /// The Secret key whose value Prometheus presents as a bearer token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bearer_token_secret: Option<SecretKeySelector>,
}

/// A key of a Secret in the monitor's namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
pub struct SecretKeySelector {
    /// The Secret.
    pub name: String,
    /// The key.
    pub key: String,
}

/// What became of the ServiceMonitor a reconcile wanted (the MetricsReady condition reads it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Monitor {
    /// The spec asks for none (any existing one was deleted).
    NotWanted,
    /// It is applied.
    Applied,
    /// The spec asks for one but the cluster does not serve ServiceMonitors.
    ApiMissing,
    /// The spec asks for one but discovery has not answered yet.
    ApiUnknown,
}

/// Whether the spec asks for a ServiceMonitor: metrics enabled and `metrics.serviceMonitor.enabled`.
pub fn wanted(ds: &DittoServer) -> bool {
    metrics(&ds.spec).and_then(|m| m.service_monitor.as_ref()).is_some_and(|sm| sm.enabled)
}

/// The ServiceMonitor `<cr>-metrics` when [`wanted`].
pub fn service_monitor(ds: &DittoServer) -> Option<ServiceMonitor> {
    let m = metrics(&ds.spec)?;
    let sm = m.service_monitor.as_ref().filter(|sm| sm.enabled)?;
    let cr = ds.name_any();
    let selected = metrics_service_labels(&cr);
    // The user's labels first, the controller's over them: its watch and the selector rely on its own.
    let mut labels = sm.labels.clone();
    labels.extend(selected.clone());
    let endpoint = Endpoint {
        port: names::METRICS_PORT_NAME.to_owned(),
        path: m.path.clone(),
        interval: sm.interval.clone().filter(|i| !i.is_empty()),
        bearer_token_secret: m
            .bearer_token_secret
            .as_ref()
            .map(|s| SecretKeySelector { name: s.name.clone(), key: s.key.clone() }),
    };
    let spec = ServiceMonitorSpec {
        selector: LabelSelector { match_labels: Some(selected), match_expressions: None },
        namespace_selector: NamespaceSelector { match_names: ds.namespace().into_iter().collect() },
        endpoints: vec![endpoint],
    };
    let mut monitor = ServiceMonitor::new(&names::metrics_service(&cr), spec);
    monitor.metadata = child_meta(ds, names::metrics_service(&cr), labels);
    Some(monitor)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::desired::test_support::server;
    use serde_json::json;

    #[test]
    fn nothing_unless_metrics_and_the_monitor_are_both_on() {
        for spec in [
            json!({}),
            json!({"metrics": {"enabled": true}}),
            json!({"metrics": {"enabled": true, "serviceMonitor": {"enabled": false, "interval": "30s"}}}),
            json!({"metrics": {"enabled": false, "serviceMonitor": {"enabled": true}}}),
        ] {
            let ds = server(spec.clone());
            assert!(service_monitor(&ds).is_none() && !wanted(&ds), "{spec}");
        }
        assert!(wanted(&server(json!({"metrics": {"enabled": true, "serviceMonitor": {"enabled": true}}}))));
    }

    /// The Go operator's `buildServiceMonitor` for the same spec, written out by hand from its code.
    #[test]
    fn the_go_operators_shape() {
        let ds = server(json!({"metrics": {
            "enabled": true, "port": 9191, "path": "/prom",
            "bearerTokenSecret": {"name": "scrape", "key": "token"},
            "serviceMonitor": {"enabled": true, "interval": "15s",
                "labels": {"release": "kube-prometheus-stack", "dittofs.io/metrics-service": "no"}}
        }}));
        let sm = serde_json::to_value(service_monitor(&ds).unwrap()).unwrap();
        let selected = json!({
            "app.kubernetes.io/component": "metrics", "app.kubernetes.io/instance": "fs",
            "app.kubernetes.io/managed-by": "dittofs-controller", "app.kubernetes.io/name": "dittofs",
            "dittofs.io/metrics-service": "true"
        });
        let mut labels = selected.clone();
        labels["release"] = json!("kube-prometheus-stack");
        assert_eq!(sm["apiVersion"], "monitoring.coreos.com/v1");
        assert_eq!(sm["kind"], "ServiceMonitor");
        assert_eq!(sm["metadata"]["name"], "fs-metrics");
        assert_eq!(sm["metadata"]["namespace"], "ns");
        // A user label never clobbers the selector's keys.
        assert_eq!(sm["metadata"]["labels"], labels);
        assert_eq!(sm["metadata"]["ownerReferences"][0]["kind"], "DittoServer");
        assert_eq!(sm["metadata"]["ownerReferences"][0]["controller"], true);
        assert_eq!(
            sm["spec"],
            json!({
                "selector": {"matchLabels": selected},
                "namespaceSelector": {"matchNames": ["ns"]},
                "endpoints": [{"port": "metrics", "path": "/prom", "interval": "15s",
                    "bearerTokenSecret": {"name": "scrape", "key": "token"}}]
            })
        );
        // The selector is the metrics Service's own labels.
        let svc = crate::desired::services::metrics_service(&ds).unwrap();
        assert_eq!(serde_json::to_value(svc.metadata.labels).unwrap(), selected);
    }

    #[test]
    fn no_interval_and_no_token_are_left_out() {
        let ds = server(json!({"metrics": {"enabled": true, "serviceMonitor": {"enabled": true}}}));
        let sm = serde_json::to_value(service_monitor(&ds).unwrap()).unwrap();
        assert_eq!(sm["spec"]["endpoints"], json!([{"port": "metrics", "path": "/metrics"}]));
    }
}
