//! Pure functions from a `DittoServer` (and what was observed) to the typed objects the controller applies.
//!
//! Nothing here does IO or reads the clock or a random source: every input is an argument, so the same
//! inputs always give the same objects (maps are `BTreeMap`s, lists are built in a fixed order), and a
//! reconcile with nothing changed applies byte-identical bodies, which the apiserver turns into no-ops.

pub mod adapters;
pub mod config;
pub mod database;
pub mod identity;
pub mod network_policy;
pub mod rbac;
pub mod secrets;
pub mod service_monitor;
pub mod services;
pub mod statefulset;
pub mod status;

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::{Resource, ResourceExt};

use dittofs_api::DittoServer;
use dittofs_api::labels::PodSelector;

/// How the server's pods are selected: the standard labels, or the Go operator's when this controller
/// took its StatefulSet over (see `crate::reconcile::takeover`).
pub fn pod_selector(ds: &DittoServer) -> PodSelector {
    PodSelector::from_annotations(ds.annotations())
}

/// The labels selecting the server's pods (StatefulSet selector, Service selectors, policy podSelectors).
pub fn selector_labels(ds: &DittoServer) -> BTreeMap<String, String> {
    pod_selector(ds).labels(&ds.name_any())
}

/// The controller owner reference every child carries, so that the garbage collector removes it with
/// the server and the controller's owned-object watches map it back to the server.
pub fn owner_reference(ds: &DittoServer) -> OwnerReference {
    OwnerReference {
        api_version: DittoServer::api_version(&()).into_owned(),
        kind: DittoServer::kind(&()).into_owned(),
        name: ds.name_any(),
        uid: ds.metadata.uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// Metadata of a child: name, the server's namespace, labels and the owner reference.
pub fn child_meta(ds: &DittoServer, name: String, labels: BTreeMap<String, String>) -> ObjectMeta {
    ObjectMeta {
        name: Some(name),
        namespace: ds.namespace(),
        labels: Some(labels),
        owner_references: Some(vec![owner_reference(ds)]),
        ..Default::default()
    }
}

#[cfg(test)]
pub(crate) mod test_support {
    //! A `DittoServer` as the apiserver would hand it over (namespace, uid, generation).
    use dittofs_api::{DittoServer, DittoServerSpec};
    use serde_json::{Value, json};

    /// A server `fs` in namespace `ns` with the given spec fields merged over `storage.metadataSize: 1Gi`.
    pub fn server(extra: Value) -> DittoServer {
        let mut spec = json!({"storage": {"metadataSize": "1Gi"}});
        if let (Value::Object(base), Value::Object(more)) = (&mut spec, extra) {
            base.extend(more);
        }
        let spec: DittoServerSpec = serde_json::from_value(spec).expect("valid spec");
        let mut ds = DittoServer::new("fs", spec);
        ds.metadata.namespace = Some("ns".into());
        ds.metadata.uid = Some("uid-1".into());
        ds.metadata.generation = Some(3);
        ds
    }
}
