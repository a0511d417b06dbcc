//! What admission refuses, evaluated client-side with the CRD's own CEL rules (kube's `cel` feature).
//!
//! OpenAPI keywords (minimum, maxLength, enum, required) are not evaluated here; `schema.rs` checks
//! they are in the schema. The apiserver-backed tests cover the full admission path.

use crate::common::{cel_failures, object, spec_failures};
use dittofs_api::crd::cel;
use dittofs_api::duration::parse_go_duration;
use serde_json::{Value, json};

fn with_polling(interval: &str) -> Value {
    json!({"storage": {"metadataSize": "1Gi"}, "adapterDiscovery": {"pollingInterval": interval}})
}

fn messages_at(failures: &[(String, String)], field: &str) -> Vec<String> {
    failures.iter().filter(|(path, _)| path == field).map(|(_, m)| m.clone()).collect()
}

#[test]
fn polling_interval() {
    let field = "spec.adapterDiscovery.pollingInterval";
    for good in ["30s", "1m30s", "1s", "1.5s", "2h", "1000ms", "5m0s"] {
        assert_eq!(spec_failures(with_polling(good)), vec![], "{good:?} should be accepted");
    }
    for bad in ["abc", "-5s", "30", "30 s", "+5s", ".5s", "5d", "1h-5s"] {
        let failures = spec_failures(with_polling(bad));
        assert!(
            messages_at(&failures, field).contains(&cel::DURATION_FORMAT_MESSAGE.to_owned()),
            "{bad:?} should be refused as malformed: {failures:?}"
        );
    }
    for too_short in ["0s", "500ms", "999ms", "0.5s", "0h0m0s"] {
        let failures = spec_failures(with_polling(too_short));
        assert_eq!(messages_at(&failures, field), vec![cel::AT_LEAST_ONE_SECOND_MESSAGE.to_owned()], "{too_short:?}");
    }
}

#[test]
fn the_duration_rule_and_the_parser_agree() {
    for s in [
        "30s",
        "1m30s",
        "500ms",
        "2us",
        "2µs",
        "2μs",
        "1.5h",
        "0s",
        "abc",
        "-5s",
        "5",
        ".5s",
        "1.s",
        "5d",
        "1h2m3s4ms5us6ns",
        "1m 30s",
        "",
    ] {
        if s.is_empty() {
            continue; // refused by minLength, which CEL does not see
        }
        let spec = json!({"storage": {"metadataSize": "1Gi"},
            "identity": {"jwt": {"secretRef": {"name": "j", "key": "k"}, "accessTokenDuration": s}}});
        let cel_accepts_format = !messages_at(&spec_failures(spec), "spec.identity.jwt.accessTokenDuration")
            .contains(&cel::DURATION_FORMAT_MESSAGE.to_owned());
        assert_eq!(cel_accepts_format, parse_go_duration(s).is_ok(), "{s:?}");
    }
}

#[test]
fn token_durations_must_be_positive() {
    let spec = json!({"storage": {"metadataSize": "1Gi"},
        "identity": {"jwt": {"secretRef": {"name": "j", "key": "k"}, "accessTokenDuration": "0m", "refreshTokenDuration": "1h"}}});
    assert_eq!(
        spec_failures(spec),
        vec![("spec.identity.jwt.accessTokenDuration".to_owned(), cel::NON_ZERO_MESSAGE.to_owned())]
    );
}

#[test]
fn sizes() {
    for good in ["10Gi", "500Mi", "1Ti", "1.5Gi", "10G", "1000000000", "2Pi"] {
        let spec = json!({"storage": {"metadataSize": good, "contentSize": good, "controlPlaneSize": good}});
        assert_eq!(spec_failures(spec), vec![], "{good:?}");
    }
    for bad in ["abc", "10GB", "-1Gi", "10 Gi", "1e3", "Gi", "10gi", "0.5.1Gi"] {
        let failures = spec_failures(json!({"storage": {"metadataSize": bad}}));
        assert!(
            messages_at(&failures, "spec.storage.metadataSize").contains(&cel::SIZE_FORMAT_MESSAGE.to_owned()),
            "{bad:?}: {failures:?}"
        );
    }
    let failures = spec_failures(json!({"storage": {"metadataSize": "0Gi"}}));
    assert_eq!(messages_at(&failures, "spec.storage.metadataSize"), vec![cel::NON_ZERO_MESSAGE.to_owned()]);
}

#[test]
fn client_ca_needs_a_server_certificate() {
    let spec = |cp: Value| json!({"storage": {"metadataSize": "1Gi"}, "controlPlane": cp});
    assert_eq!(
        spec_failures(spec(json!({"port": 8080, "clientCASecretName": "ca"}))),
        vec![("spec.controlPlane".to_owned(), cel::CLIENT_CA_MESSAGE.to_owned())]
    );
    assert_eq!(spec_failures(spec(json!({"certSecretName": "tls", "clientCASecretName": "ca"}))), vec![]);
    assert_eq!(spec_failures(spec(json!({"clientCASecretName": ""}))), vec![]);
}

