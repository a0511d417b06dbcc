//! The static Services: `<cr>-headless` (the StatefulSet's), `<cr>-api`, and `<cr>-metrics` when metrics are on.
//!
//! Adapter Services are not built here: they follow the adapters the agents report.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::ResourceExt;

use dittofs_api::labels::{metrics_service_labels, server_labels};
use dittofs_api::{DittoServer, names};

use super::config::metrics;
use super::{child_meta, selector_labels};

fn tcp_port(name: &str, port: i32) -> ServicePort {
    ServicePort {
        name: Some(name.into()),
        port,
        target_port: Some(IntOrString::Int(port)),
        protocol: Some("TCP".into()),
        ..Default::default()
    }
}

/// `<cr>-headless`: the StatefulSet's governing Service (stable pod DNS), API port only.
pub fn headless_service(ds: &DittoServer) -> Service {
    let cr = ds.name_any();
    Service {
        metadata: child_meta(ds, names::headless_service(&cr), server_labels(&cr)),
        spec: Some(ServiceSpec {
            cluster_ip: Some("None".into()),
            selector: Some(selector_labels(ds)),
            ports: Some(vec![tcp_port(names::API_PORT_NAME, ds.spec.control_plane.port)]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// `<cr>-api`: the REST API, of `spec.service.type` (ClusterIP unless set) with its annotations.
///
/// Annotations the user removes from the spec are removed from the Service (server-side apply
/// releases them); annotations others added stay.
pub fn api_service(ds: &DittoServer) -> Service {
    let cr = ds.name_any();
    let mut metadata = child_meta(ds, names::api_service(&cr), server_labels(&cr));
    if !ds.spec.service.annotations.is_empty() {
        metadata.annotations = Some(ds.spec.service.annotations.clone());
    }
    Service {
        metadata,
        spec: Some(ServiceSpec {
            type_: Some(ds.spec.service.r#type.as_str().into()),
            selector: Some(selector_labels(ds)),
            ports: Some(vec![tcp_port(names::API_PORT_NAME, ds.spec.control_plane.port)]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// `<cr>-metrics` with the prometheus.io scrape annotations, when metrics are enabled.
pub fn metrics_service(ds: &DittoServer) -> Option<Service> {
    let m = metrics(&ds.spec)?;
    let cr = ds.name_any();
    let mut metadata = child_meta(ds, names::metrics_service(&cr), metrics_service_labels(&cr));
    metadata.annotations = Some(BTreeMap::from([
        ("prometheus.io/scrape".to_owned(), "true".to_owned()),
        ("prometheus.io/port".to_owned(), m.port.to_string()),
        ("prometheus.io/path".to_owned(), m.path.clone()),
    ]));
    Some(Service {
        metadata,
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".into()),
            selector: Some(selector_labels(ds)),
            ports: Some(vec![tcp_port(names::METRICS_PORT_NAME, m.port)]),
            ..Default::default()
        }),
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::desired::test_support::server;
    use serde_json::json;

    #[test]
    fn static_services() {
        let ds = server(json!({"controlPlane": {"port": 9000}}));
        let headless = headless_service(&ds);
        let spec = headless.spec.unwrap();
        assert_eq!(spec.cluster_ip.as_deref(), Some("None"));
        assert_eq!(spec.ports.unwrap()[0].port, 9000);
        let api = api_service(&ds);
        assert_eq!(api.metadata.name.as_deref(), Some("fs-api"));
        assert_eq!(api.spec.unwrap().type_.as_deref(), Some("ClusterIP"));
        assert!(api.metadata.annotations.is_none());
        assert!(metrics_service(&ds).is_none());
    }

    #[test]
    fn api_service_type_and_annotations_and_metrics() {
        let ds = server(json!({
            "service": {"type": "LoadBalancer", "annotations": {"a": "b"}},
            "metrics": {"enabled": true, "port": 9191}
        }));
        let api = api_service(&ds);
        assert_eq!(api.spec.unwrap().type_.as_deref(), Some("LoadBalancer"));
        assert_eq!(api.metadata.annotations.unwrap()["a"], "b");
        let m = metrics_service(&ds).unwrap();
        assert_eq!(m.metadata.annotations.unwrap()["prometheus.io/port"], "9191");
        assert_eq!(m.metadata.labels.unwrap()["dittofs.io/metrics-service"], "true");
    }
}
