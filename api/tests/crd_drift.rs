//! The committed `deploy/crds/dittoservers.yaml` must be exactly what the types generate.
//!
//! Regenerate it with `UPDATE_CRD=1 cargo test -p dittofs-api --test crd_drift`.

use std::path::PathBuf;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;

const REGENERATE: &str = "UPDATE_CRD=1 cargo test -p dittofs-api --test crd_drift";

fn committed_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../deploy/crds/dittoservers.yaml")
}

#[test]
fn committed_crd_matches_the_types() {
    let path = committed_path();
    let generated = dittofs_api::crd_yaml();
    if std::env::var_os("UPDATE_CRD").is_some() {
        std::fs::write(&path, &generated).unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
        return;
    }
    let committed = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}\nGenerate it with: {REGENERATE}", path.display()));
    if committed != generated {
        let first_difference = committed
            .lines()
            .zip(generated.lines())
            .enumerate()
            .find(|(_, (c, g))| c != g)
            .map(|(i, (c, g))| format!("line {}:\n  committed: {c}\n  generated: {g}", i + 1))
            .unwrap_or_else(|| {
                format!(
                    "one is a prefix of the other ({} vs {} lines)",
                    committed.lines().count(),
                    generated.lines().count()
                )
            });
        panic!(
            "deploy/crds/dittoservers.yaml differs from the CRD the types generate; first difference at {first_difference}\n\
             Regenerate it with: {REGENERATE}"
        );
    }
}

#[test]
fn crd_yaml_reads_back_as_the_same_crd() {
    let parsed: CustomResourceDefinition =
        serde_saphyr::from_str(&dittofs_api::crd_yaml()).expect("the CRD YAML parses");
    assert_eq!(parsed, dittofs_api::custom_resource_definition());
}
