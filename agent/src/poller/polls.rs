//! The loop's steps: the fast path, full polls (with the token renewal they may need), the 80 % token
//! refresh, and status writes with their retry.

use std::{collections::BTreeSet, time::Duration};

use jiff::Timestamp;
use tokio::time::Instant;
use tracing::Instrument as _;

use super::Poller;
use crate::{
    credentials::SecretStore,
    discovery,
    dittofs::{ApiAdapter, ApiError, DittoFs},
    error::PollError,
    metrics::PollKind,
    status::{Observed, ReachView, StatusApi},
    text::truncate_chars,
};

/// First retry delay of a failed status write; doubling, with jitter, up to [`MAX_WRITE_RETRY`].
pub(super) const MIN_WRITE_RETRY: Duration = Duration::from_millis(500);
/// Longest retry delay of a failed status write.
pub(super) const MAX_WRITE_RETRY: Duration = Duration::from_secs(30);

/// The longest time between two `/health/ready` requests of the fast path while the pod's listeners stay as
/// they were. An adapter switched on or off opens or closes its listener, and a port change closes the old
/// one, so a sample whose listeners did not change has nothing to ask DittoFS; the request still goes once a
/// second, for what listeners do not show (an adapter DittoFS runs without a listener, a DittoFS that hangs).
pub const HEALTH_PERIOD: Duration = Duration::from_secs(1);

