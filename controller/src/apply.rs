//! Server-side apply of children under the controller's field manager, telling created, changed and no-op apart.
//!
//! `force`: the controller is the authority on every field of its bodies, so a conflicting manager
//! (e.g. someone's `kubectl edit`) is overridden rather than wedging the reconcile. Fields a body omits
//! stay with whoever owns them (the agent's token keys, the adapter part's container ports).
//!
//! A body applied before and answered with the resourceVersion the object still has would change nothing:
//! [`Applier::unchanged`] tells so without a request. Every status change of a server (an agent's report)
//! reconciles it, and re-applying ten unchanged children before the adapter step cost a request each on the
//! path from a toggle to its Service.
//!
//! Force is only used on objects of this server: a child's name is fixed (`<cr>-api`, …), so a server
//! named `payments` would otherwise rewrite someone's `payments-api` Service, and the garbage collector
//! would delete it with the server. An existing object is taken over only if its owner references name
//! this server's uid (which the Go operator's children do too); anything else stops the reconcile with
//! [`Error::NotOwned`] and is never written or deleted.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, DeleteParams, Patch, PatchParams, Preconditions};
use kube::runtime::reflector::ObjectRef;
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

fn key<K: Child>(namespace: &str, name: &str) -> ChildKey {
    (K::kind(&()).into_owned(), namespace.to_owned(), name.to_owned())
}

/// The last apply of a child: a hash of the body sent, and what identifies the answer: its resourceVersion,
/// and its generation with a hash of the metadata others could change ([`meta_hash`]).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Sent {
    body: u64,
    resource_version: String,
    generation: Option<i64>,
    meta: u64,
}

impl Sent {
    fn of<K: serde::Serialize>(body: &K, answer: &ObjectMeta) -> Self {
        Self::new(body_hash(body), answer)
    }

    fn new(body: u64, answer: &ObjectMeta) -> Self {
        Self {
            body,
            resource_version: answer.resource_version.clone().unwrap_or_default(),
            generation: answer.generation.filter(|g| *g > 0),
            meta: meta_hash(answer),
        }
    }

    /// Whether `current` (a cache entry) is still the object this apply answered with: the same
    /// resourceVersion. The cache keeps too little metadata to tell more.
    fn still_cached(&self, current: &ObjectMeta) -> bool {
        current.resource_version.as_ref() == Some(&self.resource_version)
    }

    /// Whether `live` (the whole object, as just read) is still the object this apply answered with: the
    /// same resourceVersion, or the same generation with the same metadata. The StatefulSet controller
    /// rewrites the status after every pod change, which moves only the resourceVersion; re-applying the
    /// unchanged spec for each would be a request per status change for nothing. A spec edit moves the
    /// generation, a metadata edit the metadata hash, and a re-created object its uid: each is applied again.
    fn still_live(&self, live: &ObjectMeta) -> bool {
        self.still_cached(live)
            || (self.generation.is_some() && live.generation == self.generation && meta_hash(live) == self.meta)
    }
}

/// A hash of the metadata others could change without a new generation: uid, labels, annotations, owners.
fn meta_hash(meta: &ObjectMeta) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    (&meta.uid, &meta.labels, &meta.annotations).hash(&mut hasher);
    serde_json::to_vec(&meta.owner_references).unwrap_or_default().hash(&mut hasher);
    hasher.finish()
}

/// A hash of the body an apply sends (serialization is deterministic: struct fields in order, maps sorted).
fn body_hash<K: serde::Serialize>(obj: &K) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    serde_json::to_vec(obj).unwrap_or_default().hash(&mut hasher);
    hasher.finish()
}

/// Applies children and remembers the resourceVersions it got back.
#[derive(Clone)]
pub struct Applier {
    client: Client,
    stores: ChildStores,
    metrics: Metrics,
    /// (kind, namespace, name) → the last apply's body hash and answer: the cache can lag behind it. One
    /// leadership term long (a new term re-applies everything once).
    last: Arc<Mutex<HashMap<ChildKey, Sent>>>,
    /// (kind, server uid) whose adapter objects were listed in this term (see [`Applier::listed`]).
    listed: Arc<Mutex<HashSet<(String, String)>>>,
}

impl std::fmt::Debug for Applier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Applier").finish_non_exhaustive()
    }
}

/// The uid of the server that controls `meta` (its controller owner reference), if any.
pub fn controller_uid(meta: &ObjectMeta) -> Option<&str> {
    let owners = meta.owner_references.as_deref().unwrap_or_default();
    owners.iter().find(|o| o.controller == Some(true)).map(|o| o.uid.as_str())
}

/// Whether `meta` names the server of uid `uid` among its owners.
pub fn owned_by(meta: &ObjectMeta, uid: &str) -> bool {
    meta.owner_references.iter().flatten().any(|o| o.uid == uid)
}

