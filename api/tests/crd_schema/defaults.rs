//! Defaults, both as the apiserver applies them (schema `default`) and as Rust fills them when a field is absent.

use crate::common::node;
use dittofs_api::DittoServerSpec;
use dittofs_api::crd::{DatabaseType, LogFormat, LogLevel, ServiceType};
use serde_json::json;

#[test]
fn rust_defaults_of_a_minimal_spec() {
    let s = DittoServerSpec::with_metadata_size("1Gi");
    assert_eq!(s.image, "marmos91c/dittofs:latest");
    assert_eq!(s.replicas, 1);
    assert_eq!(s.storage.control_plane_size, "1Gi");
    assert_eq!(s.storage.content_size, None);
    assert_eq!(s.adapter_discovery.polling_interval, "30s");
    assert_eq!(s.polling_interval(), std::time::Duration::from_secs(30));
    assert_eq!(s.adapter_services.r#type, ServiceType::LoadBalancer);
    assert!(s.adapter_services.sync_container_ports);
    assert_eq!(s.adapter_services.report_max_age_seconds, 300);
    assert_eq!(s.adapter_services.on_stale_report, dittofs_api::crd::StaleReportPolicy::Keep);
    assert!(s.adapter_services.allowed_sources.is_empty());
    assert_eq!(s.service.r#type, ServiceType::ClusterIp);
    assert_eq!(s.api_port(), 8080);
    assert!(!s.api_uses_tls());
    assert_eq!(s.database.r#type, DatabaseType::Sqlite);
    assert_eq!(s.logging.level, LogLevel::Info);
    assert_eq!(s.logging.format, LogFormat::Json);
    assert_eq!(s.logging.output, "stdout");
    assert_eq!(s.termination_grace_period_seconds(), 105);
    assert!(s.metrics.is_none() && s.identity.is_none() && s.agent.is_none());
}

#[test]
fn partial_sections_get_their_field_defaults() {
    let s: DittoServerSpec = serde_json::from_value(json!({
        "storage": {"metadataSize": "1Gi"},
        "adapterServices": {"annotations": {"a": "b"}},
        "adapterDiscovery": {},
        "metrics": {"enabled": true},
        "identity": {"jwt": {"secretRef": {"name": "j", "key": "k"}}, "admin": {}},
        "database": {"sqlite": {}}
    }))
    .unwrap();
    assert_eq!(s.adapter_services.r#type, ServiceType::LoadBalancer);
    assert!(s.adapter_services.sync_container_ports);
    assert_eq!(s.adapter_services.report_max_age_seconds, 300);
    assert_eq!(s.adapter_services.on_stale_report, dittofs_api::crd::StaleReportPolicy::Keep);
    assert_eq!(s.adapter_discovery.polling_interval, "30s");
    let metrics = s.metrics.unwrap();
    assert_eq!((metrics.port, metrics.path.as_str()), (9090, "/metrics"));
    let identity = s.identity.unwrap();
    let jwt = identity.jwt.unwrap();
    assert_eq!((jwt.access_token_duration.as_str(), jwt.refresh_token_duration.as_str()), ("15m", "168h"));
    assert_eq!(identity.admin.unwrap().username, "admin");
    assert_eq!(s.database.sqlite.unwrap().path, "/data/controlplane/controlplane.db");
}

#[test]
fn schema_defaults_applied_by_the_apiserver() {
    assert_eq!(node("spec.adapterDiscovery")["default"], json!({"pollingInterval": "30s"}));
    assert_eq!(node("spec.adapterDiscovery.pollingInterval")["default"], "30s");
    assert_eq!(
        node("spec.adapterServices")["default"],
        json!({"type": "LoadBalancer", "syncContainerPorts": true, "allowedTypes": ["nfs", "smb"],
               "reportMaxAgeSeconds": 300, "onStaleReport": "Keep"})
    );
    assert_eq!(node("spec.adapterServices.reportMaxAgeSeconds")["minimum"], 30.0);
    assert_eq!(node("spec.adapterServices.onStaleReport")["enum"], json!(["Keep", "Close"]));
    assert_eq!(node("spec.adapterServices.type")["default"], "LoadBalancer");
    assert_eq!(node("spec.adapterServices.syncContainerPorts")["default"], true);
    assert_eq!(node("spec.service")["default"], json!({"type": "ClusterIP"}));
    assert_eq!(node("spec.controlPlane")["default"], json!({"port": 8080, "tls": false}));
    assert_eq!(node("spec.database")["default"], json!({"type": "sqlite"}));
    assert_eq!(node("spec.logging")["default"], json!({"level": "INFO", "format": "json", "output": "stdout"}));
    assert_eq!(node("spec.replicas")["default"], 1);
    assert_eq!(node("spec.image")["default"], "marmos91c/dittofs:latest");
    assert_eq!(node("spec.storage.controlPlaneSize")["default"], "1Gi");
    assert_eq!(node("spec.identity.jwt.accessTokenDuration")["default"], "15m");
    assert_eq!(node("spec.identity.jwt.refreshTokenDuration")["default"], "168h");
    assert_eq!(node("spec.identity.admin.username")["default"], "admin");
    assert_eq!(node("spec.metrics.port")["default"], 9090);
    assert_eq!(node("spec.metrics.path")["default"], "/metrics");
    assert_eq!(node("spec.database.sqlite.path")["default"], "/data/controlplane/controlplane.db");
}