impl<C: DittoFs, S: SecretStore, W: StatusApi> Poller<C, S, W> {
    /// One sample: the pod's listeners (netlink, no request to DittoFS), and `/health/ready` when they
    /// changed, when they cannot be read, while DittoFS fails, or [`HEALTH_PERIOD`] after the last one. Only
    /// looks, never writes; a change or an outage edge asks for a full poll.
    pub(super) async fn fast_path(&mut self) {
        let started = Instant::now();
        self.next_ready = started + self.ready_interval;
        let listening = self.client.listening_ports();
        let changed = listening.is_none() || listening != self.listening;
        self.listening = listening;
        if !changed && !self.ready_failing && started < self.health_due {
            return;
        }
        self.health_due = started + HEALTH_PERIOD;
        match self.client.health_ready().await {
            Ok(types) => {
                self.metrics.poll(PollKind::Ready, "ok", started.elapsed());
                let recovered = std::mem::replace(&mut self.ready_failing, false);
                let previous = self.ready_types.replace(types);
                if recovered {
                    tracing::info!("DittoFS answers again");
                    self.revalidate = true;
                    // It may have restarted with another database: what was applied may be gone.
                    self.snapshots.recheck();
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
                } else {
                    self.check_adapter_ports();
                }
            }
            Err(e) => {
                self.metrics.poll(PollKind::Ready, e.label(), started.elapsed());
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

    /// Polls when a port the last list gave a running adapter no longer listens: DittoFS closes an adapter's
    /// listener when a PUT moves it to another port, which `/health/ready` does not show
    /// ([`crate::listeners`]). Once per set of closed ports, so a port that never listens (a failed bind)
    /// cannot turn into a poll per sample.
    fn check_adapter_ports(&mut self) {
        let expected: BTreeSet<u16> = (self.adapters.iter().flatten())
            .filter(|a| a.running)
            .filter_map(|a| u16::try_from(a.port).ok().filter(|p| *p > 0))
            .collect();
        let closed = crate::listeners::closed(&expected, self.listening.as_ref());
        if closed.is_empty() {
            self.closed_polled = None;
        } else if self.closed_polled.as_ref() != Some(&closed) {
            tracing::debug!(?closed, "a listed adapter port no longer listens");
            self.closed_polled = Some(closed);
            self.poll_soon("adapter_port_closed");
        }
    }

    /// Schedules a full poll now, but not closer than `min_poll_gap` to the previous one.
    pub(super) fn poll_soon(&mut self, why: &'static str) {
        let earliest = self.last_full.map_or_else(Instant::now, |at| at + self.timings.min_poll_gap);
        let at = earliest.max(Instant::now());
        if at < self.next_full {
            tracing::debug!(why, "full poll brought forward");
            self.next_full = at;
        }
    }

    pub(super) async fn full_poll(&mut self) {
        let span = tracing::info_span!(
            "dittofs.poll",
            server = %self.server_name,
            result = tracing::field::Empty,
            running = tracing::field::Empty,
        );
        let started = Instant::now();
        self.last_full = Some(started);
        let result = self.list().instrument(span.clone()).await;
        match result {
            Ok(list) => {
                span.record("result", "ok");
                self.metrics.poll(PollKind::Full, "ok", started.elapsed());
                self.full_failures = 0;
                let report = discovery::report(&list);
                if report.dropped > 0 {
                    tracing::warn!(dropped = report.dropped, "DittoFS reports more adapters than the status holds");
                }
                self.metrics.full_poll_succeeded(report.adapters.len());
                let running = report.running_types();
                span.record("running", tracing::field::debug(&running));
                if self.ready_types.as_ref() == Some(&running) {
                    self.mismatch_polled = None;
                }
                self.listed_running = Some(running);
                self.adapters = Some(report.adapters);
                self.set_reach(ReachView { reachable: true, reason: "Reachable", message: None });
                self.last_poll = Some(Timestamp::now());
                self.polled_at = Some(Instant::now());
                self.auth_confirmed();
                let mut next = started + self.interval.min(self.heartbeat);
                if let Some(recheck) = discovery::recheck_after(&list, Timestamp::now()) {
                    next = next.min(Instant::now() + recheck);
                }
                self.next_full = next;
            }
            Err(e) => {
                span.record("result", e.label());
                self.metrics.poll(PollKind::Full, e.label(), started.elapsed());
                self.full_failures = self.full_failures.saturating_add(1);
                tracing::warn!(error = %e, "adapter poll failed; reported adapters kept");
                self.set_reach(ReachView {
                    reachable: false,
                    reason: e.reachability_reason(),
                    message: Some(truncate_chars(&poll_message(&e), 1024)),
                });
                // Not jittered: one agent polls its own DittoFS, there is no crowd to spread out, and
                // the fast path notices a recovery within a second whatever this delay is.
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

    /// Token, list; on 401 renew the token once and list again; on 403 log in afresh (which shows and
    /// repairs the account's role) once and list again. A refresh first if DittoFS was away.
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
            Err(ApiError::Forbidden(detail)) => {
                let Some(token) = self.auth.token_forbidden().await? else {
                    return Err(ApiError::Forbidden(detail).into());
                };
                tracing::info!(detail, "DittoFS refused the adapter list; listing again after a fresh login");
                Ok(self.client.list_adapters(&token).await?)
            }
            other => Ok(other?),
        }
    }

    pub(super) async fn refresh_tokens(&mut self) {
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
    pub(super) async fn write_status(&mut self, traceparent: Option<String>) {
        self.write_status_inner(traceparent).instrument(tracing::info_span!("status.write")).await;
    }

    async fn write_status_inner(&mut self, traceparent: Option<String>) {
        let snapshot_policies = self.snapshots.report();
        let obs = Observed {
            snapshot_policies: &snapshot_policies,
            adapters: self.adapters.as_deref(),
            reachability: self.reach.as_ref(),
            auth: self.auth.view(),
            generation: self.generation,
            last_poll: self.last_poll,
            polled_at: self.polled_at,
            traceparent,
        };
        if obs.reachability.is_none() && obs.auth.is_none() && obs.adapters.is_none() && snapshot_policies.is_empty() {
            return; // Nothing known yet.
        }
        match self.writer.write_if_changed(&obs, self.heartbeat).await {
            Ok(_) => {
                self.write_due = None;
                self.write_backoff.reset();
                self.written_once = true;
            }
            Err(e) => {
                let delay = self.write_backoff.next_delay();
                tracing::warn!(error = %e, retry_in = ?delay, "cannot write the status entry");
                self.write_due = Some(Instant::now() + delay);
            }
        }
    }
}

/// The message of a failed poll, without a back-off countdown (which would change at every poll).
fn poll_message(e: &PollError) -> String {
    match e {
        PollError::Auth(a) => a.root().to_string(),
        PollError::Api(a) => a.to_string(),
    }
}
