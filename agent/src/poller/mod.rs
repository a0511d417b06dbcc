//! The agent's loop: a fast path every `fastPathInterval` (250 ms by default), full polls on a schedule or when the fast path sees a
//! change, token refresh at 80 %, status writes on change, and the DittoServer watch (polling interval,
//! generation, and healing of an entry someone else removed).
//!
//! - Fast path: each sample reads the pod's listening ports ([`crate::listeners`], netlink, nothing asked of
//!   DittoFS); when they changed, and at least once a second, `GET /health/ready` (unauthenticated, DEBUG in
//!   DittoFS's log) gives the running adapter types. When that set changes, or DittoFS stops or starts
//!   answering, or a port the last list gave a running adapter stops listening (a port change), a full
//!   poll runs at once. An adapter switched on or off opens or closes its listener, so the sample after a
//!   toggle asks; without netlink every sample asks.
//! - Full poll: `GET /api/v1/adapters` every `spec.adapterDiscovery.pollingInterval`, earlier while a
//!   health report is stale (see [`crate::discovery`]), sooner after failures (1 s doubling up to the
//!   interval). A failed poll keeps the reported adapters and marks the entry unreachable with the reason;
//!   a successful empty list is authoritative.
//! - Heartbeat: a full poll at least every third of `spec.adapterServices.reportMaxAgeSeconds`, and the
//!   entry rewritten with its new `lastPollTime` at that pace even when nothing changed, so the controller
//!   can tell a live agent from a silent one (it does not reconcile on these writes alone).
//! - After DittoFS was unreachable, the next poll first refreshes the token: the refresh re-reads the
//!   user, so a DittoFS that came back with a fresh database is re-provisioned at once.
//! - Snapshot policies ([`crate::snapshots`]) are synced when the spec's list changes, when DittoFS comes
//!   back or its account had to be created, and on their own slow retry.
//!
//! One task does everything in turn; DittoFS is one local server, so nothing is gained by concurrency.

use std::{collections::BTreeSet, pin::Pin, sync::Arc, time::Duration};

use dittofs_api::{DittoServer, crd::AgentAdapterStatus};
use dittofs_telemetry::Health;
use futures::{Stream, StreamExt};
use jiff::Timestamp;
use kube::runtime::watcher;
use tokio::time::{Instant, sleep_until};
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use crate::{
    auth::Auth,
    backoff::Backoff,
    config::Timings,
    credentials::{SecretStore, Store},
    dittofs::{Client, DittoFs},
    events::Events,
    metrics::Metrics,
    snapshots::Snapshots,
    status::{KubeStatus, ReachView, StatusApi, Writer},
};

mod polls;
pub use self::polls::HEALTH_PERIOD;
use self::polls::{MAX_WRITE_RETRY, MIN_WRITE_RETRY};
#[cfg(test)]
mod tests;

/// The DittoServer as the watch reports it: `None` when it does not exist.
pub type ObjectEvents = Pin<Box<dyn Stream<Item = Result<watcher::Event<DittoServer>, watcher::Error>> + Send>>;

/// How long an entry that differs from what the agent wrote may stay so before it is rewritten (the
/// watch may deliver an older version of the object first).
const HEAL_DELAY: Duration = Duration::from_secs(2);

/// A third of the report's freshness limit: a healthy agent refreshes its entry three times within it.
fn heartbeat_of(spec: &dittofs_api::crd::AdapterServicesSpec) -> Duration {
    Duration::from_secs(u64::try_from(spec.report_max_age_seconds.max(30)).unwrap_or(300) / 3)
}

/// The loop's state. See the module docs.
pub struct Poller<C = Client, S = Store, W = KubeStatus> {
    client: C,
    auth: Auth<C, S>,
    writer: Writer<W>,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    timings: Timings,
    server_name: String,

