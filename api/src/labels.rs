//! Labels, annotations and label selectors put on (and used to find) the objects of a `DittoServer`.
//!
//! Every object gets the [`common_labels`] (`app.kubernetes.io/{name,instance,managed-by,component}`);
//! pods are selected by [`selector_labels`]. Adapter Services and NetworkPolicies carry the
//! `dittofs.io/*` marker labels of the Go operator so that they are found by the same selectors.

use std::collections::BTreeMap;

use crate::constants::CONTROLLER_NAME;
use crate::names::{MAX_LABEL_LEN, sanitize_adapter_type};

/// `app.kubernetes.io/name`: always [`APP_NAME`].
pub const NAME_LABEL: &str = "app.kubernetes.io/name";
/// `app.kubernetes.io/instance`: the `DittoServer`'s name.
pub const INSTANCE_LABEL: &str = "app.kubernetes.io/instance";
/// `app.kubernetes.io/managed-by`: always [`CONTROLLER_NAME`].
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
/// `app.kubernetes.io/component`: one of the `COMPONENT_*` values.
pub const COMPONENT_LABEL: &str = "app.kubernetes.io/component";

/// Value of [`NAME_LABEL`].
pub const APP_NAME: &str = "dittofs";

/// Component of the StatefulSet, its pods and the headless and API Services.
pub const COMPONENT_SERVER: &str = "server";
/// Component of the rendered-config ConfigMap.
pub const COMPONENT_CONFIG: &str = "config";
/// Component of the managed Secrets (JWT, admin bootstrap, operator credentials).
pub const COMPONENT_CREDENTIALS: &str = "credentials";
/// Component of the per-adapter Services and NetworkPolicies.
pub const COMPONENT_ADAPTER: &str = "adapter";
/// Component of the baseline NetworkPolicy.
pub const COMPONENT_NETWORK_POLICY: &str = "network-policy";
/// Component of the metrics Service and ServiceMonitor.
pub const COMPONENT_METRICS: &str = "metrics";
/// Component of the agent's ServiceAccount, Role and RoleBinding.
pub const COMPONENT_AGENT: &str = "agent";

/// Marks an adapter Service (value `"true"`).
pub const ADAPTER_SERVICE_LABEL: &str = "dittofs.io/adapter-service";
/// Marks an adapter NetworkPolicy (value `"true"`).
pub const ADAPTER_NETWORK_POLICY_LABEL: &str = "dittofs.io/adapter-networkpolicy";
/// Marks the baseline NetworkPolicy (value `"true"`).
pub const BASELINE_NETWORK_POLICY_LABEL: &str = "dittofs.io/baseline-networkpolicy";
/// Marks the metrics Service (value `"true"`).
pub const METRICS_SERVICE_LABEL: &str = "dittofs.io/metrics-service";
/// The sanitized adapter type of an adapter Service or NetworkPolicy.
pub const ADAPTER_TYPE_LABEL: &str = "dittofs.io/adapter-type";
/// Value of the boolean marker labels.
pub const LABEL_TRUE: &str = "true";

/// Pod-template annotation: hash of the rendered config and referenced Secrets (a change rolls the pod).
pub const CONFIG_HASH_ANNOTATION: &str = "dittofs.io/config-hash";

/// Labels selecting the server's pods (StatefulSet selector, Service selectors, NetworkPolicy podSelector).
pub fn selector_labels(cr: &str) -> BTreeMap<String, String> {
    map([(NAME_LABEL, APP_NAME), (INSTANCE_LABEL, cr), (COMPONENT_LABEL, COMPONENT_SERVER)])
}

/// `k=v,…` label selector of [`selector_labels`]: the server's pods.
pub fn pods_selector(cr: &str) -> String {
    selector_labels(cr).iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",")
}

/// `k=v,…` label selector of every object of the server this controller labels.
pub fn instance_selector(cr: &str) -> String {
    format!("{NAME_LABEL}={APP_NAME},{INSTANCE_LABEL}={cr},{MANAGED_BY_LABEL}={CONTROLLER_NAME}")
}

/// The labels every object of the server carries: name, instance, managed-by and the component.
pub fn common_labels(cr: &str, component: &str) -> BTreeMap<String, String> {
    map([
        (NAME_LABEL, APP_NAME),
        (INSTANCE_LABEL, cr),
        (MANAGED_BY_LABEL, CONTROLLER_NAME),
        (COMPONENT_LABEL, component),
    ])
}

/// Labels of the StatefulSet, its pod template and the static Services (a superset of [`selector_labels`]).
pub fn server_labels(cr: &str) -> BTreeMap<String, String> {
    common_labels(cr, COMPONENT_SERVER)
}

/// Value of [`ADAPTER_TYPE_LABEL`]: the sanitized type, cut to a valid label value.
pub fn adapter_type_label_value(adapter_type: &str) -> String {
    let sanitized = sanitize_adapter_type(adapter_type);
    if sanitized.len() <= MAX_LABEL_LEN {
        return sanitized;
    }
    sanitized[..MAX_LABEL_LEN].trim_end_matches('-').to_owned()
}

