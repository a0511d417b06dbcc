//! The Kubernetes objects of the exposed adapters: one Service and one NetworkPolicy per adapter, and the
//! `adapter-*` container ports of the DittoFS container.
//!
//! Only the adapter's own TCP port is exposed. The Go operator also publishes protocol companions: the
//! portmapper (Service 111 → container 10111, TCP and UDP), NFS over UDP, mDNS (5353/udp) and
//! WS-Discovery (3702/udp, 5357/tcp). DittoFS runs each of them only when an adapter setting turns it on
//! (`portmapper_enabled`, `udp_enabled`, `mdns_enabled`, `wsdiscovery_enabled`, all off by default), and
//! those settings are admin-only: the agent's `operator` role cannot read them, so no report says they
//! run. Exposing ports nobody serves is what this operator exists to stop, so none is published.

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::{ContainerPort, Service, ServicePort, ServiceSpec};
use k8s_openapi::api::networking::v1::{NetworkPolicy, NetworkPolicyIngressRule, NetworkPolicyPort, NetworkPolicySpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::ResourceExt;

use dittofs_api::crd::{AdapterStatus, ServiceType};
use dittofs_api::labels::{adapter_network_policy_labels, adapter_service_labels};
use dittofs_api::{DittoServer, names};

use super::aggregate::Exposed;
use super::compare::PortKey;
use crate::desired::network_policy::peer;
use crate::desired::{child_meta, selector_labels};

/// `<cr>-adapter-<type>`: the adapter's port, of `spec.adapterServices.type`, with its annotations.
///
/// With `allowedSources` naming IP blocks, a NodePort or LoadBalancer Service keeps the client's address
/// (`externalTrafficPolicy: Local`): the default `Cluster` policy masquerades traffic arriving at another
/// node, so the NetworkPolicy would see a node's address and refuse an allowed client or, with a block
/// covering the nodes, let in anyone. A LoadBalancer also gets the blocks as `loadBalancerSourceRanges`, so
/// the cloud balancer drops other clients before they reach a node (the policy still applies `except`).
pub fn service(ds: &DittoServer, adapter: &Exposed) -> Service {
    let cr = ds.name_any();
    let mut metadata = child_meta(
        ds,
        names::adapter_object_name(&cr, &adapter.sanitized),
        adapter_service_labels(&cr, &adapter.sanitized),
    );
    let spec = &ds.spec.adapter_services;
    if !spec.annotations.is_empty() {
        metadata.annotations = Some(spec.annotations.clone());
    }
    let blocks: Vec<String> =
        spec.allowed_sources.iter().filter_map(|s| s.ip_block.as_ref()).map(|b| b.cidr.clone()).collect();
    let external = spec.r#type != ServiceType::ClusterIp;
    Service {
        metadata,
        spec: Some(ServiceSpec {
            type_: Some(spec.r#type.as_str().into()),
            external_traffic_policy: (external && !blocks.is_empty()).then(|| "Local".to_owned()),
            load_balancer_source_ranges: (spec.r#type == ServiceType::LoadBalancer && !blocks.is_empty())
                .then_some(blocks),
            selector: Some(selector_labels(ds)),
            ports: Some(vec![ServicePort {
                name: Some(names::adapter_port_name(&adapter.sanitized)),
                port: adapter.port,
                target_port: Some(IntOrString::Int(adapter.port)),
                protocol: Some("TCP".into()),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// `<cr>-adapter-<type>`: opens exactly the adapter's port on top of the baseline policy, to the sources
/// of `spec.adapterServices.allowedSources` (any source when empty).
pub fn network_policy(ds: &DittoServer, adapter: &Exposed) -> NetworkPolicy {
    let cr = ds.name_any();
    let sources = &ds.spec.adapter_services.allowed_sources;
    NetworkPolicy {
        metadata: child_meta(
            ds,
            names::adapter_object_name(&cr, &adapter.sanitized),
            adapter_network_policy_labels(&cr, &adapter.sanitized),
        ),
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(LabelSelector { match_labels: Some(selector_labels(ds)), match_expressions: None }),
            policy_types: Some(vec!["Ingress".into()]),
            ingress: Some(vec![NetworkPolicyIngressRule {
                from: (!sources.is_empty()).then(|| sources.iter().map(peer).collect()),
                ports: Some(vec![NetworkPolicyPort {
                    port: Some(IntOrString::Int(adapter.port)),
                    protocol: Some("TCP".into()),
                    end_port: None,
                }]),
            }]),
            egress: None,
        }),
    }
}

/// The `adapter-*` container ports (sorted by name); empty when `syncContainerPorts` is off, so the
/// ports field manager releases any it set before and adapter toggles never touch the pod template.
///
/// A port whose (port, protocol) is `reserved` (the API or metrics port) or already taken by another
/// adapter is left out: server-side apply keys container ports by (port, protocol), and two names for
/// one key would make the two field managers rewrite each other's entry forever (restarting the pod).
pub fn container_ports(ds: &DittoServer, adapters: &[Exposed], reserved: &BTreeSet<PortKey>) -> Vec<ContainerPort> {
    if !ds.spec.adapter_services.sync_container_ports {
        return Vec::new();
    }
    let mut taken = reserved.clone();
    let mut ports: Vec<ContainerPort> = adapters
        .iter()
        .filter(|a| taken.insert((a.port, "TCP".to_owned())))
        .map(|a| ContainerPort {
            name: Some(names::adapter_port_name(&a.sanitized)),
            container_port: a.port,
            protocol: Some("TCP".into()),
            ..Default::default()
        })
        .collect();
    ports.sort_by(|a, b| a.name.cmp(&b.name));
    ports
}

/// `status.adapters`: what is exposed (DittoFS's type name), with the Service that exposes it.
pub fn status_adapters(ds: &DittoServer, adapters: &[Exposed]) -> Vec<AdapterStatus> {
    adapters
        .iter()
        .map(|a| AdapterStatus {
            r#type: a.kind.clone(),
            port: a.port,
            service_name: Some(names::adapter_object_name(&ds.name_any(), &a.sanitized)),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::desired::test_support::server;
    use serde_json::json;

    fn nfs() -> Exposed {
        Exposed { kind: "nfs".into(), sanitized: "nfs".into(), port: 12049 }
    }

    #[test]
    fn service_defaults_to_load_balancer_with_only_the_adapter_port() {
        let svc = service(&server(json!({})), &nfs());
        assert_eq!(svc.metadata.name.as_deref(), Some("fs-adapter-nfs"));
        let labels = svc.metadata.labels.clone().unwrap();
        assert_eq!(labels["dittofs.io/adapter-service"], "true");
        assert_eq!(labels["dittofs.io/adapter-type"], "nfs");
        assert_eq!(svc.metadata.owner_references.unwrap()[0].controller, Some(true));
        let spec = svc.spec.unwrap();
        assert_eq!(spec.type_.as_deref(), Some("LoadBalancer"));
        let ports = spec.ports.unwrap();
        assert_eq!(ports.len(), 1);
        assert_eq!((ports[0].name.as_deref(), ports[0].port), (Some("adapter-nfs"), 12049));
        assert!(svc.metadata.annotations.is_none());
    }

    #[test]
    fn service_type_and_annotations_come_from_the_spec() {
        let ds = server(json!({"adapterServices": {"type": "NodePort", "annotations": {"a": "1"}}}));
        let svc = service(&ds, &nfs());
        assert_eq!(svc.spec.unwrap().type_.as_deref(), Some("NodePort"));
        assert_eq!(svc.metadata.annotations.unwrap()["a"], "1");
    }

    #[test]
    fn ip_blocks_keep_the_client_address_and_limit_the_balancer() {
        let blocks = json!([{"ipBlock": {"cidr": "10.1.0.0/16", "except": ["10.1.2.0/24"]}}, {"podSelector": {}}]);
        let lb = service(&server(json!({"adapterServices": {"allowedSources": blocks}})), &nfs()).spec.unwrap();
        assert_eq!(lb.external_traffic_policy.as_deref(), Some("Local"));
        assert_eq!(lb.load_balancer_source_ranges.as_deref(), Some(&["10.1.0.0/16".to_string()][..]));
        let np = json!({"adapterServices": {"type": "NodePort", "allowedSources": blocks}});
        let np = service(&server(np), &nfs()).spec.unwrap();
        assert_eq!(np.external_traffic_policy.as_deref(), Some("Local"));
        assert!(np.load_balancer_source_ranges.is_none());
        let cluster = json!({"adapterServices": {"type": "ClusterIP", "allowedSources": blocks}});
        assert!(service(&server(cluster), &nfs()).spec.unwrap().external_traffic_policy.is_none());
        let selectors_only = json!({"adapterServices": {"allowedSources": [{"podSelector": {}}]}});
        let any = service(&server(selectors_only), &nfs()).spec.unwrap();
        assert!(any.external_traffic_policy.is_none() && any.load_balancer_source_ranges.is_none());
    }

    #[test]
    fn network_policy_opens_exactly_the_port_to_the_allowed_sources() {
        let any = network_policy(&server(json!({})), &nfs()).spec.unwrap();
        let rule = &any.ingress.unwrap()[0];
        assert!(rule.from.is_none(), "no sources configured: any source");
        assert_eq!(rule.ports.as_ref().unwrap()[0].port, Some(IntOrString::Int(12049)));
        let ds = server(
            json!({"adapterServices": {"allowedSources": [{"ipBlock": {"cidr": "10.1.0.0/16", "except": ["10.1.2.0/24"]}}]}}),
        );
        let rule = network_policy(&ds, &nfs()).spec.unwrap().ingress.unwrap().remove(0);
        let from = rule.from.unwrap();
        assert_eq!(from[0].ip_block.as_ref().unwrap().cidr, "10.1.0.0/16");
        assert_eq!(from[0].ip_block.as_ref().unwrap().except.as_deref(), Some(&["10.1.2.0/24".to_string()][..]));
    }

    #[test]
    fn container_ports_follow_the_sync_flag() {
        let smb = Exposed { kind: "smb".into(), sanitized: "smb".into(), port: 12445 };
        let none = BTreeSet::new();
        let ports = container_ports(&server(json!({})), &[smb.clone(), nfs()], &none);
        let names: Vec<_> = ports.iter().map(|p| (p.name.clone().unwrap(), p.container_port)).collect();
        assert_eq!(names, [("adapter-nfs".to_string(), 12049), ("adapter-smb".to_string(), 12445)]);
        let off = server(json!({"adapterServices": {"syncContainerPorts": false}}));
        assert!(container_ports(&off, &[smb, nfs()], &none).is_empty());
    }

    #[test]
    fn container_ports_never_reuse_a_static_or_another_adapters_port() {
        let on_api = Exposed { kind: "x".into(), sanitized: "x".into(), port: 8080 };
        let same = Exposed { kind: "y".into(), sanitized: "y".into(), port: 12049 };
        let reserved = BTreeSet::from([(8080, "TCP".to_owned())]);
        let ports = container_ports(&server(json!({})), &[nfs(), on_api, same], &reserved);
        let names: Vec<_> = ports.iter().map(|p| p.name.clone().unwrap()).collect();
        assert_eq!(names, ["adapter-nfs"]);
    }

    #[test]
    fn long_types_get_fifteen_character_port_names() {
        let long = Exposed { kind: "Very_Long_Adapter".into(), sanitized: "very-long-adapter".into(), port: 9000 };
        let svc = service(&server(json!({})), &long);
        let name = svc.spec.unwrap().ports.unwrap()[0].name.clone().unwrap();
        assert!(name.len() <= 15 && name.starts_with("adapter-ve"), "{name}");
        let ports = container_ports(&server(json!({})), &[long], &BTreeSet::new());
        assert_eq!(ports[0].name.as_deref(), Some(name.as_str()));
    }

    #[test]
    fn status_names_the_services() {
        let st = status_adapters(&server(json!({})), &[nfs()]);
        assert_eq!(st[0].service_name.as_deref(), Some("fs-adapter-nfs"));
    }
}
