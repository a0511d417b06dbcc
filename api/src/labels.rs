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

/// The Go operator's pod label `app` (value [`GO_APP`]).
pub const GO_APP_LABEL: &str = "app";
/// Value of [`GO_APP_LABEL`].
pub const GO_APP: &str = "dittofs-server";
/// The Go operator's pod label `instance`: the `DittoServer`'s name.
pub const GO_INSTANCE_LABEL: &str = "instance";

/// `DittoServer` annotation set when this controller took a server over from the Go operator and kept the
/// live StatefulSet's selector (immutable): value [`POD_SELECTOR_GO`]. Absent: [`selector_labels`].
pub const POD_SELECTOR_ANNOTATION: &str = "dittofs.dittofs.com/pod-selector";
/// Value of [`POD_SELECTOR_ANNOTATION`]: the pods are selected by [`go_selector_labels`].
pub const POD_SELECTOR_GO: &str = "go-operator";

/// Which labels select a server's pods. Only these two, each scoped to the server's own name: the
/// annotation that picks one is user-writable, so it must not be able to aim Services at other pods.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PodSelector {
    /// `app.kubernetes.io/{name,instance,component}` ([`selector_labels`]).
    Standard,
    /// `app=dittofs-server,instance=<cr>`: a StatefulSet the Go operator created keeps its selector.
    GoOperator,
}

impl PodSelector {
    /// The selector a server's annotations ask for (anything but [`POD_SELECTOR_GO`] is the standard one).
    pub fn from_annotations(annotations: &BTreeMap<String, String>) -> Self {
        match annotations.get(POD_SELECTOR_ANNOTATION).map(String::as_str) {
            Some(POD_SELECTOR_GO) => Self::GoOperator,
            _ => Self::Standard,
        }
    }

    /// The labels selecting the pods of server `cr`.
    pub fn labels(self, cr: &str) -> BTreeMap<String, String> {
        match self {
            Self::Standard => selector_labels(cr),
            Self::GoOperator => go_selector_labels(cr),
        }
    }

    /// The labels of the pod template: [`server_labels`], plus the selector's when it is the Go operator's.
    pub fn pod_labels(self, cr: &str) -> BTreeMap<String, String> {
        let mut labels = server_labels(cr);
        labels.extend(self.labels(cr));
        labels
    }

    /// `k=v,…` label selector of the server's pods.
    pub fn selector(self, cr: &str) -> String {
        self.labels(cr).iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",")
    }
}

/// Labels selecting the server's pods (StatefulSet selector, Service selectors, NetworkPolicy podSelector)
/// unless it was taken over from the Go operator ([`PodSelector`]).
pub fn selector_labels(cr: &str) -> BTreeMap<String, String> {
    map([(NAME_LABEL, APP_NAME), (INSTANCE_LABEL, cr), (COMPONENT_LABEL, COMPONENT_SERVER)])
}

/// The Go operator's pod selector: `app=dittofs-server,instance=<cr>`.
pub fn go_selector_labels(cr: &str) -> BTreeMap<String, String> {
    map([(GO_APP_LABEL, GO_APP), (GO_INSTANCE_LABEL, cr)])
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

/// Label selector listing the adapter Services the Go operator made for server `cr` (before this
/// controller first applied them): `instance=<cr>,dittofs.io/adapter-service=true`.
pub fn go_adapter_services_selector(cr: &str) -> String {
    format!("{GO_INSTANCE_LABEL}={cr},{ADAPTER_SERVICE_LABEL}={LABEL_TRUE}")
}

/// Label selector listing the adapter NetworkPolicies the Go operator made for server `cr`.
pub fn go_adapter_network_policies_selector(cr: &str) -> String {
    format!("{GO_INSTANCE_LABEL}={cr},{ADAPTER_NETWORK_POLICY_LABEL}={LABEL_TRUE}")
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
    fn the_go_selector_is_kept_beside_ours_on_the_pods() {
        let go = BTreeMap::from([(POD_SELECTOR_ANNOTATION.to_owned(), POD_SELECTOR_GO.to_owned())]);
        let mode = PodSelector::from_annotations(&go);
        assert_eq!(mode, PodSelector::GoOperator);
        assert_eq!(mode.selector("fs"), "app=dittofs-server,instance=fs");
        let pod = mode.pod_labels("fs");
        for (k, v) in selector_labels("fs").iter().chain(go_selector_labels("fs").iter()) {
            assert_eq!(pod.get(k), Some(v), "{k}");
        }
        // Any other value is the standard selector: the annotation cannot name arbitrary labels.
        let other = BTreeMap::from([(POD_SELECTOR_ANNOTATION.to_owned(), "app=payments".to_owned())]);
        assert_eq!(PodSelector::from_annotations(&other), PodSelector::Standard);
        assert_eq!(PodSelector::Standard.pod_labels("fs"), server_labels("fs"));
        assert_eq!(go_adapter_services_selector("fs"), "instance=fs,dittofs.io/adapter-service=true");
    }

    #[test]
    fn long_adapter_types_give_valid_label_values() {
        let v = adapter_type_label_value(&"x-".repeat(40));
        assert!(v.len() <= MAX_LABEL_LEN);
        assert!(!v.ends_with('-'));
    }
}
