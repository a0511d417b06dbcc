//! `spec.snapshotPolicies` applied to this pod's DittoFS.
//!
//! DittoFS serves `/shares/**` and `/snapshot-policies` to admins only, and the agent's own account stays
//! `operator`. So a sync is one short admin session (the bootstrap password, as for provisioning): list the
//! policies DittoFS has, PUT each entry that differs, DELETE the policy of each entry removed from the spec
//! that the agent had written, then drop the admin token. A sync runs only when there is a reason:
//!
//! - the list in the spec differs from the one last synced (the agent's start included);
//! - DittoFS came back after an outage, or the agent had to create its account (a new or reset database):
//!   what was applied may be gone;
//! - an entry is pending (its share does not exist yet, or DittoFS did not answer): every
//!   [`crate::config::Timings::snapshot_retry`];
//! - the admin login failed: every [`ADMIN_RETRY`] (the password may be fixed without any other change).
//!
//! A refused entry (DittoFS's 400) is not retried until it or DittoFS changes. Results go into the agent's
//! status entry, one per share; a failure gives one `SnapshotPolicyFailed` Warning per change of the entry or
//! of the error, and a write or deletion one `SnapshotPolicyApplied`/`SnapshotPolicyDeleted`, never one per
//! retry. Which policies the agent wrote (`managed`) is kept in that entry, so a restarted agent still deletes
//! them; a policy someone made through the API on a share the spec does not name is never touched.

use std::{
    collections::{BTreeMap, BTreeSet},
    time::Duration,
};

use dittofs_api::{
    DittoServer,
    conditions::events as reasons,
    crd::{AgentSnapshotPolicyStatus, SnapshotPolicySpec, SnapshotPolicyState, snapshot::MAX_POLICIES},
};
use tokio::time::Instant;

use crate::{
    auth::Auth,
    credentials::SecretStore,
    dittofs::{ApiError, ApiSnapshotPolicy, DittoFs, PolicyBody},
    error::AuthError,
    events::{AgentEvent, Events},
    text::truncate_chars,
};

/// Retry period after a refused admin login: slow, since only a fixed password ends it.
pub const ADMIN_RETRY: Duration = Duration::from_secs(300);

/// See the module docs.
#[derive(Debug)]
pub struct Snapshots {
    pod: String,
    retry: Duration,
    events: Events,
    /// The spec's entries, one per share (the first of entries naming the same share).
    desired: Vec<SnapshotPolicySpec>,
    generation: Option<i64>,
    /// The entries as last synced; `None` forces the next sync.
    synced: Option<Vec<SnapshotPolicySpec>>,
    /// Shares whose policy the agent wrote and has not deleted.
    managed: BTreeSet<String>,
    results: BTreeMap<String, AgentSnapshotPolicyStatus>,
    /// Share → the failure last announced (entry and message), so a retry of it stays silent.
    announced: BTreeMap<String, (Option<PolicyBody>, String)>,
    seeded: bool,
    due: Option<Instant>,
}

/// The outcome of one share in a sync.
enum Outcome {
    Applied {
        wrote: bool,
    },
    Deleted,
    /// A removed entry whose policy is no longer in DittoFS (the share was deleted, or someone removed it).
    Gone,
    Pending(String),
    Failed(String),
}

impl Snapshots {
    pub fn new(pod: &str, retry: Duration, events: Events) -> Snapshots {
        Snapshots {
            pod: pod.to_owned(),
            retry,
            events,
            desired: Vec::new(),
            generation: None,
            synced: None,
            managed: BTreeSet::new(),
            results: BTreeMap::new(),
            announced: BTreeMap::new(),
            seeded: false,
            due: None,
        }
    }

