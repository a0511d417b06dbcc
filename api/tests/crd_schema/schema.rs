//! The generated CRD: identity, printer columns, list-map markers, preserved sections, CEL rules,
//! documentation of every field, and the bounds that keep the CEL cost estimate low.

use crate::common::{node, rules, schema};
use dittofs_api::crd::cel;
use serde_json::Value;

#[test]
fn identity_matches_the_go_operator() {
    let crd = dittofs_api::custom_resource_definition();
    assert_eq!(crd.metadata.name.as_deref(), Some("dittoservers.dittofs.dittofs.com"));
    assert_eq!(crd.spec.group, "dittofs.dittofs.com");
    assert_eq!(crd.spec.scope, "Namespaced");
    assert_eq!(crd.spec.names.kind, "DittoServer");
    assert_eq!(crd.spec.names.plural, "dittoservers");
    assert_eq!(crd.spec.names.singular.as_deref(), Some("dittoserver"));
    assert_eq!(crd.spec.names.short_names, Some(vec!["ditto".to_owned(), "dittofs".to_owned()]));
    assert_eq!(crd.spec.versions.len(), 1);
    let version = &crd.spec.versions[0];
    assert_eq!(version.name, "v1alpha1");
    assert!(version.served && version.storage);
    let subresources = version.subresources.as_ref().expect("subresources");
    assert!(subresources.status.is_some(), "status subresource");
    assert!(subresources.scale.is_none());
}

#[test]
fn printer_columns() {
    let crd = dittofs_api::custom_resource_definition();
    let columns = crd.spec.versions[0].additional_printer_columns.clone().expect("printer columns");
    let shown: Vec<(&str, &str, &str)> = columns
        .iter()
        .filter(|c| c.priority.unwrap_or(0) == 0)
        .map(|c| (c.name.as_str(), c.type_.as_str(), c.json_path.as_str()))
        .collect();
    assert_eq!(
        shown,
        vec![
            ("Replicas", "integer", ".spec.replicas"),
            ("Ready", "integer", ".status.readyReplicas"),
            ("Adapters", "string", ".status.adaptersSummary"),
            ("Phase", "string", ".status.phase"),
            ("Age", "date", ".metadata.creationTimestamp"),
        ]
    );
}

#[test]
fn status_lists_are_list_maps() {
    for (path, key) in [
        ("status.agents", "podName"),
        ("status.adapters", "type"),
        ("status.conditions", "type"),
        ("status.agents[].adapters", "type"),
    ] {
        let n = node(path);
        assert_eq!(n["x-kubernetes-list-type"], "map", "{path}");
        assert_eq!(n["x-kubernetes-list-map-keys"], serde_json::json!([key]), "{path}");
        let required = n["items"]["required"].as_array().expect("required keys");
        assert!(required.iter().any(|r| r == key), "{path}: {key} must be required");
        assert!(n["maxItems"].is_u64(), "{path} needs maxItems");
    }
}

#[test]
fn unknown_fields_are_pruned_everywhere() {
    // Every section is typed: unknown fields (e.g. the old `spec.smb`) are pruned.
    assert!(schema()["properties"]["spec"]["x-kubernetes-preserve-unknown-fields"].is_null());
    assert!(schema()["properties"]["spec"]["properties"]["smb"].is_null());
    assert!(schema()["properties"]["spec"]["properties"]["nfsPort"].is_null());
}

#[test]
fn cel_rules_are_in_the_schema() {
    let duration = rules(&node("spec.adapterDiscovery.pollingInterval"));
    assert_eq!(duration, vec![cel::DURATION_FORMAT_RULE, cel::AT_LEAST_ONE_SECOND_RULE]);
    for path in ["spec.identity.jwt.accessTokenDuration", "spec.identity.jwt.refreshTokenDuration"] {
        assert_eq!(rules(&node(path)), vec![cel::DURATION_FORMAT_RULE, cel::NON_ZERO_RULE], "{path}");
    }
    for path in ["spec.storage.metadataSize", "spec.storage.contentSize", "spec.storage.controlPlaneSize"] {
        assert_eq!(rules(&node(path)), vec![cel::SIZE_FORMAT_RULE, cel::NON_ZERO_RULE], "{path}");
    }
    assert_eq!(rules(&node("spec.controlPlane")), vec![cel::CLIENT_CA_RULE, cel::API_AGENT_PORT_RULE]);
    assert_eq!(rules(&node("spec.metrics.path")), vec![cel::ABSOLUTE_PATH_RULE]);
    assert_eq!(rules(&node("spec.database.sqlite.path")), vec![cel::ABSOLUTE_PATH_RULE]);
    assert_eq!(rules(&node("spec.adapterServices.allowedSources[]")), vec![cel::SOURCE_PEER_RULE]);
    assert_eq!(rules(&node("spec.adapterServices.allowedSources[].ipBlock.cidr")), vec![cel::CIDR_RULE]);
    assert_eq!(rules(&node("spec.identity.jwt.secretRef.name")), vec![cel::OBJECT_NAME_RULE]);
    assert_eq!(rules(&node("spec.identity.jwt.secretRef.key")), vec![cel::SECRET_KEY_RULE]);
    assert_eq!(rules(&node("spec")), vec![cel::METRICS_PORT_RULE, cel::POSTGRES_SECRET_RULE]);
    assert_eq!(rules(&schema()), vec![cel::SERVER_NAME_RULE, cel::SERVER_NAME_LENGTH_RULE]);
    // The name rules only apply at creation: an object created before them stays updatable.
    for rule in schema()["x-kubernetes-validations"].as_array().unwrap() {
        assert_eq!(rule["optionalOldSelf"], true);
        assert!(rule["rule"].as_str().unwrap().starts_with("oldSelf.hasValue() || "));
    }
    // Every rule carries a message for the user.
    walk(&schema(), "", &mut |path, n| {
        for rule in n["x-kubernetes-validations"].as_array().into_iter().flatten() {
            assert!(rule["message"].is_string(), "{path}: rule {} has no message", rule["rule"]);
        }
    });
}

