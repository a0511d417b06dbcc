//! The reconcile pipeline: observe (IO) → settle values (the random source) → desired (pure) → apply (SSA)
//! → status (written only on change).
//!
//! Closing never waits on opening: the baseline NetworkPolicy is applied first, and when any other child
//! fails (a quota, a webhook, a name taken by someone else) the adapter step still runs in close-only
//! mode, so an adapter that stopped is not left exposed behind an unrelated failure. A deleted server
//! goes down in order ([`teardown`]). A reconcile in flight when the leader Lease is lost is cancelled
//! at its next await, so a former leader stops writing at once instead of racing the new one.

pub mod adapters;
pub mod children;
pub mod observe;
pub mod percona;
pub mod secrets;
pub mod service_monitor;
pub mod status;
pub mod takeover;
pub mod teardown;
pub mod traced;
pub mod values;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jiff::Timestamp;
use kube::Client;
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use tokio_util::sync::CancellationToken;

use dittofs_api::conditions::{self, events as reasons};

use crate::apply::Applier;
use crate::config::AgentDefaults;
use crate::discovery::Served;
use crate::error::{Error, backoff};
use crate::events::Events;
use crate::metrics::Metrics;
use crate::raw::RawDittoServer;

/// A safety-net resync: every change is watched, so this only repairs what a lost watch event hid.
pub const RESYNC: Duration = Duration::from_secs(30 * 60);
/// Retry while a referenced Secret is missing (it is not owned, hence not watched).
pub const MISSING_SECRET_RETRY: Duration = Duration::from_secs(30);
/// Retry while the Percona cluster is not ready or its Secret missing (neither is watched), as in Go.
pub const PERCONA_RETRY: Duration = Duration::from_secs(10);

/// Shared by every reconcile.
pub struct Context {
    /// The client.
    pub client: Client,
    /// Server-side apply of children.
    pub applier: Applier,
    /// Event publisher.
    pub events: Events,
    /// Metrics.
    pub metrics: Metrics,
    /// What every agent gets unless its server's `spec.agent` says otherwise: the image (`--agent-image`) and
    /// the controller's own log and OTLP settings.
    pub agent: AgentDefaults,
    /// Whether the cluster serves ServiceMonitors, as discovery last said (see [`crate::discovery`]).
    service_monitor_api: tokio::sync::watch::Receiver<Served>,
    /// Cancelled when this leadership term ends: in-flight reconciles stop writing.
    term: CancellationToken,
    /// Consecutive transient failures per server (for the backoff).
    failures: Mutex<HashMap<ObjectRef<RawDittoServer>, u32>>,
    /// The agent traces already continued, and when each server's watch event arrived.
    traces: Arc<traced::Traces>,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context").field("agent", &self.agent).finish_non_exhaustive()
    }
}

impl Context {
    /// A context for one leadership term, which ends when `term` is cancelled.
    pub fn new(
        client: Client,
        applier: Applier,
        events: Events,
        metrics: Metrics,
        agent: AgentDefaults,
        service_monitor_api: tokio::sync::watch::Receiver<Served>,
        term: CancellationToken,
    ) -> Self {
        let (failures, traces) = (Mutex::default(), Arc::default());
        Self { client, applier, events, metrics, agent, service_monitor_api, term, failures, traces }
    }

    /// Whether the cluster serves ServiceMonitors, as discovery last said.
    pub fn service_monitor_api(&self) -> Served {
        *self.service_monitor_api.borrow()
    }

    /// What the DittoServer watch notes each event's arrival in (see [`traced`]).
    pub fn traces(&self) -> Arc<traced::Traces> {
        self.traces.clone()
    }
}

/// Reconciles one server and records the outcome (metrics, failure count, a Warning Event on failure).
pub async fn reconcile(raw: Arc<RawDittoServer>, ctx: Arc<Context>) -> Result<Action, Error> {
    let started = Instant::now();
    let span = traced::reconcile_span(&ctx.traces, &raw);
    span.in_scope(|| tracing::debug!(resource_version = ?raw.metadata.resource_version, "reconcile started"));
    let work = tracing::Instrument::instrument(reconcile_server(&raw, &ctx), span.clone());
    let result = cancellable(&ctx.term, RECONCILE_DEADLINE, work).await;
    ctx.events.announce_created(&raw).await;
    span.in_scope(|| tracing::debug!(elapsed = ?started.elapsed(), ok = result.is_ok(), "reconcile ended"));
    let key = ObjectRef::from_obj(raw.as_ref());
    match &result {
        Ok(_) => {
            ctx.metrics.reconciled("ok", started.elapsed());
            ctx.failures.lock().expect("not poisoned").remove(&key);
        }
        Err(e) => {
            ctx.metrics.reconciled(e.metric_label(), started.elapsed());
            tracing::warn!(error = %e, label = e.metric_label(), "reconcile failed");
            if !e.is_permanent() {
                *ctx.failures.lock().expect("not poisoned").entry(key).or_default() += 1;
            }
            // Invalid specs and adapter failures have their own Warning Events already.
            // These have Warning Events of their own.
            let own_event = matches!(
                e,
                Error::InvalidSpec(_)
                    | Error::Adapters { .. }
                    | Error::NotOwned { .. }
                    | Error::TakeoverBlocked(_)
                    | Error::LeadershipLost
            );
            if !own_event {
                let note = format!("{} ({})", e, e.metric_label());
                ctx.events.warning(&raw, reasons::RECONCILE_FAILED, "Reconcile", note).await;
            }
        }
    }
    result
}