    /// The DittoServer as the watch delivered it. The first one also tells which policies the agent wrote
    /// before it (re)started: those its entry marks `managed`.
    pub fn on_object(&mut self, server: &DittoServer) {
        if !self.seeded {
            self.seeded = true;
            let mine = server.status.as_ref().and_then(|s| s.agents.iter().find(|a| a.pod_name == self.pod));
            for entry in mine.map(|a| a.snapshot_policies.as_slice()).unwrap_or_default() {
                if entry.managed {
                    self.managed.insert(entry.share.clone());
                }
                self.results.insert(entry.share.clone(), entry.clone());
            }
        }
        let mut seen = BTreeSet::new();
        let desired: Vec<_> =
            server.spec.snapshot_policies.iter().filter(|p| seen.insert(p.share_name())).cloned().collect();
        self.generation = server.metadata.generation;
        if self.synced.as_ref() != Some(&desired) {
            self.due = Some(Instant::now());
        }
        self.desired = desired;
    }

    /// What was applied may be gone (DittoFS restarted, or its database is new): check at once.
    pub fn recheck(&mut self) {
        self.synced = None;
        self.due = Some(Instant::now());
    }

    /// When the next sync is due; `None` while there is nothing to do (no entry, nothing to delete), so a
    /// server without policies never costs an admin login.
    pub fn due(&self) -> Option<Instant> {
        self.due.filter(|_| self.seeded && !(self.desired.is_empty() && self.managed.is_empty()))
    }

    /// The entry's `snapshotPolicies`, by share.
    pub fn report(&self) -> Vec<AgentSnapshotPolicyStatus> {
        self.results.values().take(MAX_POLICIES).cloned().collect()
    }

    /// One admin session: list, upsert what differs, delete what was removed, drop the token.
    pub async fn sync<C: DittoFs, S: SecretStore>(&mut self, client: &C, auth: &mut Auth<C, S>) {
        self.due = None;
        let desired = self.desired.clone();
        let admin = match auth.admin_session().await {
            Ok(token) => token,
            Err(e) => {
                let transient = matches!(&e, AuthError::Api(api) if api.is_transient());
                let message = format!("admin login to apply the snapshot policies failed: {e}");
                tracing::warn!(error = %e, "snapshot policies: admin login failed");
                let outcome = |m: String| if transient { Outcome::Pending(m) } else { Outcome::Failed(m) };
                self.everyone(&desired, |_| outcome(message.clone()));
                self.due = Some(Instant::now() + if transient { self.retry } else { ADMIN_RETRY });
                return;
            }
        };
        let existing = match client.list_snapshot_policies(&admin).await {
            Ok(list) => list.into_iter().map(|p| (p.share.clone(), p)).collect::<BTreeMap<_, _>>(),
            Err(e) => {
                tracing::warn!(error = %e, "snapshot policies: cannot list DittoFS's policies");
                let message = format!("listing DittoFS's snapshot policies failed: {e}");
                let failed = !e.is_transient();
                self.everyone(&desired, |_| {
                    if failed { Outcome::Failed(message.clone()) } else { Outcome::Pending(message.clone()) }
                });
                self.due = Some(Instant::now() + self.retry);
                return;
            }
        };
        let mut retry = false;
        let mut wanted = BTreeSet::new();
        for spec in &desired {
            let share = spec.share_name();
            wanted.insert(share.clone());
            let outcome = apply(client, &admin, &share, spec, existing.get(&share)).await;
            retry |= matches!(outcome, Outcome::Pending(_));
            self.record(&share, Some(spec), outcome);
        }
        let removed: Vec<String> = self.managed.iter().filter(|s| !wanted.contains(*s)).cloned().collect();
        for share in removed {
            let outcome = match client.delete_snapshot_policy(&admin, &share).await {
                Ok(()) => Outcome::Deleted,
                Err(ApiError::NotFound(_)) => Outcome::Gone,
                Err(e) if e.is_transient() => Outcome::Pending(format!("deleting the removed policy: {e}")),
                Err(e) => Outcome::Failed(format!("DittoFS refused to delete the removed policy: {e}")),
            };
            retry |= matches!(outcome, Outcome::Pending(_));
            self.record(&share, None, outcome);
        }
        // Results of shares neither wanted nor managed any more (a pending entry that was removed).
        self.results.retain(|share, _| wanted.contains(share) || self.managed.contains(share));
        drop(admin);
        self.synced = Some(desired);
        if retry {
            self.due = Some(Instant::now() + self.retry);
        }
    }