#[test]
fn ports_replicas_and_grace_period_are_bounded() {
    for path in ["spec.controlPlane.port", "spec.metrics.port", "status.adapters[].port"] {
        let n = node(path);
        assert_eq!(n["minimum"], 1.0, "{path}");
        assert_eq!(n["maximum"], 65535.0, "{path}");
    }
    // An agent reports an adapter whose port 0 has no type default with port 0 ("not exposable").
    let agent_port = node("status.agents[].adapters[].port");
    assert_eq!(agent_port["minimum"], 0.0);
    assert_eq!(agent_port["maximum"], 65535.0);
    assert_eq!(node("spec.replicas")["minimum"], 0.0);
    assert_eq!(node("spec.replicas")["maximum"], 1.0);
    assert_eq!(node("spec.terminationGracePeriodSeconds")["minimum"], 36.0);
    assert_eq!(node("spec.storage")["required"], serde_json::json!(["metadataSize"]));
    assert_eq!(schema()["properties"]["spec"]["required"], serde_json::json!(["storage"]));
}

#[test]
fn enums() {
    let service_types = serde_json::json!(["ClusterIP", "NodePort", "LoadBalancer"]);
    assert_eq!(node("spec.service.type")["enum"], service_types);
    assert_eq!(node("spec.adapterServices.type")["enum"], service_types);
    assert_eq!(node("spec.database.type")["enum"], serde_json::json!(["sqlite", "postgres"]));
    assert_eq!(node("spec.logging.level")["enum"], serde_json::json!(["DEBUG", "INFO", "WARN", "ERROR"]));
    assert_eq!(node("spec.logging.format")["enum"], serde_json::json!(["text", "json"]));
    assert_eq!(
        node("status.phase")["enum"],
        serde_json::json!(["Pending", "Running", "Failed", "Stopped", "Deleting"])
    );
}

#[test]
fn every_field_is_documented() {
    let mut missing = Vec::new();
    walk(&schema(), "", &mut |path, n| {
        if path.is_empty() || path.ends_with("[]") {
            return;
        }
        if n["description"].as_str().is_none_or(|d| d.trim().is_empty()) {
            missing.push(path.to_owned());
        }
    });
    assert!(missing.is_empty(), "fields without a description: {missing:#?}");
}

#[test]
fn cel_inputs_are_bounded() {
    // A rule on a string or list reads the whole value: it needs a maxLength / maxItems (and the
    // items of a list a maxLength), or the apiserver's cost estimator assumes 3 MiB values.
    walk(&schema(), "", &mut |path, n| {
        if n["x-kubernetes-validations"].is_null() {
            return;
        }
        match n["type"].as_str() {
            Some("string") => assert!(n["maxLength"].is_u64(), "{path} needs maxLength"),
            Some("array") => {
                assert!(n["maxItems"].is_u64(), "{path} needs maxItems");
                if n["items"]["type"] == "string" {
                    assert!(n["items"]["maxLength"].is_u64(), "{path}[] needs maxLength");
                }
            }
            _ => {}
        }
    });
    // Strings read by object-level rules.
    for path in ["spec.controlPlane.certSecretName", "spec.controlPlane.clientCASecretName"] {
        assert!(node(path)["maxLength"].is_u64(), "{path} needs maxLength");
    }
}

/// Calls `f` on `node` and on every property and list item below it, with a dotted path.
fn walk(node: &Value, path: &str, f: &mut dyn FnMut(&str, &Value)) {
    f(path, node);
    if let Some(props) = node["properties"].as_object() {
        for (name, child) in props {
            let child_path = if path.is_empty() { name.clone() } else { format!("{path}.{name}") };
            walk(child, &child_path, f);
        }
    }
    if node["items"].is_object() {
        walk(&node["items"], &format!("{path}[]"), f);
    }
}

#[test]
fn percona_is_typed_with_the_go_defaults_and_bounds() {
    let replicas = node("spec.percona.replicas");
    assert_eq!((replicas["minimum"].as_f64(), replicas["maximum"].as_f64()), (Some(1.0), Some(5.0)));
    assert_eq!(replicas["default"], 1);
    assert_eq!(node("spec.percona.storageSize")["default"], "10Gi");
    assert_eq!(node("spec.percona.databaseName")["default"], "dittofs");
    assert_eq!(node("spec.percona.backup.retentionDays")["minimum"].as_f64(), Some(1.0));
    // No longer kept verbatim: unknown fields under percona are pruned like anywhere else.
    assert!(node("spec.percona")["x-kubernetes-preserve-unknown-fields"].is_null());
}