/// The longest a reconcile may run. Each request has its own deadline (30 s), so only a wait outside them
/// can reach this; a reconcile holds its server's slot, and every later event of that server waits for it,
/// so a wait that never ends must not hold it forever (kube-runtime's lost cache-readiness wake-up did; see
/// `crate::synced`).
pub const RECONCILE_DEADLINE: Duration = Duration::from_secs(120);

/// Runs `work` until it ends, `term` is cancelled or `deadline` passes, whichever comes first: a former
/// leader's reconcile stops at its next await instead of finishing its writes beside the new leader's.
async fn cancellable<T>(
    term: &CancellationToken,
    deadline: Duration,
    work: impl std::future::Future<Output = Result<T, Error>>,
) -> Result<T, Error> {
    tokio::select! {
        biased;
        () = term.cancelled() => Err(Error::LeadershipLost),
        result = tokio::time::timeout(deadline, work) => result.unwrap_or(Err(Error::TimedOut(deadline))),
    }
}

/// Invalid objects wait for a change; transient failures back off per server.
pub fn error_policy(raw: Arc<RawDittoServer>, error: &Error, ctx: Arc<Context>) -> Action {
    if error.is_permanent() {
        return Action::await_change();
    }
    let failures =
        ctx.failures.lock().expect("not poisoned").get(&ObjectRef::from_obj(raw.as_ref())).copied().unwrap_or(1);
    Action::requeue(backoff(failures))
}

async fn reconcile_server(raw: &RawDittoServer, ctx: &Context) -> Result<Action, Error> {
    if raw.metadata.deletion_timestamp.is_some() {
        ctx.traces.forget(raw);
        return teardown::run(ctx, raw).await;
    }
    let ds = match raw.parse() {
        Ok(ds) => ds,
        Err(invalid) => {
            status::report_invalid(ctx, raw, &invalid).await;
            return Err(invalid.into());
        }
    };
    if ds.metadata.uid.is_none() {
        return Err(Error::MissingMetadata("uid"));
    }
    // Before any write: a server the Go operator left is taken over first (its selector decides every
    // other selector), and a StatefulSet this controller cannot adopt stops everything.
    let live = observe::statefulset(&ctx.client, &ds).await;
    match &live {
        Ok(sts) => match takeover::run(ctx, raw, &ds, sts.as_ref()).await {
            Ok(true) => return Ok(Action::await_change()),
            Ok(false) => {}
            Err(error) => return Err(takeover_blocked(ctx, raw, error).await),
        },
        Err(_) if takeover::pending(raw) => return live.map(|_| Action::await_change()),
        Err(_) => {}
    }
    teardown::ensure_finalizer(ctx, raw).await?;
    let baseline = children::apply_baseline(ctx, raw, &ds).await;

    let mut observed = match async {
        let mut observed = observe::observe(&ctx.client, &ds, live?).await?;
        if let Some(found) = observed.percona.take() {
            observed.percona = Some(percona::ensure_cluster(ctx, raw, &ds, found).await?);
        }
        Ok(observed)
    }
    .await
    {
        Ok(observed) => observed,
        Err(error) => return Err(blocked(ctx, raw, &ds, None, baseline, error).await),
    };
    let values = values::settle(&ds, &observed);
    // A template naming a Secret or key that does not exist could not start: hold the StatefulSet as it runs.
    let database = database_wait(&ds, &observed).or_else(|| observed.secrets_problem.clone());
    let applied = match children::apply_children(ctx, raw, &ds, &observed, &values, database.is_some()).await {
        Ok(applied) => applied,
        Err(error) => return Err(blocked(ctx, raw, &ds, observed.statefulset.as_ref(), baseline, error).await),
    };
    baseline?;
    let sts = applied.statefulset.as_ref();
    let adapters = adapters::reconcile(ctx, raw, &ds, sts, adapters::Mode::Full).await;
    let statefulset = adapters.statefulset.as_ref().or(sts);
    let database_state = status::Database {
        percona: observed.percona.take(),
        secret_problem: observed.database_problem.take(),
        other_secrets: observed.secrets_problem.take(),
    };
    status::update(ctx, raw, &ds, &applied, statefulset, &values, adapters.state, &database_state).await?;
    ctx.events.resolved(raw, reasons::CHILD_NOT_OWNED);
    if let Some(e) = adapters.error {
        return Err(e);
    }
    if let Some(why) = &database {
        tracing::info!(reason = why, "the StatefulSet waits for the database");
    }
    if !observed.missing.is_empty() {
        tracing::warn!(missing = ?observed.missing, "referenced Secrets are missing; the pod cannot start until they exist");
    }
    let mut next = next_look(&ds, adapters.waiting_for_pods, !observed.missing.is_empty());
    if database_state.percona.is_some() && database.is_some() {
        // Neither the PerconaPGCluster nor Percona's Secret is watched: look again soon, as Go did.
        next = next.min(PERCONA_RETRY);
    }
    Ok(Action::requeue(next))
}

