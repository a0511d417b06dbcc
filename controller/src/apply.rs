//! Server-side apply of children under the controller's field manager, telling created, changed and no-op apart.
//!
//! `force`: the controller is the authority on every field of its bodies, so a conflicting manager
//! (e.g. someone's `kubectl edit`) is overridden rather than wedging the reconcile. Fields a body omits
//! stay with whoever owns them (the agent's token keys, the adapter part's container ports).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::{Client, ResourceExt};

use dittofs_api::constants::CONTROLLER_FIELD_MANAGER;

use crate::cache::{Child, ChildStores};
use crate::error::Error;
use crate::metrics::Metrics;

/// What an apply did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The object did not exist.
    Created,
    /// The object changed.
    Updated,
    /// The apiserver found nothing to change (resourceVersion kept).
    Unchanged,
}

/// (kind, namespace, name) of a child.
type ChildKey = (String, String, String);

/// Applies children and remembers the resourceVersions it got back.
#[derive(Clone)]
pub struct Applier {
    client: Client,
    stores: ChildStores,
    metrics: Metrics,
    /// (kind, namespace, name) → resourceVersion of the last apply's answer: the cache can lag behind it.
    last: Arc<Mutex<HashMap<ChildKey, String>>>,
}

impl std::fmt::Debug for Applier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Applier").finish_non_exhaustive()
    }
}

/// The patch parameters of every controller apply.
pub fn apply_params() -> PatchParams {
    PatchParams::apply(CONTROLLER_FIELD_MANAGER).force()
}

impl Applier {
    /// An applier writing through `client`, comparing against `stores`, counting into `metrics`.
    pub fn new(client: Client, stores: ChildStores, metrics: Metrics) -> Self {
        Self { client, stores, metrics, last: Arc::default() }
    }

    /// The child caches.
    pub fn stores(&self) -> &ChildStores {
        &self.stores
    }

    /// Server-side applies `obj` (which carries its name and namespace) and says what happened.
    pub async fn apply<K: Child>(&self, obj: &K) -> Result<(K, Outcome), Error> {
        let kind = K::kind(&()).into_owned();
        let name = obj.name_any();
        let namespace = obj.namespace().ok_or(Error::MissingMetadata("namespace"))?;
        let key = (kind.clone(), namespace.clone(), name.clone());
        // Right after a (re)start the first reconciles can run before the child watches listed:
        // wait for that list, or every existing child would look created.
        if K::store(&self.stores).wait_until_ready().await.is_err() {
            tracing::debug!(%kind, "child cache writer gone; created/updated counts may be off");
        }
        let cached = self.stores.resource_version::<K>(&namespace, &name);
        let remembered = self.last.lock().expect("not poisoned").get(&key).cloned();

        let api: Api<K> = Api::namespaced(self.client.clone(), &namespace);
        let applied = api
            .patch(&name, &apply_params(), &Patch::Apply(obj))
            .await
            .map_err(|e| Error::kube(format!("apply {kind} {name}"), e))?;
        let rv = applied.resource_version().unwrap_or_default();
        let outcome = if cached.is_none() && remembered.is_none() {
            Outcome::Created
        } else if cached.as_ref() == Some(&rv) || remembered.as_ref() == Some(&rv) {
            Outcome::Unchanged
        } else {
            Outcome::Updated
        };
        self.last.lock().expect("not poisoned").insert(key, rv);
        if outcome != Outcome::Unchanged {
            self.metrics.wrote(&kind);
            tracing::debug!(%kind, %name, ?outcome, "applied");
        }
        Ok((applied, outcome))
    }

    /// Deletes a child if the cache has it (so a steady state sends no request). True if deleted.
    pub async fn delete_if_present<K: Child>(&self, namespace: &str, name: &str) -> Result<bool, Error> {
        // An unsynced cache would hide an existing object.
        let _ = K::store(&self.stores).wait_until_ready().await;
        if !self.stores.contains::<K>(namespace, name) {
            return Ok(false);
        }
        let kind = K::kind(&()).into_owned();
        let api: Api<K> = Api::namespaced(self.client.clone(), namespace);
        match api.delete(name, &DeleteParams::background()).await {
            Ok(_) => {
                self.metrics.wrote(&kind);
                self.last.lock().expect("not poisoned").remove(&(kind, namespace.to_owned(), name.to_owned()));
                Ok(true)
            }
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(false),
            Err(e) => Err(Error::kube(format!("delete {kind} {name}"), e)),
        }
    }
}
