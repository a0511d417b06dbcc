//! The agent's loop: a fast path every second, full polls on a schedule or when the fast path sees a
//! change, token refresh at 80 %, status writes on change, and the DittoServer watch (polling interval,
//! generation, and healing of an entry someone else removed).
//!
//! - Fast path: `GET /health/ready` (unauthenticated, DEBUG in DittoFS's log) gives the running adapter
//!   types. When that set changes, or DittoFS stops or starts answering, a full poll runs at once.
//! - Full poll: `GET /api/v1/adapters` every `spec.adapterDiscovery.pollingInterval`, earlier while a
//!   health report is stale (see [`crate::discovery`]), sooner after failures (1 s doubling up to the
//!   interval). A failed poll keeps the reported adapters and marks the entry unreachable with the reason;
//!   a successful empty list is authoritative.
//! - After DittoFS was unreachable, the next poll first refreshes the token: the refresh re-reads the
//!   user, so a DittoFS that came back with a fresh database is re-provisioned at once.
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
    config::Timings,
    discovery,
    dittofs::{ApiAdapter, ApiError, Client},
    error::PollError,
    metrics::{Metrics, PollKind},
    status::{Observed, ReachView, Writer},
};

/// The DittoServer as the watch reports it: `None` when it does not exist.
pub type ObjectEvents = Pin<Box<dyn Stream<Item = Result<watcher::Event<DittoServer>, watcher::Error>> + Send>>;

/// How long an entry that differs from what the agent wrote may stay so before it is rewritten (the
/// watch may deliver an older version of the object first).
const HEAL_DELAY: Duration = Duration::from_secs(2);

/// Retry delay of a failed status write (doubling up to this).
const MAX_WRITE_RETRY: Duration = Duration::from_secs(30);

/// The loop's state. See the module docs.
pub struct Poller {
    client: Client,
    auth: Auth,
    writer: Writer,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    timings: Timings,
    server_name: String,

    // What the agent knows.
    adapters: Option<Vec<AgentAdapterStatus>>,
    reach: Option<ReachView>,
    last_poll: Option<Timestamp>,
    generation: Option<i64>,
    interval: Duration,
    ready_types: Option<BTreeSet<String>>,
    ready_failing: bool,
    /// Running types of the last successful list, and the fast-path set a mismatch poll was done for.
    listed_running: Option<BTreeSet<String>>,
    mismatch_polled: Option<BTreeSet<String>>,
    object_seen: bool,
    live: Option<DittoServer>,

    // What is due when.
    started: Instant,
    next_ready: Instant,
    next_full: Instant,
    last_full: Option<Instant>,
    full_failures: u32,
    revalidate: bool,
    refresh_retry: Option<Instant>,
    write_due: Option<Instant>,
    write_failures: u32,
    written_once: bool,
    heal_at: Option<Instant>,
}

impl std::fmt::Debug for Poller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Poller")
            .field("server", &self.server_name)
            .field("interval", &self.interval)
            .field("reach", &self.reach)
            .finish_non_exhaustive()
    }
}

