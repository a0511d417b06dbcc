//! Manifests in the shapes of the Go operator's samples (and of the new fields) deserialize, pass the
//! CRD's CEL rules, and keep the sections this controller does not implement verbatim.

use crate::common::{cel_failures, fixture_json};
use dittofs_api::crd::unimplemented::{self, unimplemented_fields};
use dittofs_api::crd::{DatabaseType, LogFormat, LogLevel, Phase, ServiceType};
use dittofs_api::{DittoServer, DittoServerSpec};
use serde_json::json;

const FIXTURES: [&str; 5] =
    ["go-basic.yaml", "go-minimal.yaml", "go-postgres-tls.yaml", "go-everything.yaml", "rust-new-fields.yaml"];

fn load(name: &str) -> DittoServer {
    serde_json::from_value(fixture_json(name)).unwrap_or_else(|e| panic!("{name} does not deserialize: {e}"))
}

#[test]
fn every_fixture_deserializes_and_passes_the_cel_rules() {
    for name in FIXTURES {
        let server = load(name);
        assert_eq!(cel_failures(&fixture_json(name)), vec![], "{name}");
        // Serializing and reading back is lossless.
        let again: DittoServer = serde_json::from_value(serde_json::to_value(&server).unwrap()).unwrap();
        assert_eq!(again, server, "{name}");
    }
}

#[test]
fn basic_sample() {
    let s = load("go-basic.yaml").spec;
    assert_eq!(s.replicas, 1);
    assert_eq!(s.storage.metadata_size, "10Gi");
    assert_eq!(s.storage.content_size.as_deref(), Some("50Gi"));
    let identity = s.identity.as_ref().unwrap();
    let jwt = identity.jwt.as_ref().unwrap();
    assert_eq!((jwt.secret_ref.name.as_str(), jwt.secret_ref.key.as_str()), ("dittofs-jwt-secret", "secret"));
    assert_eq!(jwt.access_token_duration, "15m");
    let admin = identity.admin.as_ref().unwrap();
    assert_eq!(admin.password_secret_ref.as_ref().unwrap().key, "password");
    assert_eq!(s.database.r#type, DatabaseType::Sqlite);
    assert_eq!(s.service.r#type, ServiceType::ClusterIp);
    assert!(unimplemented_fields(&s).is_empty());
}

#[test]
fn postgres_and_tls_sample() {
    let s = load("go-postgres-tls.yaml").spec;
    assert_eq!(s.database.r#type, DatabaseType::Postgres);
    assert_eq!(s.database.postgres_secret_ref.as_ref().unwrap().name, "postgres-credentials");
    assert_eq!(s.api_port(), 8443);
    assert!(s.api_uses_tls());
    assert_eq!(s.control_plane.client_ca_secret_name.as_deref(), Some("dittofs-client-ca"));
    assert_eq!(s.storage.storage_class_name.as_deref(), Some("fast-ssd"));
    assert_eq!(s.service.r#type, ServiceType::LoadBalancer);
    assert_eq!(
        s.service.annotations.get("service.beta.kubernetes.io/aws-load-balancer-type").map(String::as_str),
        Some("nlb")
    );
    assert!(s.resources.as_ref().unwrap().limits.as_ref().unwrap().contains_key("memory"));
}

#[test]
fn stale_static_adapter_fields_are_not_part_of_the_spec() {
    // Older Go-operator samples carry `nfsPort` / `smb`; the CRD does not declare them (kubectl's
    // strict field validation refuses them, a lax client gets them pruned) and the types ignore them.
    let mut raw = fixture_json("go-basic.yaml");
    raw["spec"]["nfsPort"] = json!(12049);
    raw["spec"]["smb"] = json!({"enabled": true, "port": 12445});
    let server: DittoServer = serde_json::from_value(raw).unwrap();
    let back = serde_json::to_value(&server.spec).unwrap();
    assert!(back.get("smb").is_none() && back.get("nfsPort").is_none());
}

#[test]
fn everything_sample_keeps_the_unimplemented_sections() {
    let raw = fixture_json("go-everything.yaml");
    let s: DittoServerSpec = serde_json::from_value(raw["spec"].clone()).unwrap();
    assert_eq!(s.replicas, 0);
    assert_eq!(s.adapter_discovery.polling_interval, "1m30s");
    assert_eq!(s.polling_interval(), std::time::Duration::from_secs(90));
    assert_eq!(s.adapter_services.r#type, ServiceType::NodePort);
    assert_eq!(s.logging.level, LogLevel::Debug);
    assert_eq!(s.logging.format, LogFormat::Text);
    assert_eq!(s.termination_grace_period_seconds(), 120);
    assert_eq!(unimplemented_fields(&s), unimplemented::ALL.to_vec());

    let back = serde_json::to_value(&s).unwrap();
    for (path, original) in
        [("/percona", &raw["spec"]["percona"]), ("/metrics/serviceMonitor", &raw["spec"]["metrics"]["serviceMonitor"])]
    {
        assert_eq!(back.pointer(path), Some(original), "{path} must round-trip verbatim");
    }
    // LDAP and Kerberos are typed now: every field written comes back with the same value.
    for path in ["/identity/ldap", "/identity/kerberos"] {
        let (sent, kept) = (raw["spec"].pointer(path).unwrap(), back.pointer(path).unwrap());
        for (key, value) in sent.as_object().unwrap() {
            assert_eq!(&kept[key], value, "{path}/{key}");
        }
    }
    assert_eq!(
        back["identity"]["kerberos"]["machineAccount"]["dcAddress"],
        json!(["dc1.example.com", "dc2.example.com:445"])
    );
}

#[test]
fn new_fields_and_status() {
    let server = load("rust-new-fields.yaml");
    let s = &server.spec;
    assert!(!s.adapter_services.sync_container_ports);
    assert_eq!(s.adapter_services.allowed_sources.len(), 3);
    assert_eq!(s.adapter_services.allowed_sources[0].ip_block.as_ref().unwrap().except, vec!["10.0.66.0/24"]);
    assert!(s.adapter_services.allowed_sources[2].pod_selector.is_some());
    assert_eq!(s.agent.as_ref().unwrap().image.as_deref(), Some("ghcr.io/example/dittofs-agent:dev"));

    let status = server.status.as_ref().unwrap();
    assert_eq!(status.phase, Some(Phase::Running));
    assert_eq!(status.adapters_summary.as_deref(), Some("nfs:12049,smb:12445"));
    assert_eq!(dittofs_api::crd::adapters_summary(&status.adapters), "nfs:12049,smb:12445");
    let agent = &status.agents[0];
    assert_eq!(agent.pod_name, "fenced-0");
    assert!(agent.auth.as_ref().unwrap().authenticated);
    assert!(agent.reachability.as_ref().unwrap().reachable);
    assert!(agent.adapters.iter().all(|a| a.is_serving()));
    assert_eq!(status.conditions[0].type_, "Ready");
}