#[test]
fn metrics_port_must_differ_from_the_api_port() {
    let spec =
        |metrics: Value, cp: Value| json!({"storage": {"metadataSize": "1Gi"}, "metrics": metrics, "controlPlane": cp});
    let clash = spec_failures(spec(json!({"enabled": true, "port": 8080}), json!({})));
    assert_eq!(clash, vec![("spec".to_owned(), cel::METRICS_PORT_MESSAGE.to_owned())]);
    let clash = spec_failures(spec(json!({"enabled": true, "port": 9000}), json!({"port": 9000})));
    assert_eq!(clash.len(), 1);
    assert_eq!(spec_failures(spec(json!({"enabled": false, "port": 8080}), json!({}))), vec![]);
    assert_eq!(spec_failures(spec(json!({"enabled": true, "port": 9090}), json!({"port": 8080}))), vec![]);
}

#[test]
fn postgres_needs_its_secret() {
    let failures = spec_failures(json!({"storage": {"metadataSize": "1Gi"}, "database": {"type": "postgres"}}));
    assert_eq!(failures, vec![("spec".to_owned(), cel::POSTGRES_SECRET_MESSAGE.to_owned())]);
    let with_percona =
        json!({"storage": {"metadataSize": "1Gi"}, "database": {"type": "postgres"}, "percona": {"enabled": true}});
    assert_eq!(spec_failures(with_percona), vec![]);
}

#[test]
fn secret_references() {
    let spec = |name: &str, key: &str| {
        json!({"storage": {"metadataSize": "1Gi"},
               "identity": {"admin": {"passwordSecretRef": {"name": name, "key": key}}}})
    };
    assert_eq!(spec_failures(spec("admin-secret", "pass.word_1")), vec![]);
    assert_eq!(
        spec_failures(spec("Admin_Secret", "password")),
        vec![("spec.identity.admin.passwordSecretRef.name".to_owned(), cel::OBJECT_NAME_MESSAGE.to_owned())]
    );
    assert_eq!(
        spec_failures(spec("admin", "pass word")),
        vec![("spec.identity.admin.passwordSecretRef.key".to_owned(), cel::SECRET_KEY_MESSAGE.to_owned())]
    );
}

#[test]
fn paths_start_with_a_slash() {
    let mut failures = spec_failures(json!({"storage": {"metadataSize": "1Gi"},
        "metrics": {"enabled": true, "path": "metrics"}, "database": {"sqlite": {"path": "db.sqlite"}}}));
    failures.sort();
    assert_eq!(
        failures,
        vec![
            ("spec.database.sqlite.path".to_owned(), cel::ABSOLUTE_PATH_MESSAGE.to_owned()),
            ("spec.metrics.path".to_owned(), cel::ABSOLUTE_PATH_MESSAGE.to_owned()),
        ]
    );
}

#[test]
fn allowed_sources() {
    let spec =
        |sources: Value| json!({"storage": {"metadataSize": "1Gi"}, "adapterServices": {"allowedSources": sources}});
    assert_eq!(
        spec_failures(spec(json!([
            {"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.1.0.0/16"]}},
            {"ipBlock": {"cidr": "2001:db8::/32"}},
            {"namespaceSelector": {"matchLabels": {"team": "a"}}},
            {"namespaceSelector": {}, "podSelector": {"matchLabels": {"app": "client"}}}
        ]))),
        vec![]
    );
    let failures = spec_failures(spec(json!([
        {"ipBlock": {"cidr": "10.0.0.0/33"}},
        {"ipBlock": {"cidr": "10.0.0.0/8", "except": ["nope"]}},
        {},
        {"ipBlock": {"cidr": "10.0.0.0/8"}, "podSelector": {}}
    ])));
    let paths: Vec<&str> = failures.iter().map(|(p, _)| p.as_str()).collect();
    for expected in [
        "spec.adapterServices.allowedSources[0].ipBlock.cidr",
        "spec.adapterServices.allowedSources[1].ipBlock.except",
        "spec.adapterServices.allowedSources[2]",
        "spec.adapterServices.allowedSources[3]",
    ] {
        assert!(paths.contains(&expected), "{expected} missing in {failures:?}");
    }
    assert_eq!(failures.len(), 4, "{failures:?}");
}

#[test]
fn server_name_rules_are_evaluated_at_the_root() {
    let spec = json!({"storage": {"metadataSize": "1Gi"}});
    assert_eq!(cel_failures(&object("fs", spec.clone())), vec![]);
    let messages: Vec<String> =
        cel_failures(&object("1fs.example", spec.clone())).into_iter().map(|(_, m)| m).collect();
    assert_eq!(messages, vec![cel::SERVER_NAME_MESSAGE.to_owned()]);
    let messages: Vec<String> = cel_failures(&object(&"a".repeat(41), spec)).into_iter().map(|(_, m)| m).collect();
    assert_eq!(messages, vec![cel::SERVER_NAME_LENGTH_MESSAGE.to_owned()]);
}
