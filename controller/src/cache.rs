//! Metadata-only caches of the children, fed by the same watches that trigger reconciles.
//!
//! The caches hold only metadata (no pod templates) and are used to tell a created object from an updated
//! one and a real write from a no-op apply, without extra GETs. Secrets are not watched at all: a watch
//! needs `list` on Secrets cluster-wide, which would let the controller read every Secret in the cluster.
//! The Secrets it generates are created once (create-only) and read by name (see `reconcile::secrets`).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Debug;

use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Service, ServiceAccount};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Resource;
use kube::core::PartialObjectMeta;
use kube::runtime::reflector::store::Writer;
use kube::runtime::reflector::{ObjectRef, Store, store};
use serde::Serialize;

use dittofs_api::labels::{ADAPTER_NETWORK_POLICY_LABEL, ADAPTER_SERVICE_LABEL, INSTANCE_LABEL};
use serde::de::DeserializeOwned;

use crate::desired::service_monitor::ServiceMonitor;
use crate::synced::{MarkSynced, Synced, synced};

/// The labels that mark an adapter object: the adapter step selects its objects by them and the instance.
const ADAPTER_LABELS: [&str; 2] = [ADAPTER_SERVICE_LABEL, ADAPTER_NETWORK_POLICY_LABEL];

/// Whether the cache keeps label `key` of `meta`: an adapter object's instance and adapter mark (the adapter
/// step selects by them), and the instance of a child without a DittoServer controlling it (someone removed
/// the owner reference: the label is how its event still reaches the server, which then reports the child
/// as not its own). A child with its owner reference is found by it, and even one label takes a map node of
/// some 500 bytes.
fn kept_label(meta: &ObjectMeta, key: &str) -> bool {
    let labels = meta.labels.as_ref();
    let adapter = ADAPTER_LABELS.iter().any(|a| labels.is_some_and(|l| l.contains_key(*a)));
    let owned = meta.owner_references.iter().flatten().any(|o| o.controller == Some(true) && o.kind == "DittoServer");
    (adapter && ADAPTER_LABELS.contains(&key)) || ((adapter || !owned) && key == INSTANCE_LABEL)
}

/// What a child's cache entry keeps: name, namespace, uid, versions, owners and the labels [`kept_label`]
/// keeps. Every server has a dozen children, so at a thousand servers each byte dropped here is 12 KB; the
/// managedFields, annotations, type and other labels are read by nobody.
pub fn slim<K: Resource>(obj: &mut PartialObjectMeta<K>) {
    obj.types = None;
    let meta = &mut obj.metadata;
    meta.managed_fields = None;
    meta.annotations = None;
    meta.finalizers = None;
    let kept: BTreeMap<String, String> = meta
        .labels
        .iter()
        .flatten()
        .filter(|(k, _)| kept_label(meta, k))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    meta.labels = (!kept.is_empty()).then_some(kept);
}

/// A kind of child the controller applies and watches.
pub trait Child:
    Resource<DynamicType = (), Scope = NamespaceResourceScope>
    + Clone
    + Debug
    + DeserializeOwned
    + Serialize
    + Send
    + Sync
    + 'static
{
    /// The cache of this kind.
    fn cache(stores: &ChildStores) -> &Cache<Self>;

    /// The store of this kind's cache.
    fn store(stores: &ChildStores) -> &Store<PartialObjectMeta<Self>> {
        &Self::cache(stores).store
    }
}

/// One kind's cache: its store, and whether the store has its initial list (see [`crate::synced`]).
#[derive(Debug, Clone)]
pub struct Cache<K: Resource<DynamicType = ()> + Clone + 'static> {
    pub store: Store<PartialObjectMeta<K>>,
    pub synced: Synced,
}

/// What fills one kind's cache: its watch's reflector writer and the mark of its initial list.
#[derive(Debug)]
pub struct Feed<K: Resource<DynamicType = ()> + Clone + 'static> {
    pub writer: Writer<PartialObjectMeta<K>>,
    pub synced: MarkSynced,
}

fn cache<K: Resource<DynamicType = ()> + Clone + 'static>() -> (Cache<K>, Feed<K>) {
    let (store, writer) = store();
    let (mark, synced) = synced();
    (Cache { store, synced }, Feed { writer, synced: mark })
}

/// The feeds of the owned-object watches (handed to the controller set-up once).
#[derive(Debug)]
pub struct ChildWriters {
    pub statefulsets: Feed<StatefulSet>,
    pub services: Feed<Service>,
    pub config_maps: Feed<ConfigMap>,
    pub network_policies: Feed<NetworkPolicy>,
    pub service_accounts: Feed<ServiceAccount>,
    pub roles: Feed<Role>,
    pub role_bindings: Feed<RoleBinding>,
    /// Fed only while the cluster serves ServiceMonitors (see `crate::discovery`).
    pub service_monitors: Feed<ServiceMonitor>,
}