    // What the agent knows.
    adapters: Option<Vec<AgentAdapterStatus>>,
    reach: Option<ReachView>,
    last_poll: Option<Timestamp>,
    /// The same moment on the loop's clock.
    polled_at: Option<Instant>,
    generation: Option<i64>,
    interval: Duration,
    /// The fast path's period: the DittoServer's `fastPathInterval`, else the agent's default.
    ready_interval: Duration,
    /// A third of `spec.adapterServices.reportMaxAgeSeconds`: the longest gap between two polls, and
    /// between two writes of the entry while polls succeed (so the controller can tell a silent agent).
    heartbeat: Duration,
    ready_types: Option<BTreeSet<String>>,
    ready_failing: bool,
    /// Running types of the last successful list, and the fast-path set a mismatch poll was done for.
    listed_running: Option<BTreeSet<String>>,
    mismatch_polled: Option<BTreeSet<String>>,
    /// The listed adapter ports found closed that a poll was done for.
    closed_polled: Option<BTreeSet<u16>>,
    /// The pod's listening ports at the last sample (`None`: unknown, e.g. no netlink).
    listening: Option<BTreeSet<u16>>,
    /// When `/health/ready` is next asked even if no listener changed (see [`polls::HEALTH_PERIOD`]).
    health_due: Instant,
    object_seen: bool,
    live: Option<DittoServer>,
    /// spec.snapshotPolicies, and the account creations it has seen (each one: a new database to check).
    snapshots: Snapshots,
    accounts_created: u64,

    // What is due when.
    started: Instant,
    next_ready: Instant,
    next_full: Instant,
    last_full: Option<Instant>,
    full_failures: u32,
    revalidate: bool,
    refresh_retry: Option<Instant>,
    write_due: Option<Instant>,
    /// Jittered: every agent of the cluster writes to the same apiserver, and they fail together.
    write_backoff: Backoff,
    written_once: bool,
    heal_at: Option<Instant>,
}

impl<C, S, W> std::fmt::Debug for Poller<C, S, W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Poller")
            .field("server", &self.server_name)
            .field("interval", &self.interval)
            .field("reach", &self.reach)
            .finish_non_exhaustive()
    }
}

impl<C: DittoFs, S: SecretStore, W: StatusApi> Poller<C, S, W> {
    pub fn new(
        client: C,
        auth: Auth<C, S>,
        writer: Writer<W>,
        metrics: Arc<Metrics>,
        health: Arc<Health>,
        timings: Timings,
        server_name: String,
    ) -> Poller<C, S, W> {
        let now = Instant::now();
        Poller {
            client,
            auth,
            writer,
            metrics,
            health,
            server_name,
            adapters: None,
            reach: None,
            last_poll: None,
            polled_at: None,
            generation: None,
            interval: Duration::from_secs(30),
            ready_interval: timings.ready_interval,
            heartbeat: heartbeat_of(&dittofs_api::crd::AdapterServicesSpec::default()),
            ready_types: None,
            ready_failing: false,
            listed_running: None,
            mismatch_polled: None,
            closed_polled: None,
            listening: None,
            health_due: now,
            object_seen: false,
            live: None,
            snapshots: Snapshots::new("", timings.snapshot_retry, Events::none()),
            accounts_created: 0,
            started: now,
            next_ready: now,
            next_full: now,
            last_full: None,
            full_failures: 0,
            revalidate: false,
            refresh_retry: None,
            write_due: None,
            write_backoff: Backoff::new(MIN_WRITE_RETRY, MAX_WRITE_RETRY),
            written_once: false,
            heal_at: None,
            timings,
        }
    }

    /// Applies spec.snapshotPolicies with `snapshots` (by default they are followed without Events and without
    /// the policies the agent wrote before it started).
    pub fn with_snapshots(mut self, snapshots: Snapshots) -> Self {
        self.snapshots = snapshots;
        self
    }