/// "owned by DittoServer other (uid …)" or "not owned by any DittoServer", for the refusal.
fn holder(meta: &ObjectMeta) -> String {
    match meta.owner_references.as_deref().unwrap_or_default().first() {
        Some(o) => format!("owned by {} {} (uid {})", o.kind, o.name, o.uid),
        None => "owned by nobody".to_owned(),
    }
}

/// Refuses an existing object that does not belong to the server of uid `uid`.
pub fn check_owner(kind: &str, name: &str, existing: Option<&ObjectMeta>, uid: &str) -> Result<(), Error> {
    match existing {
        Some(meta) if !owned_by(meta, uid) => {
            Err(Error::NotOwned { kind: kind.to_owned(), name: name.to_owned(), holder: holder(meta) })
        }
        _ => Ok(()),
    }
}

/// The patch parameters of every controller apply.
pub fn apply_params() -> PatchParams {
    PatchParams::apply(CONTROLLER_FIELD_MANAGER).force()
}

impl Applier {
    /// An applier writing through `client`, comparing against `stores`, counting into `metrics`.
    pub fn new(client: Client, stores: ChildStores, metrics: Metrics) -> Self {
        Self { client, stores, metrics, last: Arc::default(), listed: Arc::default() }
    }

    /// The child caches.
    pub fn stores(&self) -> &ChildStores {
        &self.stores
    }

    /// Whether applying `obj` again would change nothing: it is the body this applier last sent for that
    /// object, and the object is still what that apply returned — `live` when the caller read it (same
    /// resourceVersion, or same generation and metadata), else the cache's (same resourceVersion). Someone
    /// else's change, a deletion, or a cache that has not seen the last apply yet all read as changed (an
    /// apply too many, never one too few).
    pub fn unchanged<K: Child>(&self, obj: &K, live: Option<&K>) -> bool {
        let (Some(namespace), name) = (obj.namespace(), obj.name_any()) else { return false };
        let Some(sent) = self.last.lock().expect("not poisoned").get(&key::<K>(&namespace, &name)).cloned() else {
            return false;
        };
        let still = match live {
            Some(live) => sent.still_live(live.meta()),
            None => K::store(&self.stores)
                .get(&ObjectRef::new(&name).within(&namespace))
                .is_some_and(|cached| sent.still_cached(&cached.metadata)),
        };
        still && sent.body == body_hash(obj)
    }

    /// Whether a watch event shows an object exactly as this applier's last write left it: the reconcile
    /// that wrote it already knows, so the event need not reconcile its server again.
    pub fn own_write(&self, kind: &str, meta: &ObjectMeta) -> bool {
        let (Some(namespace), Some(name), Some(rv)) = (&meta.namespace, &meta.name, &meta.resource_version) else {
            return false;
        };
        let key = (kind.to_owned(), namespace.clone(), name.clone());
        self.last.lock().expect("not poisoned").get(&key).is_some_and(|sent| &sent.resource_version == rv)
    }

    /// Records `body` as applied with `answer` by a write outside [`Applier::apply`] (the adapter step's).
    pub fn remember<K: Child>(&self, body: &K, answer: &ObjectMeta) {
        let (Some(namespace), name) = (body.namespace(), body.name_any()) else { return };
        self.last.lock().expect("not poisoned").insert(key::<K>(&namespace, &name), Sent::of(body, answer));
    }

    /// Another field manager's apply moved `before` (the whole object) to `after` (the adapter ports of the
    /// StatefulSet): if this applier's body was current before it, and that apply was the only change in
    /// between (one generation), it still is, at the new version. An edit by someone else that the answer
    /// also carries (two generations or more) is not taken for the controller's own.
    pub fn carry<K: Child>(&self, before: &ObjectMeta, after: &ObjectMeta) {
        let (Some(namespace), Some(name)) = (&before.namespace, &before.name) else { return };
        if after.generation != before.generation.map(|g| g + 1) {
            return;
        }
        let mut last = self.last.lock().expect("not poisoned");
        if let Some(sent) = last.get_mut(&key::<K>(namespace, name)).filter(|sent| sent.still_live(before)) {
            *sent = Sent::new(sent.body, after);
        }
    }

    /// Whether the adapter objects of `kind` of the server of uid `uid` were listed in this term. The cache
    /// watches only objects with this controller's labels, a list finds any with the adapter labels: once
    /// per term, the adapter step lists whatever the cache shows.
    pub fn was_listed(&self, kind: &str, uid: &str) -> bool {
        self.listed.lock().expect("not poisoned").contains(&(kind.to_owned(), uid.to_owned()))
    }

    /// Notes that the adapter objects of `kind` of the server of uid `uid` were listed.
    pub fn mark_listed(&self, kind: &str, uid: &str) {
        self.listed.lock().expect("not poisoned").insert((kind.to_owned(), uid.to_owned()));
    }

    /// Forgets a child deleted outside [`Applier::delete_if_present`].
    pub fn forget<K: Child>(&self, meta: &ObjectMeta) {
        let (Some(namespace), Some(name)) = (&meta.namespace, &meta.name) else { return };
        self.last.lock().expect("not poisoned").remove(&key::<K>(namespace, name));
    }

