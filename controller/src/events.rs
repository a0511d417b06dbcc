//! Kubernetes Events on a `DittoServer` (reporter `dittofs-controller`), published best-effort.
//!
//! A failed publish is logged and never fails a reconcile: Events explain, they do not decide. Nor do
//! they wait: a reconcile queues its Events and one task per leadership term publishes them in order, so
//! the "Created Service" of a toggle costs its Service no request on the way.
//! Repeats of the same Event within minutes become one Event with a count (the recorder's series). The
//! recorder tells repeats by reason and objects only, not by note: a new note would be counted as one more
//! of the old Event, showing the old note. So each note gets its own recorder, and a new note a new Event.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use k8s_openapi::api::core::v1::ObjectReference;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::{Client, Resource, ResourceExt};

use dittofs_api::constants::CONTROLLER_NAME;

use tokio::sync::mpsc;

use crate::raw::RawDittoServer;

/// Reason of the Normal Event for a child the controller created.
pub const CREATED: &str = "Created";
/// Reason of the Normal Event for a child the controller deleted because the spec no longer asks for it.
pub const DELETED: &str = "Deleted";
/// Reason of the Warning Event for a spec that does not parse.
pub const INVALID_SPEC: &str = "InvalidSpec";
/// Reason of the Warning Event for storage changes Kubernetes does not allow on a StatefulSet.
pub const STORAGE_CHANGE_IGNORED: &str = "StorageChangeIgnored";

/// Most recorders kept; past that they are dropped (a repeat then starts a new Event).
const MAX_RECORDERS: usize = 256;

/// Most announcements remembered: a few per server for thousands of servers. Past that they are forgotten
/// (a Warning may then come once more). Each is a hash of its note under the server's uid and the reason,
/// so the bound is a few MB.
const MAX_ANNOUNCED: usize = 16_384;

/// Most Events waiting to be published; past that a new one is dropped (and logged): an apiserver that
/// cannot take Events must not make the controller hold an unbounded backlog of them.
const MAX_QUEUED: usize = 1024;

/// One Event waiting for the publishing task.
struct Queued {
    recorder: Recorder,
    event: Event,
    reference: ObjectReference,
}

/// Publishes the queued Events in order until every sender is gone (the term's context dropped).
async fn publish_queued(mut queue: mpsc::Receiver<Queued>) {
    while let Some(Queued { recorder, event, reference }) = queue.recv().await {
        if let Err(e) = recorder.publish(&event, &reference).await {
            tracing::warn!(error = %e, reason = event.reason, "could not publish an Event");
        }
    }
}

/// Publishes Events as this controller instance.
#[derive(Clone)]
pub struct Events {
    client: Client,
    reporter: Reporter,
    /// One recorder per (reason, note).
    recorders: Arc<Mutex<HashMap<(String, String), Recorder>>>,
    /// What was last announced per (server uid, reason): the note of [`Events::warning_on_change`], the
    /// generation and note of [`Events::warning_per_generation`].
    announced: Arc<Mutex<HashMap<(String, String), u64>>>,
    /// The children created by the reconcile running per server (uid), announced as one Event at its end.
    created: Arc<Mutex<HashMap<String, Vec<String>>>>,
    queue: mpsc::Sender<Queued>,
}

impl std::fmt::Debug for Events {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Events").finish_non_exhaustive()
    }
}

impl Events {
    /// Events reported by `dittofs-controller`, instance `instance` (the leader-election identity).
    pub fn new(client: Client, instance: &str) -> Self {
        let reporter = Reporter { controller: CONTROLLER_NAME.into(), instance: Some(instance.into()) };
        let (queue, queued) = mpsc::channel(MAX_QUEUED);
        tokio::spawn(publish_queued(queued));
        Self { client, reporter, recorders: Arc::default(), announced: Arc::default(), created: Arc::default(), queue }
    }

    fn recorder(&self, reason: &str, note: &str) -> Recorder {
        let mut recorders = self.recorders.lock().expect("not poisoned");
        let key = (reason.to_owned(), note.to_owned());
        if recorders.len() >= MAX_RECORDERS && !recorders.contains_key(&key) {
            recorders.clear();
        }
        recorders.entry(key).or_insert_with(|| Recorder::new(self.client.clone(), self.reporter.clone())).clone()
    }

    /// A Normal Event on `ds`.
    pub async fn normal(&self, ds: &RawDittoServer, reason: &str, action: &str, note: String) {
        self.publish(ds, None, EventType::Normal, reason, action, note).await;
    }

