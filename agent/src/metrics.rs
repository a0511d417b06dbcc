//! The agent's Prometheus metrics (prefix `dittofs_agent_`): polls, their latency and last success, status
//! and Secret writes done or skipped, authentication steps, and every request to DittoFS by endpoint — with
//! the ones DittoFS logs at INFO counted apart, because each of those is a line in DittoFS's log.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::{Registry, Unit},
};

use crate::{
    dittofs::{Endpoint, Observer},
    error::POLL_FAILURE_LABELS,
};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    endpoint: &'static str,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EndpointLabels {
    endpoint: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PollLabels {
    /// `full` (the adapter list) or `ready` (the `/health/ready` fast path).
    kind: &'static str,
    /// `ok` or the error label.
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    /// `full` or `ready`, as in [`PollLabels`].
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AuthLabels {
    step: &'static str,
    result: &'static str,
}

/// Kind of poll, for [`Metrics::poll`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PollKind {
    Full,
    Ready,
}

impl PollKind {
    fn as_str(self) -> &'static str {
        match self {
            PollKind::Full => "full",
            PollKind::Ready => "ready",
        }
    }
}

/// Outcome of a status or Secret write, for [`Metrics::status_write`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteResult {
    /// Written.
    Done,
    /// Nothing changed, so nothing was written.
    Skipped,
    /// The apiserver refused or could not be reached.
    Failed,
}

impl WriteResult {
    fn as_str(self) -> &'static str {
        match self {
            WriteResult::Done => "done",
            WriteResult::Skipped => "skipped",
            WriteResult::Failed => "failed",
        }
    }
}

/// All metrics; cheap to clone (every metric is shared).
#[derive(Debug, Clone)]
pub struct Metrics {
    requests: Family<RequestLabels, Counter>,
    request_duration: Family<EndpointLabels, Histogram>,
    info_requests: Counter,
    polls: Family<PollLabels, Counter>,
    poll_duration: Family<KindLabels, Histogram>,
    last_success: Gauge<f64, std::sync::atomic::AtomicU64>,
    reachable: Gauge,
    adapters: Gauge,
    status_writes: Family<ResultLabels, Counter>,
    secret_writes: Family<ResultLabels, Counter>,
    auth: Family<AuthLabels, Counter>,
}

fn latency_histogram() -> Histogram {
    Histogram::new([0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0])
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            requests: Family::default(),
            request_duration: Family::new_with_constructor(latency_histogram),
            info_requests: Counter::default(),
            polls: Family::default(),
            poll_duration: Family::new_with_constructor(latency_histogram),
            last_success: Gauge::default(),
            reachable: Gauge::default(),
            adapters: Gauge::default(),
            status_writes: Family::default(),
            secret_writes: Family::default(),
            auth: Family::default(),
        }
    }
}

impl Metrics {
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers every metric under the `dittofs_agent` prefix.
    pub fn register(&self, registry: &mut Registry) {
        let r = registry.sub_registry_with_prefix("dittofs_agent");
        r.register("dittofs_requests", "Requests to DittoFS by endpoint and outcome", self.requests.clone());
        r.register_with_unit(
            "dittofs_request_duration",
            "Latency of requests to DittoFS",
            Unit::Seconds,
            self.request_duration.clone(),
        );
        r.register(
            "dittofs_info_requests",
            "Requests DittoFS logs at INFO (all but /health*): one line each in its log",
            self.info_requests.clone(),
        );
        r.register("polls", "Polls of DittoFS: full (adapter list) and ready (fast path)", self.polls.clone());
        r.register_with_unit(
            "poll_duration",
            "Latency of polls, failed ones too: full (authentication included) and ready",
            Unit::Seconds,
            self.poll_duration.clone(),
        );
        r.register(
            "last_successful_poll_timestamp_seconds",
            "Unix time of the last successful adapter list",
            self.last_success.clone(),
        );
        r.register("dittofs_reachable", "1 when the last adapter poll succeeded", self.reachable.clone());
        r.register("adapters_reported", "Adapters in the agent's status entry", self.adapters.clone());
        r.register(
            "status_writes",
            "Status entry writes: done, skipped (unchanged) or failed",
            self.status_writes.clone(),
        );
        r.register("secret_writes", "Writes of the token pair into the credentials Secret", self.secret_writes.clone());
        r.register(
            "auth_steps",
            "Authentication steps (reuse, login, refresh, admin_login, provision, role_repair) by result",
            self.auth.clone(),
        );
    }

