//! The baseline NetworkPolicy `<cr>-baseline`: the server pods accept only the API port (and metrics when on).
//!
//! It exists from the first reconcile, so the pods are isolated from birth; the per-adapter policies
//! (added by the adapter part) only ever open more ports, never cut the API off. It carries
//! [`POLICY_FINALIZER`], removed by the teardown once no pod is left: without any policy selecting them,
//! terminating pods would accept every port from the whole cluster.

use k8s_openapi::api::networking::v1::{NetworkPolicy, NetworkPolicyIngressRule, NetworkPolicyPort, NetworkPolicySpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::ResourceExt;

use dittofs_api::constants::POLICY_FINALIZER;
use dittofs_api::labels::{baseline_network_policy_labels, selector_labels};
use dittofs_api::{DittoServer, names};

use super::child_meta;
use super::config::metrics;

/// `<cr>-baseline`: ingress from any source to TCP API port (+ metrics port), nothing else.
pub fn baseline_network_policy(ds: &DittoServer) -> NetworkPolicy {
    let cr = ds.name_any();
    let tcp = |port: i32| NetworkPolicyPort {
        port: Some(IntOrString::Int(port)),
        protocol: Some("TCP".into()),
        end_port: None,
    };
    let mut ports = vec![tcp(ds.spec.control_plane.port)];
    if let Some(m) = metrics(&ds.spec) {
        ports.push(tcp(m.port));
    }
    let mut metadata = child_meta(ds, names::baseline_network_policy(&cr), baseline_network_policy_labels(&cr));
    metadata.finalizers = Some(vec![POLICY_FINALIZER.to_owned()]);
    NetworkPolicy {
        metadata,
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(LabelSelector { match_labels: Some(selector_labels(&cr)), match_expressions: None }),
            policy_types: Some(vec!["Ingress".into()]),
            ingress: Some(vec![NetworkPolicyIngressRule { from: None, ports: Some(ports) }]),
            egress: None,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::desired::test_support::server;
    use serde_json::json;

    fn ports(ds: &DittoServer) -> Vec<i32> {
        let spec = baseline_network_policy(ds).spec.unwrap();
        assert_eq!(spec.policy_types.unwrap(), ["Ingress"]);
        spec.ingress.unwrap()[0]
            .ports
            .clone()
            .unwrap()
            .iter()
            .map(|p| match p.port {
                Some(IntOrString::Int(n)) => n,
                _ => panic!("numeric port"),
            })
            .collect()
    }

    #[test]
    fn api_only_then_metrics() {
        assert_eq!(ports(&server(json!({}))), [8080]);
        assert_eq!(ports(&server(json!({"metrics": {"enabled": true, "port": 9191}}))), [8080, 9191]);
        assert_eq!(ports(&server(json!({"metrics": {"enabled": false, "port": 9191}}))), [8080]);
    }
}