    /// A Normal Event on `ds` about a child (`related`). Events differing only in their note would be
    /// merged into one series; the related object keeps one Event per child.
    pub async fn normal_about(
        &self,
        ds: &RawDittoServer,
        related: ObjectReference,
        reason: &str,
        action: &str,
        note: String,
    ) {
        self.publish(ds, Some(related), EventType::Normal, reason, action, note).await;
    }

    /// Notes that the running reconcile of `ds` created `what` ("Service fs-api"); see [`Events::announce_created`].
    pub fn created(&self, ds: &RawDittoServer, what: String) {
        let key = ds.uid().unwrap_or_else(|| ds.name_any());
        self.created.lock().expect("not poisoned").entry(key).or_default().push(what);
    }

    /// One Normal `Created` Event naming every child the reconcile of `ds` created, if any. One per child
    /// would be a dozen Event writes per new server, as many as the children themselves, and at a thousand
    /// servers they outran the queue (whose overflow is dropped).
    pub async fn announce_created(&self, ds: &RawDittoServer) {
        let key = ds.uid().unwrap_or_else(|| ds.name_any());
        let Some(created) = self.created.lock().expect("not poisoned").remove(&key) else { return };
        let note = format!("Created {}", created.join(", "));
        self.normal(ds, CREATED, "Apply", note).await;
    }

    /// A Warning Event on `ds`.
    pub async fn warning(&self, ds: &RawDittoServer, reason: &str, action: &str, note: String) {
        self.publish(ds, None, EventType::Warning, reason, action, note).await;
    }

    /// A Warning Event on `ds` unless this controller already announced the same note for the same reason.
    /// Callers check the stored status first (which survives restarts), but that check lags behind their own
    /// status writes — the cache shows them a moment later — so two close reconciles would both announce.
    pub async fn warning_on_change(&self, ds: &RawDittoServer, reason: &str, action: &str, note: String) {
        if self.first_announcement(ds, reason, note.clone()) {
            self.warning(ds, reason, action, note).await;
        }
    }

    /// A Warning Event on `ds` once per generation of its spec and note, for the same reason as
    /// [`Events::warning_on_change`]: the stored status that tells a new generation lags behind.
    pub async fn warning_per_generation(&self, ds: &RawDittoServer, reason: &str, action: &str, note: String) {
        let generation = ds.metadata.generation.unwrap_or_default();
        if self.first_announcement(ds, reason, format!("{generation}\n{note}")) {
            self.warning(ds, reason, action, note).await;
        }
    }

    /// A Normal Event on `ds` once per object (uid) and reason while this controller runs, for the same reason
    /// as [`Events::warning_on_change`]: callers check the stored status first, which lags behind their write.
    pub async fn normal_once(&self, ds: &RawDittoServer, reason: &str, action: &str, note: String) {
        if self.first_announcement(ds, reason, String::new()) {
            self.normal(ds, reason, action, note).await;
        }
    }

    /// Records `announcement` as the last one for `reason` on `ds`; false when it already was.
    fn first_announcement(&self, ds: &RawDittoServer, reason: &str, announcement: String) -> bool {
        use std::hash::{Hash, Hasher};
        let key = (ds.uid().unwrap_or_else(|| ds.name_any()), reason.to_owned());
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        announcement.hash(&mut hasher);
        let announcement = hasher.finish();
        let mut announced = self.announced.lock().expect("not poisoned");
        if announced.get(&key) == Some(&announcement) {
            return false;
        }
        if announced.len() >= MAX_ANNOUNCED {
            announced.clear();
        }
        announced.insert(key, announcement);
        true
    }

    /// What [`Events::warning_on_change`] announced for `reason` on `ds` is resolved: the same note may come again.
    pub fn resolved(&self, ds: &RawDittoServer, reason: &str) {
        let key = (ds.uid().unwrap_or_else(|| ds.name_any()), reason.to_owned());
        self.announced.lock().expect("not poisoned").remove(&key);
    }

    async fn publish(
        &self,
        ds: &RawDittoServer,
        related: Option<ObjectReference>,
        type_: EventType,
        reason: &str,
        action: &str,
        note: String,
    ) {
        let reference: ObjectReference = ds.object_ref(&());
        // The API caps the note at 1 kB.
        let note = dittofs_api::text::truncate(note, dittofs_api::text::MAX_EVENT_NOTE_BYTES);
        let recorder = self.recorder(reason, &note);
        let event = Event { type_, reason: reason.into(), note: Some(note), action: action.into(), secondary: related };
        if let Err(e) = self.queue.try_send(Queued { recorder, event, reference }) {
            tracing::warn!(error = %e, reason, "Event dropped: too many waiting to be published");
        }
    }
}