/// Why the StatefulSet must not be created or changed yet (`None`: it may): with Percona, until its cluster
/// is ready and its user Secret complete; with `postgresSecretRef`, until that Secret has its keys. A pod
/// template is never rendered for a database DittoFS cannot reach, and never for SQLite instead.
fn database_wait(ds: &dittofs_api::DittoServer, observed: &observe::Observed) -> Option<String> {
    if let Some(percona) = &observed.percona {
        return crate::desired::database::percona_wait(ds, percona).map(|(_, message)| message);
    }
    observed.database_problem.clone()
}

/// The main children failed: close what no longer serves anyway, say why the server is stuck when a
/// child's name is taken, and return the error to retry with (the baseline's first).
async fn blocked(
    ctx: &Context,
    raw: &RawDittoServer,
    ds: &dittofs_api::DittoServer,
    live: Option<&k8s_openapi::api::apps::v1::StatefulSet>,
    baseline: Result<(), Error>,
    error: Error,
) -> Error {
    let closed = adapters::reconcile(ctx, raw, ds, live, adapters::Mode::CloseOnly).await;
    if let Some(e) = closed.error {
        tracing::warn!(error = %e, "closing adapter objects while other children fail");
    }
    if matches!(error, Error::NotOwned { .. }) {
        let reason = conditions::reasons::CHILD_NOT_OWNED;
        status::report_blocked(ctx, raw, reason, reasons::CHILD_NOT_OWNED, error.to_string()).await;
    }
    baseline.err().unwrap_or(error)
}

/// A take-over that cannot go on: the condition and one Warning say why (a failed request is just retried).
async fn takeover_blocked(ctx: &Context, raw: &RawDittoServer, error: Error) -> Error {
    if let Error::TakeoverBlocked(note) = &error {
        let reason = conditions::reasons::TAKEOVER_BLOCKED;
        status::report_blocked(ctx, raw, reason, reasons::TAKEOVER_BLOCKED, note.clone()).await;
    }
    error
}

/// When to look again without a change: soon while pods terminate, in a while when referenced Secrets
/// are missing (they are not watched), when the first fresh agent report would go stale, at the latest
/// after [`RESYNC`].
fn next_look(ds: &dittofs_api::DittoServer, waiting_for_pods: bool, missing_secrets: bool) -> Duration {
    if waiting_for_pods {
        return teardown::PODS_RETRY;
    }
    let mut next = if missing_secrets { MISSING_SECRET_RETRY } else { RESYNC };
    let now = Timestamp::now();
    if let Some(stale_at) = crate::desired::adapters::next_stale_at(ds, now) {
        let until = now.duration_until(stale_at).unsigned_abs() + Duration::from_secs(1);
        next = next.min(until);
    }
    next
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_lost_term_cancels_the_reconcile_in_flight() {
        let term = CancellationToken::new();
        assert!(matches!(cancellable(&term, RECONCILE_DEADLINE, async { Ok::<_, Error>(7) }).await, Ok(7)));
        let stuck = tokio::spawn({
            let term = term.clone();
            async move { cancellable(&term, RECONCILE_DEADLINE, std::future::pending::<Result<(), Error>>()).await }
        });
        term.cancel();
        assert!(matches!(stuck.await.unwrap(), Err(Error::LeadershipLost)));
        // Once the term is over, nothing new starts, even work that would finish at once.
        let late = cancellable(&term, RECONCILE_DEADLINE, async { Ok::<_, Error>(7) }).await;
        assert!(matches!(late, Err(Error::LeadershipLost)));
    }

    #[tokio::test(start_paused = true)]
    async fn a_reconcile_that_never_ends_is_cancelled_at_its_deadline() {
        let term = CancellationToken::new();
        let stuck = cancellable(&term, RECONCILE_DEADLINE, std::future::pending::<Result<(), Error>>()).await;
        assert!(matches!(stuck, Err(Error::TimedOut(d)) if d == RECONCILE_DEADLINE), "{stuck:?}");
        assert!(!Error::TimedOut(RECONCILE_DEADLINE).is_permanent());
    }
}