impl Poller {
    pub fn new(
        client: Client,
        auth: Auth,
        writer: Writer,
        metrics: Arc<Metrics>,
        health: Arc<Health>,
        timings: Timings,
        server_name: String,
    ) -> Poller {
        let now = Instant::now();
        Poller {
            client,
            auth,
            writer,
            metrics,
            health,
            timings,
            server_name,
            adapters: None,
            reach: None,
            last_poll: None,
            generation: None,
            interval: Duration::from_secs(30),
            ready_types: None,
            ready_failing: false,
            listed_running: None,
            mismatch_polled: None,
            object_seen: false,
            live: None,
            started: now,
            next_ready: now,
            next_full: now,
            last_full: None,
            full_failures: 0,
            revalidate: false,
            refresh_retry: None,
            write_due: None,
            write_failures: 0,
            written_once: false,
            heal_at: None,
        }
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
        for at in [self.write_due, self.heal_at].into_iter().flatten() {
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
        if self.write_due.is_some_and(|at| at <= Instant::now()) {
            // A deferred write (retry, generation change, heal) is its own trace.
            let span = tracing::info_span!("status.deferred_write");
            let traceparent = span.in_scope(dittofs_telemetry::trace::current_traceparent);
            self.write_status(traceparent).instrument(span).await;
        }
    }

    /// `/health/ready`: only looks, never writes; a change or an outage edge asks for a full poll.
    async fn fast_path(&mut self) {
        self.next_ready = Instant::now() + self.timings.ready_interval;
        match self.client.health_ready().await {
            Ok(types) => {
                self.metrics.poll(PollKind::Ready, "ok");
                let recovered = std::mem::replace(&mut self.ready_failing, false);
                let previous = self.ready_types.replace(types);
                if recovered {
                    tracing::info!("DittoFS answers again");
                    self.revalidate = true;
                    self.poll_soon("dittofs_back");
                } else if previous.is_some() && previous != self.ready_types {
                    tracing::debug!(types = ?self.ready_types, "running adapters changed");
                    self.poll_soon("adapters_changed");
                } else if let (Some(listed), Some(now)) = (&self.listed_running, &self.ready_types)
                    && listed != now
                    && self.mismatch_polled.as_ref() != Some(now)
                {
                    // The last list saw another running set than DittoFS has now, although the fast path
                    // saw no change: a toggle and its undo fell between two fast-path samples while a
                    // list ran in between. Poll once for this set (not again while it persists, so a
                    // lasting disagreement cannot turn into a poll per second).
                    tracing::debug!(?listed, ?now, "running adapters differ from the last list");
                    self.mismatch_polled = Some(now.clone());
                    self.poll_soon("adapters_differ");
                }
            }
            Err(e) => {
                self.metrics.poll(PollKind::Ready, e.label());
                if e.is_transport() && !self.ready_failing {
                    tracing::info!(error = %e, "DittoFS does not answer /health/ready");
                    self.ready_failing = true;
                    self.poll_soon("dittofs_silent");
                } else {
                    tracing::debug!(error = %e, "fast path failed");
                }
            }
        }
    }

    /// Schedules a full poll now, but not closer than `min_poll_gap` to the previous one.
    fn poll_soon(&mut self, why: &'static str) {
        let earliest = self.last_full.map_or_else(Instant::now, |at| at + self.timings.min_poll_gap);
        let at = earliest.max(Instant::now());
        if at < self.next_full {
            tracing::debug!(why, "full poll brought forward");
            self.next_full = at;
        }
    }

    async fn full_poll(&mut self) {
        let span = tracing::info_span!("dittofs.poll", result = tracing::field::Empty);
        let started = Instant::now();
        self.last_full = Some(started);
        let result = self.list().instrument(span.clone()).await;
        match result {
            Ok(list) => {
                span.record("result", "ok");
                self.metrics.poll(PollKind::Full, "ok");
                self.full_failures = 0;
                let report = discovery::report(&list);
                if report.dropped > 0 {
                    tracing::warn!(dropped = report.dropped, "DittoFS reports more adapters than the status holds");
                }
                self.metrics.full_poll_succeeded(started.elapsed(), report.adapters.len());
                let running = report.running_types();
                if self.ready_types.as_ref() == Some(&running) {
                    self.mismatch_polled = None;
                }
                self.listed_running = Some(running);
                self.adapters = Some(report.adapters);
                self.set_reach(ReachView { reachable: true, reason: "Reachable", message: None });
                self.last_poll = Some(Timestamp::now());
                self.auth_confirmed();
                let mut next = started + self.interval;
                if let Some(recheck) = discovery::recheck_after(&list, Timestamp::now()) {
                    next = next.min(Instant::now() + recheck);
                }
                self.next_full = next;
            }
            Err(e) => {
                span.record("result", e.label());
                self.metrics.poll(PollKind::Full, e.label());
                self.full_failures = self.full_failures.saturating_add(1);
                tracing::warn!(error = %e, "adapter poll failed; reported adapters kept");
                self.set_reach(ReachView {
                    reachable: false,
                    reason: e.reachability_reason(),
                    message: Some(crate::dittofs::truncate_chars(&poll_message(&e), 1024)),
                });
                let factor = 2u32.saturating_pow(self.full_failures.saturating_sub(1).min(16));
                let mut retry = Duration::from_secs(1).saturating_mul(factor).min(self.interval);
                if let Some(until) = self.auth.backoff_until() {
                    retry = retry.max(until.saturating_duration_since(Instant::now()));
                }
                self.next_full = Instant::now() + retry;
            }
        }
        // The writer compares with what it last wrote: unchanged polls count as skipped writes.
        let traceparent = span.in_scope(dittofs_telemetry::trace::current_traceparent);
        self.write_status(traceparent).instrument(span).await;
    }

    /// Token, list; on 401 renew the token once and list again. A refresh first if DittoFS was away.
    async fn list(&mut self) -> Result<Vec<ApiAdapter>, PollError> {
        if std::mem::take(&mut self.revalidate) && self.auth.refresh_in().is_some() {
            // Errors surface through token() below if the account really is unusable.
            let _ = self.auth.refresh_now().await;
        }
        let token = self.auth.token().await?;
        match self.client.list_adapters(&token).await {
            Err(ApiError::Unauthorized(detail)) => {
                tracing::info!(detail, "DittoFS refused the access token; renewing it");
                let token = self.auth.token_rejected().await?;
                Ok(self.client.list_adapters(&token).await?)
            }
            other => Ok(other?),
        }
    }

    async fn refresh_tokens(&mut self) {
        let span = tracing::info_span!("dittofs.token_refresh");
        match self.auth.refresh_now().instrument(span.clone()).await {
            Ok(()) => self.refresh_retry = None,
            Err(e) => {
                tracing::warn!(error = %e, "token refresh failed");
                self.refresh_retry = Some(Instant::now() + Duration::from_secs(2));
            }
        }
        // Written only if the authentication state changed.
        let traceparent = span.in_scope(dittofs_telemetry::trace::current_traceparent);
        self.write_status(traceparent).instrument(span).await;
    }

    fn auth_confirmed(&mut self) {
        // A successful list proves the token works (e.g. a pair reused from the Secret).
        self.auth.confirm();
    }

    fn set_reach(&mut self, view: ReachView) {
        self.metrics.set_reachable(view.reachable);
        self.reach = Some(view);
    }

    /// Writes the entry if it changed; retries with back-off when the apiserver refuses. `traceparent` is
    /// the trace of the step that saw the change; the write is a child span of it.
    async fn write_status(&mut self, traceparent: Option<String>) {
        self.write_status_inner(traceparent).instrument(tracing::info_span!("status.write")).await;
    }

    async fn write_status_inner(&mut self, traceparent: Option<String>) {
        let obs = Observed {
            adapters: self.adapters.as_deref(),
            reachability: self.reach.as_ref(),
            auth: self.auth.view(),
            generation: self.generation,
            last_poll: self.last_poll,
            traceparent,
        };
        if obs.reachability.is_none() && obs.auth.is_none() && obs.adapters.is_none() {
            return; // Nothing known yet.
        }
        match self.writer.write_if_changed(&obs).await {
            Ok(_) => {
                self.write_due = None;
                self.write_failures = 0;
                self.written_once = true;
            }
            Err(e) => {
                self.write_failures = self.write_failures.saturating_add(1);
                let factor = 2u32.saturating_pow(self.write_failures.saturating_sub(1).min(16));
                let delay = Duration::from_millis(500).saturating_mul(factor).min(MAX_WRITE_RETRY);
                tracing::warn!(error = %e, retry_in = ?delay, "cannot write the status entry");
                self.write_due = Some(Instant::now() + delay);
            }
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

/// The message of a failed poll, without a back-off countdown (which would change at every poll).
fn poll_message(e: &PollError) -> String {
    match e {
        PollError::Auth(a) => a.root().to_string(),
        PollError::Api(a) => a.to_string(),
    }
}