    /// Server-side applies `obj` (which carries its name and namespace) and says what happened.
    pub async fn apply<K: Child>(&self, obj: &K) -> Result<(K, Outcome), Error> {
        let kind = K::kind(&()).into_owned();
        let name = obj.name_any();
        let namespace = obj.namespace().ok_or(Error::MissingMetadata("namespace"))?;
        let key = key::<K>(&namespace, &name);
        // Right after a (re)start the first reconciles can run before the child watches listed:
        // wait for that list, or every existing child would look created.
        if !K::cache(&self.stores).synced.wait().await {
            tracing::debug!(%kind, "child watch ended before its list; created/updated counts may be off");
        }
        let cached = self.stores.resource_version::<K>(&namespace, &name);
        let remembered = self.last.lock().expect("not poisoned").get(&key).map(|s| s.resource_version.clone());

        let api: Api<K> = Api::namespaced(self.client.clone(), &namespace);
        let uid = controller_uid(obj.meta()).ok_or(Error::MissingMetadata("owner reference"))?;
        let cached_meta = K::store(&self.stores).get(&ObjectRef::new(&name).within(&namespace));
        let existing = match cached_meta {
            Some(meta) => Some(meta.metadata.clone()),
            // The cache holds only objects labelled as this controller's: ask for any other of that name.
            None => api
                .get_metadata_opt(&name)
                .await
                .map_err(|e| Error::kube(format!("get {kind} {name}"), e))?
                .map(|m| m.metadata),
        };
        check_owner(&kind, &name, existing.as_ref(), uid)?;
        self.metrics.sent_apply(&kind);
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
        self.last.lock().expect("not poisoned").insert(key, Sent::of(obj, applied.meta()));
        if outcome != Outcome::Unchanged {
            self.metrics.wrote(&kind);
            tracing::debug!(%kind, %name, ?outcome, "applied");
        }
        Ok((applied, outcome))
    }

    /// Deletes a child of the server of uid `uid` if the cache has it (so a steady state sends no
    /// request). True if deleted. An object of that name owned by anyone else is refused.
    pub async fn delete_if_present<K: Child>(&self, namespace: &str, name: &str, uid: &str) -> Result<bool, Error> {
        // An unsynced cache would hide an existing object.
        K::cache(&self.stores).synced.wait().await;
        let kind = K::kind(&()).into_owned();
        let Some(cached) = K::store(&self.stores).get(&ObjectRef::new(name).within(namespace)) else {
            return Ok(false);
        };
        check_owner(&kind, name, Some(&cached.metadata), uid)?;
        let api: Api<K> = Api::namespaced(self.client.clone(), namespace);
        // The uid precondition: never delete an object of that name created since the cache saw ours.
        let params = DeleteParams {
            preconditions: Some(Preconditions { uid: cached.metadata.uid.clone(), resource_version: None }),
            ..DeleteParams::background()
        };
        match api.delete(name, &params).await {
            Ok(_) => {
                self.metrics.wrote(&kind);
                self.last.lock().expect("not poisoned").remove(&key::<K>(namespace, name));
                Ok(true)
            }
            Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => Ok(false),
            Err(e) => Err(Error::kube(format!("delete {kind} {name}"), e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn meta(rv: &str, generation: Option<i64>, label: &str) -> ObjectMeta {
        ObjectMeta {
            resource_version: Some(rv.into()),
            generation,
            uid: Some("u".into()),
            labels: Some(BTreeMap::from([("l".to_owned(), label.to_owned())])),
            ..ObjectMeta::default()
        }
    }

    #[test]
    fn an_answer_still_holds_at_its_version_or_whole_at_its_generation_and_metadata() {
        let sts = Sent::of(&"body", &meta("5", Some(2), "a"));
        assert!(sts.still_live(&meta("5", Some(2), "a")));
        assert!(sts.still_live(&meta("9", Some(2), "a")), "a status write by the StatefulSet controller");
        assert!(!sts.still_live(&meta("9", Some(3), "a")), "someone changed the spec");
        assert!(!sts.still_live(&meta("9", Some(2), "b")), "someone changed a label");
        let mut annotated = meta("9", Some(2), "a");
        annotated.annotations = Some(BTreeMap::from([("x".to_owned(), "y".to_owned())]));
        assert!(!sts.still_live(&annotated), "someone added an annotation");
        let mut recreated = meta("9", Some(2), "a");
        recreated.uid = Some("other".into());
        assert!(!sts.still_live(&recreated), "deleted and created again");
        assert!(!sts.still_cached(&meta("9", Some(2), "a")), "a cache entry: only the version tells");
        let cm = Sent::of(&"body", &meta("5", None, "a"));
        assert!(cm.still_live(&meta("5", None, "a")));
        assert!(!cm.still_live(&meta("6", None, "a")), "without a generation only the version tells");
        assert_eq!(Sent::new(body_hash(&"body"), &meta("5", None, "a")), cm);
    }
}
