//! Metadata-only caches of the children, fed by the same watches that trigger reconciles.
//!
//! The caches hold only metadata (no pod templates) and are used to tell a created object from an updated
//! one and a real write from a no-op apply, without extra GETs. Secrets are not watched at all: a watch
//! needs `list` on Secrets cluster-wide, which would let the controller read every Secret in the cluster.
//! The Secrets it generates are created once (create-only) and read by name (see `reconcile::secrets`).

use std::fmt::Debug;

use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Service, ServiceAccount};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::Resource;
use kube::core::PartialObjectMeta;
use kube::runtime::reflector::store::Writer;
use kube::runtime::reflector::{ObjectRef, Store, store};
use serde::Serialize;
use serde::de::DeserializeOwned;

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
    fn store(stores: &ChildStores) -> &Store<PartialObjectMeta<Self>>;
}

/// The writers filled by the owned-object watches (handed to the controller set-up once).
#[derive(Debug)]
pub struct ChildWriters {
    pub statefulsets: Writer<PartialObjectMeta<StatefulSet>>,
    pub services: Writer<PartialObjectMeta<Service>>,
    pub config_maps: Writer<PartialObjectMeta<ConfigMap>>,
    pub network_policies: Writer<PartialObjectMeta<NetworkPolicy>>,
    pub service_accounts: Writer<PartialObjectMeta<ServiceAccount>>,
    pub roles: Writer<PartialObjectMeta<Role>>,
    pub role_bindings: Writer<PartialObjectMeta<RoleBinding>>,
}

/// The read side of every child cache.
#[derive(Debug, Clone)]
pub struct ChildStores {
    statefulsets: Store<PartialObjectMeta<StatefulSet>>,
    services: Store<PartialObjectMeta<Service>>,
    config_maps: Store<PartialObjectMeta<ConfigMap>>,
    network_policies: Store<PartialObjectMeta<NetworkPolicy>>,
    service_accounts: Store<PartialObjectMeta<ServiceAccount>>,
    roles: Store<PartialObjectMeta<Role>>,
    role_bindings: Store<PartialObjectMeta<RoleBinding>>,
}

/// Empty caches and their writers.
pub fn child_caches() -> (ChildStores, ChildWriters) {
    let (statefulsets, w_sts) = store();
    let (services, w_svc) = store();
    let (config_maps, w_cm) = store();
    let (network_policies, w_np) = store();
    let (service_accounts, w_sa) = store();
    let (roles, w_role) = store();
    let (role_bindings, w_rb) = store();
    (
        ChildStores { statefulsets, services, config_maps, network_policies, service_accounts, roles, role_bindings },
        ChildWriters {
            statefulsets: w_sts,
            services: w_svc,
            config_maps: w_cm,
            network_policies: w_np,
            service_accounts: w_sa,
            roles: w_role,
            role_bindings: w_rb,
        },
    )
}

impl ChildStores {
    /// The cached resourceVersion of a child, if the cache has it.
    pub fn resource_version<K: Child>(&self, namespace: &str, name: &str) -> Option<String> {
        let key = ObjectRef::<PartialObjectMeta<K>>::new(name).within(namespace);
        K::store(self).get(&key)?.metadata.resource_version.clone()
    }
}

macro_rules! child {
    ($kind:ty, $field:ident) => {
        impl Child for $kind {
            fn store(stores: &ChildStores) -> &Store<PartialObjectMeta<Self>> {
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