/// The read side of every child cache.
#[derive(Debug, Clone)]
pub struct ChildStores {
    statefulsets: Cache<StatefulSet>,
    services: Cache<Service>,
    config_maps: Cache<ConfigMap>,
    network_policies: Cache<NetworkPolicy>,
    service_accounts: Cache<ServiceAccount>,
    roles: Cache<Role>,
    role_bindings: Cache<RoleBinding>,
    service_monitors: Cache<ServiceMonitor>,
}

/// Empty caches and their feeds.
pub fn child_caches() -> (ChildStores, ChildWriters) {
    let (statefulsets, w_sts) = cache();
    let (services, w_svc) = cache();
    let (config_maps, w_cm) = cache();
    let (network_policies, w_np) = cache();
    let (service_accounts, w_sa) = cache();
    let (roles, w_role) = cache();
    let (role_bindings, w_rb) = cache();
    let (service_monitors, w_sm) = cache();
    (
        ChildStores {
            statefulsets,
            services,
            config_maps,
            network_policies,
            service_accounts,
            roles,
            role_bindings,
            service_monitors,
        },
        ChildWriters {
            statefulsets: w_sts,
            services: w_svc,
            config_maps: w_cm,
            network_policies: w_np,
            service_accounts: w_sa,
            roles: w_role,
            role_bindings: w_rb,
            service_monitors: w_sm,
        },
    )
}

impl ChildStores {
    /// The names of the cached objects of kind `K` in `namespace` that the equality selector `selector`
    /// (`k=v,k2=v2`) matches and the server of uid `uid` owns; `None` until the cache has its first list.
    pub fn names_selected<K: Child>(&self, namespace: &str, selector: &str, uid: &str) -> Option<BTreeSet<String>> {
        if !K::cache(self).synced.is_synced() {
            return None;
        }
        let wanted: Vec<(&str, &str)> = selector.split(',').filter_map(|pair| pair.split_once('=')).collect();
        let matches = |meta: &ObjectMeta| {
            let labels = meta.labels.as_ref();
            wanted.iter().all(|(k, v)| labels.and_then(|l| l.get(*k)).is_some_and(|l| l == v))
                && meta.namespace.as_deref() == Some(namespace)
                && crate::apply::owned_by(meta, uid)
        };
        let objects = K::store(self).state();
        Some(objects.iter().filter(|o| matches(&o.metadata)).filter_map(|o| o.metadata.name.clone()).collect())
    }

    /// The cached resourceVersion of a child, if the cache has it.
    pub fn resource_version<K: Child>(&self, namespace: &str, name: &str) -> Option<String> {
        let key = ObjectRef::<PartialObjectMeta<K>>::new(name).within(namespace);
        K::store(self).get(&key)?.metadata.resource_version.clone()
    }
}

macro_rules! child {
    ($kind:ty, $field:ident) => {
        impl Child for $kind {
            fn cache(stores: &ChildStores) -> &Cache<Self> {
                &stores.$field
            }
        }
    };
}

child!(StatefulSet, statefulsets);
child!(Service, services);
child!(ConfigMap, config_maps);
child!(NetworkPolicy, network_policies);
child!(ServiceAccount, service_accounts);
child!(Role, roles);
child!(RoleBinding, role_bindings);
child!(ServiceMonitor, service_monitors);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cache_entry_keeps_owners_versions_and_the_labels_read() {
        let mut obj: PartialObjectMeta<Service> = serde_json::from_value(serde_json::json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "fs-adapter-nfs", "namespace": "ns", "uid": "u", "resourceVersion": "7",
                "labels": {INSTANCE_LABEL: "fs", ADAPTER_SERVICE_LABEL: "true", "app.kubernetes.io/name": "dittofs"},
                "annotations": {"a": "b"}, "finalizers": ["f"], "ownerReferences": [{"apiVersion": "v",
                "kind": "DittoServer", "name": "fs", "uid": "o"}], "managedFields": [{"manager": "m"}]}
        }))
        .unwrap();
        slim(&mut obj);
        let meta = &obj.metadata;
        let labels: Vec<&String> = meta.labels.iter().flatten().map(|(k, _)| k).collect();
        assert_eq!(labels, [INSTANCE_LABEL, ADAPTER_SERVICE_LABEL]);
        let mut other = obj.clone();
        other.metadata.labels = Some(BTreeMap::from([(INSTANCE_LABEL.to_owned(), "fs".to_owned())]));
        other.metadata.owner_references.as_mut().unwrap()[0].controller = Some(true);
        let mut orphan = other.clone();
        slim(&mut other);
        assert!(other.metadata.labels.is_none(), "not an adapter object: found by its owner");
        orphan.metadata.owner_references = None;
        slim(&mut orphan);
        assert!(orphan.metadata.labels.is_some_and(|l| l.contains_key(INSTANCE_LABEL)), "orphaned: found by label");
        assert!(obj.types.is_none() && meta.annotations.is_none() && meta.finalizers.is_none());
        assert!(meta.managed_fields.is_none());
        assert_eq!((meta.uid.as_deref(), meta.resource_version.as_deref()), (Some("u"), Some("7")));
        assert_eq!(meta.owner_references.as_ref().map(Vec::len), Some(1));
    }
}