/// Labels of an adapter Service: common labels + `dittofs.io/adapter-service=true` + `dittofs.io/adapter-type=<t>`.
pub fn adapter_service_labels(cr: &str, adapter_type: &str) -> BTreeMap<String, String> {
    let mut labels = common_labels(cr, COMPONENT_ADAPTER);
    labels.insert(ADAPTER_SERVICE_LABEL.into(), LABEL_TRUE.into());
    labels.insert(ADAPTER_TYPE_LABEL.into(), adapter_type_label_value(adapter_type));
    labels
}

/// Labels of an adapter NetworkPolicy: common labels + `dittofs.io/adapter-networkpolicy=true` + `dittofs.io/adapter-type=<t>`.
pub fn adapter_network_policy_labels(cr: &str, adapter_type: &str) -> BTreeMap<String, String> {
    let mut labels = common_labels(cr, COMPONENT_ADAPTER);
    labels.insert(ADAPTER_NETWORK_POLICY_LABEL.into(), LABEL_TRUE.into());
    labels.insert(ADAPTER_TYPE_LABEL.into(), adapter_type_label_value(adapter_type));
    labels
}

/// Labels of the baseline NetworkPolicy: common labels + `dittofs.io/baseline-networkpolicy=true`.
pub fn baseline_network_policy_labels(cr: &str) -> BTreeMap<String, String> {
    let mut labels = common_labels(cr, COMPONENT_NETWORK_POLICY);
    labels.insert(BASELINE_NETWORK_POLICY_LABEL.into(), LABEL_TRUE.into());
    labels
}

/// Labels of the metrics Service (also the ServiceMonitor's selector): common labels + `dittofs.io/metrics-service=true`.
pub fn metrics_service_labels(cr: &str) -> BTreeMap<String, String> {
    let mut labels = common_labels(cr, COMPONENT_METRICS);
    labels.insert(METRICS_SERVICE_LABEL.into(), LABEL_TRUE.into());
    labels
}

/// Label selector listing this server's adapter Services:
/// `app.kubernetes.io/instance=<cr>,dittofs.io/adapter-service=true`.
///
/// Keyed on the instance label only (not managed-by), so Services created by the Go operator
/// with the same marker are found too once they carry the instance label.
pub fn adapter_services_selector(cr: &str) -> String {
    format!("{INSTANCE_LABEL}={cr},{ADAPTER_SERVICE_LABEL}={LABEL_TRUE}")
}

/// Label selector listing this server's adapter NetworkPolicies.
pub fn adapter_network_policies_selector(cr: &str) -> String {
    format!("{INSTANCE_LABEL}={cr},{ADAPTER_NETWORK_POLICY_LABEL}={LABEL_TRUE}")
}

fn map<const N: usize>(pairs: [(&str, &str); N]) -> BTreeMap<String, String> {
    pairs.into_iter().map(|(k, v)| (k.to_owned(), v.to_owned())).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selector_is_a_subset_of_server_labels() {
        let selector = selector_labels("fs");
        let labels = server_labels("fs");
        for (k, v) in &selector {
            assert_eq!(labels.get(k), Some(v));
        }
        assert_eq!(labels[MANAGED_BY_LABEL], "dittofs-controller");
        assert_eq!(
            selector.into_iter().collect::<Vec<_>>(),
            [
                ("app.kubernetes.io/component".to_owned(), "server".to_owned()),
                ("app.kubernetes.io/instance".to_owned(), "fs".to_owned()),
                ("app.kubernetes.io/name".to_owned(), "dittofs".to_owned()),
            ]
        );
    }

    #[test]
    fn adapter_labels() {
        let svc = adapter_service_labels("fs", "NFS");
        assert_eq!(svc[ADAPTER_SERVICE_LABEL], "true");
        assert_eq!(svc[ADAPTER_TYPE_LABEL], "nfs");
        assert_eq!(svc[INSTANCE_LABEL], "fs");
        assert_eq!(svc[COMPONENT_LABEL], "adapter");
        let np = adapter_network_policy_labels("fs", "smb");
        assert_eq!(np[ADAPTER_NETWORK_POLICY_LABEL], "true");
        assert_eq!(np[ADAPTER_TYPE_LABEL], "smb");
        assert!(!np.contains_key(ADAPTER_SERVICE_LABEL));
        assert_eq!(baseline_network_policy_labels("fs")[BASELINE_NETWORK_POLICY_LABEL], "true");
        assert_eq!(metrics_service_labels("fs")[METRICS_SERVICE_LABEL], "true");
        assert_eq!(adapter_services_selector("fs"), "app.kubernetes.io/instance=fs,dittofs.io/adapter-service=true");
        assert_eq!(
            adapter_network_policies_selector("fs"),
            "app.kubernetes.io/instance=fs,dittofs.io/adapter-networkpolicy=true"
        );
    }

    #[test]
    fn long_adapter_types_give_valid_label_values() {
        let v = adapter_type_label_value(&"x-".repeat(40));
        assert!(v.len() <= MAX_LABEL_LEN);
        assert!(!v.ends_with('-'));
    }
}
