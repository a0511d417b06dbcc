//! The baseline NetworkPolicy `<cr>-baseline`: the server pods accept only the API port (and metrics when on),
//! and the agent's admin port from the sources of `spec.agent.metricsFrom`, if any.
//!
//! It exists from the first reconcile, so the pods are isolated from birth; the per-adapter policies
//! (added by the adapter part) only ever open more ports, never cut the API off. It carries
//! [`POLICY_FINALIZER`], removed by the teardown once no pod is left: without any policy selecting them,
//! terminating pods would accept every port from the whole cluster.
//!
//! The agent's admin port (`/metrics`, `/livez`, `/readyz`) is closed to other pods unless the server names
//! who may scrape it: its own rule, with exactly those peers and that one port, so that it can never widen
//! the API rule, and a rule with an empty `from` (which would admit every source) is never written.

use k8s_openapi::api::networking::v1::{
    IPBlock, NetworkPolicy, NetworkPolicyIngressRule, NetworkPolicyPeer, NetworkPolicyPort, NetworkPolicySpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::ResourceExt;

use dittofs_api::constants::POLICY_FINALIZER;
use dittofs_api::crd::AdapterSource;
use dittofs_api::labels::baseline_network_policy_labels;
use dittofs_api::{DittoServer, agent_env, names};

use super::child_meta;
use super::config::metrics;

fn tcp(port: i32) -> NetworkPolicyPort {
    NetworkPolicyPort { port: Some(IntOrString::Int(port)), protocol: Some("TCP".into()), end_port: None }
}

/// A source of the spec as a NetworkPolicy peer (adapter policies and the metrics rule alike).
pub(crate) fn peer(source: &AdapterSource) -> NetworkPolicyPeer {
    NetworkPolicyPeer {
        ip_block: source
            .ip_block
            .as_ref()
            .map(|b| IPBlock { cidr: b.cidr.clone(), except: (!b.except.is_empty()).then(|| b.except.clone()) }),
        namespace_selector: source.namespace_selector.clone(),
        pod_selector: source.pod_selector.clone(),
    }
}

/// `<cr>-baseline`: ingress from any source to TCP API port (+ metrics port); with `spec.agent.metricsFrom`,
/// a second rule admitting those sources to the agent's admin port. Nothing else.
pub fn baseline_network_policy(ds: &DittoServer) -> NetworkPolicy {
    let cr = ds.name_any();
    let mut ports = vec![tcp(ds.spec.control_plane.port)];
    if let Some(m) = metrics(&ds.spec) {
        ports.push(tcp(m.port));
    }
    let mut ingress = vec![NetworkPolicyIngressRule { from: None, ports: Some(ports) }];
    let scrapers = ds.spec.agent.as_ref().map(|a| a.metrics_from.as_slice()).unwrap_or_default();
    if !scrapers.is_empty() {
        ingress.push(NetworkPolicyIngressRule {
            from: Some(scrapers.iter().map(peer).collect()),
            ports: Some(vec![tcp(i32::from(agent_env::DEFAULT_ADMIN_PORT))]),
        });
    }
    let mut metadata = child_meta(ds, names::baseline_network_policy(&cr), baseline_network_policy_labels(&cr));
    metadata.finalizers = Some(vec![POLICY_FINALIZER.to_owned()]);
    NetworkPolicy {
        metadata,
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(LabelSelector {
                match_labels: Some(super::selector_labels(ds)),
                match_expressions: None,
            }),
            policy_types: Some(vec!["Ingress".into()]),
            ingress: Some(ingress),
            egress: None,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::desired::test_support::server;
    use serde_json::{Value, json};

    /// Each ingress rule as (its peers as JSON, its TCP ports).
    fn rules(ds: &DittoServer) -> Vec<(Option<Value>, Vec<i32>)> {
        let spec = baseline_network_policy(ds).spec.unwrap();
        assert_eq!(spec.policy_types.unwrap(), ["Ingress"]);
        let port = |p: &NetworkPolicyPort| {
            assert_eq!(p.protocol.as_deref(), Some("TCP"));
            match p.port {
                Some(IntOrString::Int(n)) => n,
                _ => panic!("numeric port"),
            }
        };
        let rule = |r: &NetworkPolicyIngressRule| {
            let from = r.from.as_ref().map(|f| serde_json::to_value(f).unwrap());
            (from, r.ports.iter().flatten().map(port).collect())
        };
        spec.ingress.unwrap().iter().map(rule).collect()
    }

    #[test]
    fn api_only_then_metrics() {
        assert_eq!(rules(&server(json!({}))), [(None, vec![8080])]);
        assert_eq!(rules(&server(json!({"metrics": {"enabled": true, "port": 9191}}))), [(None, vec![8080, 9191])]);
        assert_eq!(rules(&server(json!({"metrics": {"enabled": false, "port": 9191}}))), [(None, vec![8080])]);
    }

    #[test]
    fn the_agents_admin_port_opens_only_to_the_named_scrapers() {
        let monitoring = json!({"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}},
                                "podSelector": {"matchLabels": {"app.kubernetes.io/name": "prometheus"}}});
        let block = json!({"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.1.0.0/16"]}});
        let ds = server(json!({"agent": {"metricsFrom": [monitoring.clone(), block.clone()]}}));
        assert_eq!(
            rules(&ds),
            [
                (None, vec![8080]),
                (Some(json!([monitoring, {"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.1.0.0/16"]}}])), vec![8082])
            ]
        );
        assert_eq!(baseline_network_policy(&ds), baseline_network_policy(&ds.clone()), "deterministic");
        // Nothing named, nothing opened: an empty list must not become a rule without `from` (any source).
        for closed in [json!({"agent": {"metricsFrom": []}}), json!({"agent": {"image": "a:1"}}), json!({})] {
            assert_eq!(rules(&server(closed.clone())), [(None, vec![8080])], "{closed}");
        }
        // Other settings never widen the scrape rule: with metrics on, the DittoFS port stays in the first rule.
        let both = server(json!({"metrics": {"enabled": true, "port": 9191}, "agent": {"metricsFrom": [block]}}));
        assert_eq!(rules(&both)[0], (None, vec![8080, 9191]));
        assert_eq!(rules(&both)[1].1, [8082]);
    }
}