    /// Runs until `shutdown` is cancelled. Requests in flight are abandoned at once on shutdown.
    pub async fn run(mut self, mut objects: ObjectEvents, shutdown: CancellationToken) {
        // Ready = initialized. Not tied to DittoFS or the apiserver: a sidecar's readiness gates the whole
        // pod, and an apiserver outage must not take DittoFS out of its Services.
        self.health.set_ready(true);
        // The first status write carries the object's generation: give the watch a moment to deliver it.
        let first_wait = sleep_until(self.started + self.timings.first_object_wait);
        tokio::pin!(first_wait);
        while !self.object_seen {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = &mut first_wait => break,
                event = objects.next() => match event {
                    Some(event) => self.on_object_event(event),
                    None => break,
                },
            }
        }
        let mut objects_open = true;
        loop {
            let due = self.next_deadline();
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                event = objects.next(), if objects_open => match event {
                    Some(event) => self.on_object_event(event),
                    None => objects_open = false,
                },
                _ = sleep_until(due) => {
                    if shutdown.run_until_cancelled(self.on_timer()).await.is_none() {
                        break;
                    }
                }
            }
        }
        tracing::info!(dittofs_info_requests = self.metrics.info_requests(), "agent stopped");
    }

    fn next_deadline(&self) -> Instant {
        let mut due = self.next_ready.min(self.next_full);
        if let Some(refresh) = self.refresh_due() {
            due = due.min(refresh);
        }
        for at in [self.write_due, self.heal_at, self.snapshots.due()].into_iter().flatten() {
            due = due.min(at);
        }
        due
    }

    fn refresh_due(&self) -> Option<Instant> {
        let at = Instant::now() + self.auth.refresh_in()?;
        Some(match (self.refresh_retry, self.auth.backoff_until()) {
            (Some(r), b) => at.max(r).max(b.unwrap_or(r)),
            (None, Some(b)) => at.max(b),
            (None, None) => at,
        })
    }

    async fn on_timer(&mut self) {
        let now = Instant::now();
        if self.refresh_due().is_some_and(|at| at <= now) {
            self.refresh_tokens().await;
        }
        if self.next_full <= now {
            self.full_poll().await;
        } else if self.next_ready <= now {
            self.fast_path().await;
        }
        if self.heal_at.is_some_and(|at| at <= Instant::now()) {
            self.heal_at = None;
            let cached_differs = self.live.as_ref().is_some_and(|live| !self.writer.matches_live(live));
            // Confirm with a read: the watch may simply not have delivered the agent's own write yet.
            if cached_differs && !self.writer.live_matches().await.unwrap_or(true) {
                tracing::info!("status entry differs from the last one written; writing it again");
                self.writer.invalidate();
                self.write_due = Some(Instant::now());
            }
        }
        if self.auth.accounts_created() != self.accounts_created {
            self.accounts_created = self.auth.accounts_created();
            self.snapshots.recheck();
        }
        if self.snapshots.due().is_some_and(|at| at <= Instant::now()) {
            let span = tracing::info_span!("dittofs.snapshot_policies");
            self.snapshots.sync(&self.client, &mut self.auth).instrument(span.clone()).await;
            let traceparent = span.in_scope(dittofs_telemetry::trace::current_traceparent);
            self.write_status(traceparent).instrument(span).await;
        }
        if self.write_due.is_some_and(|at| at <= Instant::now()) {
            // A deferred write (retry, generation change, heal) is its own trace.
            let span = tracing::info_span!("status.deferred_write");
            let traceparent = span.in_scope(dittofs_telemetry::trace::current_traceparent);
            self.write_status(traceparent).instrument(span).await;
        }
    }

    fn on_object_event(&mut self, event: Result<watcher::Event<DittoServer>, watcher::Error>) {
        match event {
            Ok(watcher::Event::Apply(obj) | watcher::Event::InitApply(obj)) => self.on_object(obj),
            Ok(watcher::Event::Delete(_)) => {
                tracing::info!(server = self.server_name, "the DittoServer was deleted");
                self.live = None;
            }
            Ok(watcher::Event::Init | watcher::Event::InitDone) => {}
            Err(e) => tracing::warn!(error = %e, "watch of the DittoServer failed; retrying"),
        }
    }

    fn on_object(&mut self, obj: DittoServer) {
        self.object_seen = true;
        self.auth.regarding(&obj);
        self.snapshots.on_object(&obj);
        self.heartbeat = heartbeat_of(&obj.spec.adapter_services);
        let interval = obj.spec.polling_interval();
        if interval != self.interval {
            tracing::info!(?interval, "polling interval");
            // Takes effect at once: the next poll is due one new interval after the last one, unless a
            // poll was already brought forward (a retry, a recheck, a change seen by the fast path).
            let base = self.last_full.unwrap_or(self.started);
            let scheduled = (base + interval).max(Instant::now());
            let brought_forward = self.next_full < base + self.interval;
            self.interval = interval;
            self.next_full = if brought_forward { self.next_full.min(scheduled) } else { scheduled };
        }
        let ready_interval = obj.spec.fast_path_interval().unwrap_or(self.timings.ready_interval);
        if ready_interval != self.ready_interval {
            tracing::info!(?ready_interval, "fast-path period");
            // A shorter period takes effect at once, a longer one after the sample already scheduled.
            self.next_ready = self.next_ready.min(Instant::now() + ready_interval);
            self.ready_interval = ready_interval;
        }
        if obj.metadata.generation != self.generation {
            self.generation = obj.metadata.generation;
            if self.written_once {
                self.write_due = Some(Instant::now());
            }
        }
        if !self.writer.matches_live(&obj) && self.heal_at.is_none() {
            self.heal_at = Some(Instant::now() + HEAL_DELAY);
        }
        self.live = Some(obj);
    }
}
