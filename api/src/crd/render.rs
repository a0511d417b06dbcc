//! The CRD object as installed and as committed YAML: `DittoServer::crd()` with descriptions reflowed for `kubectl explain`.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;
use serde_json::Value;

use super::DittoServer;

/// First line of [`crd_yaml`]: where the file comes from and how to regenerate it.
pub const CRD_YAML_HEADER: &str = "# Generated from the dittofs-api crate (`dittofs-controller crd` prints it). Do not edit; regenerate with: UPDATE_CRD=1 cargo test -p dittofs-api --test crd_drift\n";

/// The CRD to install. Use this rather than `DittoServer::crd()`: the field descriptions come
/// from doc comments wrapped at ~100 columns, and `kubectl explain` would print those line breaks
/// in the middle of its own wrapping, so here each paragraph is joined into one line.
pub fn custom_resource_definition() -> CustomResourceDefinition {
    let mut value = serde_json::to_value(DittoServer::crd()).expect("the CRD serializes to JSON");
    reflow_descriptions(&mut value);
    serde_json::from_value(value).expect("reflowing descriptions keeps a valid CRD")
}

/// The CRD as YAML, exactly as committed in `deploy/crds/dittoservers.yaml`: a comment line, then [`crd`].
pub fn crd_yaml() -> String {
    let body = serde_saphyr::to_string(&custom_resource_definition()).expect("the CRD serializes to YAML");
    format!("{CRD_YAML_HEADER}{body}")
}

/// Joins the lines of each paragraph of every string `description` (paragraphs stay separated by a blank line).
fn reflow_descriptions(value: &mut Value) {
    match value {
        Value::Object(map) => {
            for (key, child) in map.iter_mut() {
                match child {
                    Value::String(text) if key == "description" => *text = reflow(text),
                    _ => reflow_descriptions(child),
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(reflow_descriptions),
        _ => {}
    }
}

fn reflow(text: &str) -> String {
    text.split("\n\n")
        .map(|paragraph| paragraph.lines().map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>().join(" "))
        .collect::<Vec<_>>()
        .join("\n\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paragraphs_are_joined() {
        assert_eq!(reflow("a\nb\n\nc\nd"), "a b\n\nc d");
        assert_eq!(reflow("single line"), "single line");
    }

    #[test]
    fn only_descriptions_change() {
        let yaml = crd_yaml();
        let crd = custom_resource_definition();
        let raw = DittoServer::crd();
        assert_eq!(crd.spec.names, raw.spec.names);
        assert_eq!(crd.spec.versions[0].additional_printer_columns, raw.spec.versions[0].additional_printer_columns);
        assert!(yaml.starts_with(CRD_YAML_HEADER));
        let spec = &crd.spec.versions[0]
            .schema
            .as_ref()
            .unwrap()
            .open_api_v3_schema
            .as_ref()
            .unwrap()
            .properties
            .as_ref()
            .unwrap()["spec"];
        let description =
            spec.properties.as_ref().unwrap()["adapterServices"].properties.as_ref().unwrap()["allowedSources"]
                .description
                .clone()
                .unwrap();
        assert!(!description.contains('\n'), "{description}");
    }
}