    /// One poll of `kind` that ended with `result` (`ok` or the error label) after `took`.
    pub(crate) fn poll(&self, kind: PollKind, result: &'static str, took: Duration) {
        self.polls.get_or_create(&PollLabels { kind: kind.as_str(), result }).inc();
        self.poll_duration.get_or_create(&KindLabels { kind: kind.as_str() }).observe(took.as_secs_f64());
    }

    pub(crate) fn full_poll_succeeded(&self, adapters: usize) {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        self.last_success.set(now.as_secs_f64());
        self.adapters.set(adapters as i64);
    }

    pub(crate) fn set_reachable(&self, reachable: bool) {
        self.reachable.set(i64::from(reachable));
    }

    pub(crate) fn status_write(&self, result: WriteResult) {
        self.status_writes.get_or_create(&ResultLabels { result: result.as_str() }).inc();
    }

    pub(crate) fn secret_write(&self, result: WriteResult) {
        self.secret_writes.get_or_create(&ResultLabels { result: result.as_str() }).inc();
    }

    pub(crate) fn auth_step(&self, step: &'static str, result: &'static str) {
        self.auth.get_or_create(&AuthLabels { step, result }).inc();
    }

    // Readers, for tests and the shutdown summary.

    /// Requests DittoFS logged at INFO.
    pub fn info_requests(&self) -> u64 {
        self.info_requests.get()
    }

    /// Requests to one endpoint with one outcome (`ok`, `unauthorized`, `refused`, …).
    pub fn requests(&self, endpoint: Endpoint, outcome: &'static str) -> u64 {
        self.requests.get_or_create(&RequestLabels { endpoint: endpoint.as_str(), outcome }).get()
    }

    /// Polls of a kind with a result (`ok` or an error label).
    pub fn polls(&self, kind: PollKind, result: &'static str) -> u64 {
        self.polls.get_or_create(&PollLabels { kind: kind.as_str(), result }).get()
    }

    /// Failed full polls, every reason together.
    pub fn failed_full_polls(&self) -> u64 {
        POLL_FAILURE_LABELS.iter().map(|l| self.polls(PollKind::Full, l)).sum()
    }

    pub fn status_writes(&self, result: WriteResult) -> u64 {
        self.status_writes.get_or_create(&ResultLabels { result: result.as_str() }).get()
    }

    pub fn secret_writes(&self, result: WriteResult) -> u64 {
        self.secret_writes.get_or_create(&ResultLabels { result: result.as_str() }).get()
    }

    pub fn auth_steps(&self, step: &'static str, result: &'static str) -> u64 {
        self.auth.get_or_create(&AuthLabels { step, result }).get()
    }
}

impl Observer for Metrics {
    fn request(&self, endpoint: Endpoint, outcome: &'static str, took: Duration) {
        self.requests.get_or_create(&RequestLabels { endpoint: endpoint.as_str(), outcome }).inc();
        self.request_duration
            .get_or_create(&EndpointLabels { endpoint: endpoint.as_str() })
            .observe(took.as_secs_f64());
        // A request that got no HTTP answer never reached DittoFS's logger.
        let answered = !matches!(outcome, "refused" | "timeout" | "transport");
        if endpoint.logs_at_info() && answered {
            self.info_requests.inc();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_with_prefix_and_counts_info_requests() {
        let m = Metrics::new();
        let mut registry = Registry::default();
        m.register(&mut registry);
        m.request(Endpoint::HealthReady, "ok", Duration::from_millis(1));
        m.request(Endpoint::ListAdapters, "ok", Duration::from_millis(2));
        m.request(Endpoint::ListAdapters, "refused", Duration::from_millis(2));
        m.status_write(WriteResult::Skipped);
        m.poll(PollKind::Ready, "refused", Duration::from_millis(3));
        assert_eq!(m.info_requests(), 1, "health is DEBUG, a refused connection is never logged");
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        assert!(text.contains("dittofs_agent_dittofs_info_requests_total 1"), "{text}");
        assert!(text.contains(r#"dittofs_agent_status_writes_total{result="skipped"} 1"#), "{text}");
        assert!(text.contains(r#"dittofs_agent_polls_total{kind="ready",result="refused"} 1"#), "{text}");
        assert!(
            text.contains(r#"dittofs_agent_poll_duration_seconds_count{kind="ready"} 1"#),
            "failed polls are timed too: {text}"
        );
    }
}