    /// The same outcome for every entry (the session could not start).
    fn everyone(&mut self, desired: &[SnapshotPolicySpec], outcome: impl Fn(&str) -> Outcome) {
        for spec in desired {
            let share = spec.share_name();
            self.record(&share, Some(spec), outcome(&share));
        }
    }

    /// Records one share's outcome in the results and queues its Event if it is news.
    fn record(&mut self, share: &str, spec: Option<&SnapshotPolicySpec>, outcome: Outcome) {
        let body = spec.map(PolicyBody::of);
        let (state, message) = match &outcome {
            Outcome::Applied { wrote } => {
                self.managed.insert(share.to_owned());
                self.announced.remove(share);
                if *wrote {
                    tracing::info!(share, "snapshot policy applied");
                    let note = format!("snapshot policy of share {share} applied");
                    self.emit(false, reasons::SNAPSHOT_POLICY_APPLIED, "Apply", note);
                }
                (SnapshotPolicyState::Applied, None)
            }
            Outcome::Deleted | Outcome::Gone => {
                self.managed.remove(share);
                self.results.remove(share);
                self.announced.remove(share);
                if matches!(outcome, Outcome::Deleted) {
                    tracing::info!(share, "snapshot policy deleted (its entry left the spec)");
                    let note =
                        format!("snapshot policy of share {share} deleted: its entry left spec.snapshotPolicies");
                    self.emit(false, reasons::SNAPSHOT_POLICY_DELETED, "Delete", note);
                }
                return;
            }
            Outcome::Pending(message) => (SnapshotPolicyState::Pending, Some(message)),
            Outcome::Failed(message) => {
                let news = self.announced.get(share) != Some(&(body.clone(), message.clone()));
                if news {
                    tracing::warn!(share, error = message, "snapshot policy failed");
                    self.announced.insert(share.to_owned(), (body.clone(), message.clone()));
                    let note = format!("snapshot policy of share {share}: {message}");
                    self.emit(true, reasons::SNAPSHOT_POLICY_FAILED, "Apply", note);
                }
                (SnapshotPolicyState::Failed, Some(message))
            }
        };
        let entry = AgentSnapshotPolicyStatus {
            share: share.to_owned(),
            state,
            managed: self.managed.contains(share),
            observed_generation: self.generation,
            message: message.map(|m| truncate_chars(m, 1024)),
        };
        self.results.insert(share.to_owned(), entry);
    }

    fn emit(&self, warning: bool, reason: &'static str, action: &'static str, note: String) {
        self.events.emit(AgentEvent { warning, reason, action, note });
    }
}

/// Upserts one entry unless DittoFS already holds it as the spec says.
async fn apply<C: DittoFs>(
    client: &C,
    admin: &crate::secret::SecretString,
    share: &str,
    spec: &SnapshotPolicySpec,
    existing: Option<&ApiSnapshotPolicy>,
) -> Outcome {
    let body = PolicyBody::of(spec);
    if existing.is_some_and(|p| body.matches(p)) {
        return Outcome::Applied { wrote: false };
    }
    match client.put_snapshot_policy(admin, share, &body).await {
        Ok(()) => Outcome::Applied { wrote: true },
        Err(ApiError::NotFound(detail)) => {
            Outcome::Pending(format!("share {share} does not exist in DittoFS ({detail}); retried until it is created"))
        }
        Err(e) if e.is_transient() => Outcome::Pending(format!("DittoFS did not take the policy: {e}")),
        Err(e) => Outcome::Failed(format!("DittoFS refused the policy: {e}")),
    }
}

#[cfg(test)]
#[path = "snapshots_tests.rs"]
mod tests;
