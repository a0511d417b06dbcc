//! Helpers of the schema tests: the CRD's schema as JSON, fixtures, client-side CEL evaluation.

use std::path::PathBuf;

use dittofs_api::DittoServer;
use kube::Resource;
use serde_json::{Value, json};

/// The `openAPIV3Schema` of the CRD, as JSON.
pub fn schema() -> Value {
    let crd = dittofs_api::custom_resource_definition();
    let schema =
        crd.spec.versions[0].schema.as_ref().and_then(|s| s.open_api_v3_schema.as_ref()).expect("the CRD has a schema");
    serde_json::to_value(schema).expect("the schema serializes")
}

/// The schema node at a dotted path of properties; `[]` steps into list items (e.g. `status.agents[]`).
pub fn node(path: &str) -> Value {
    let mut cur = schema();
    for part in path.split('.') {
        let (name, items) = match part.strip_suffix("[]") {
            Some(name) => (name, true),
            None => (part, false),
        };
        cur = cur["properties"][name].clone();
        assert!(!cur.is_null(), "no property {name} on the way to {path}");
        if items {
            cur = cur["items"].clone();
        }
    }
    cur
}

/// The `rule` strings of the `x-kubernetes-validations` of a schema node.
pub fn rules(node: &Value) -> Vec<String> {
    node["x-kubernetes-validations"]
        .as_array()
        .map(|rules| rules.iter().map(|r| r["rule"].as_str().unwrap_or_default().to_owned()).collect())
        .unwrap_or_default()
}

/// Path of a fixture file.
pub fn fixture_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

/// A fixture as JSON.
pub fn fixture_json(name: &str) -> Value {
    let text = std::fs::read_to_string(fixture_path(name)).expect("fixture exists");
    serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("fixture {name} is YAML: {e}"))
}

/// A full object around a spec.
pub fn object(name: &str, spec: Value) -> Value {
    json!({
        "apiVersion": DittoServer::api_version(&()),
        "kind": DittoServer::kind(&()),
        "metadata": {"name": name, "namespace": "default"},
        "spec": spec,
    })
}

/// The schema as the apiserver evaluates it on creation.
///
/// kube-cel 0.8 does not bind `oldSelf` as an optional for `optionalOldSelf` rules (it passes null,
/// and `hasValue()` fails), so the creation-only rules (`oldSelf.hasValue() || <check>`) are reduced
/// to their check here. The apiserver-backed tests cover the real evaluation.
pub fn schema_for_create() -> Value {
    let mut schema = schema();
    reduce_creation_rules(&mut schema);
    schema
}

fn reduce_creation_rules(value: &mut Value) {
    match value {
        Value::Object(map) => {
            if let Some(Value::Array(rules)) = map.get_mut("x-kubernetes-validations") {
                for rule in rules.iter_mut() {
                    if rule["optionalOldSelf"] == true {
                        let text = rule["rule"].as_str().unwrap_or_default();
                        let check = text
                            .strip_prefix("oldSelf.hasValue() || ")
                            .unwrap_or_else(|| panic!("unexpected creation rule {text}"))
                            .to_owned();
                        rule["rule"] = Value::String(check);
                        rule.as_object_mut().unwrap().remove("optionalOldSelf");
                    }
                }
            }
            map.values_mut().for_each(reduce_creation_rules);
        }
        Value::Array(items) => items.iter_mut().for_each(reduce_creation_rules),
        _ => {}
    }
}

/// The CEL failures for an object at creation, as (field path, message) pairs; empty when every rule passes.
pub fn cel_failures(object: &Value) -> Vec<(String, String)> {
    match kube::core::cel::Validator::new().validate(&schema_for_create(), object, None) {
        Ok(()) => Vec::new(),
        Err(errors) => errors.into_iter().map(|e| (e.field_path.clone(), e.message.clone())).collect(),
    }
}

/// The CEL failures for a spec of an object named `fs`.
pub fn spec_failures(spec: Value) -> Vec<(String, String)> {
    cel_failures(&object("fs", spec))
}
