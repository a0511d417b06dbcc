//! The agent's entry in `status.agents`: built from what it knows, compared with what it last wrote, and
//! written only when something that matters changed, by server-side apply of the whole entry under the
//! pod's own field manager ([`dittofs_api::constants::agent_field_manager`]).
//!
//! The whole entry goes into every apply: a field left out of an apply is released by that manager and
//! deleted. `lastPollTime` and `traceparent` alone never cause a write (else every poll would write);
//! `lastPollTime` is refreshed whenever a write happens, `traceparent` only by a write that carries a change.

use std::{future::Future, sync::Arc, time::Duration};

use dittofs_api::{
    DittoServer,
    constants::agent_field_manager,
    crd::{AgentAdapterStatus, AgentAuth, AgentSnapshotPolicyStatus, AgentStatus, Reachability},
};
use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::{
    Resource,
    api::{Api, Patch, PatchParams},
};

use crate::{
    auth::AuthView,
    metrics::{Metrics, WriteResult},
};

/// Whether DittoFS answered the last poll, and why not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReachView {
    pub reachable: bool,
    pub reason: &'static str,
    pub message: Option<String>,
}

/// What the agent knows, for one write.
#[derive(Debug, Clone, Default)]
pub struct Observed<'a> {
    /// `None` until the first successful list: nothing is claimed before DittoFS was heard.
    pub adapters: Option<&'a [AgentAdapterStatus]>,
    pub reachability: Option<&'a ReachView>,
    pub auth: Option<&'a AuthView>,
    pub generation: Option<i64>,
    pub last_poll: Option<Timestamp>,
    /// When that poll ended, on the loop's clock (for the heartbeat; wall-clock seconds are too coarse).
    pub polled_at: Option<tokio::time::Instant>,
    pub traceparent: Option<String>,
    /// The results of spec.snapshotPolicies ([`crate::snapshots`]).
    pub snapshot_policies: &'a [AgentSnapshotPolicyStatus],
}

/// The two apiserver calls of the writer.
pub trait StatusApi: Send + Sync {
    /// Server-side apply of this pod's entry (the whole entry, forced, under the pod's field manager).
    fn apply(&self, entry: &AgentStatus) -> impl Future<Output = Result<(), kube::Error>> + Send;
    /// The DittoServer as it is now.
    fn get(&self) -> impl Future<Output = Result<DittoServer, kube::Error>> + Send;
}

/// [`StatusApi`] on the apiserver.
#[derive(Debug, Clone)]
pub struct KubeStatus {
    api: Api<DittoServer>,
    server: String,
    manager: String,
}

impl KubeStatus {
    pub fn new(client: kube::Client, namespace: &str, server: &str, pod: &str) -> KubeStatus {
        KubeStatus {
            api: Api::namespaced(client, namespace),
            server: server.to_owned(),
            manager: agent_field_manager(pod),
        }
    }
}

impl StatusApi for KubeStatus {
    async fn apply(&self, entry: &AgentStatus) -> Result<(), kube::Error> {
        let body = serde_json::json!({
            "apiVersion": DittoServer::api_version(&()),
            "kind": DittoServer::kind(&()),
            "metadata": { "name": self.server },
            "status": { "agents": [entry] },
        });
        let params = PatchParams::apply(&self.manager).force();
        self.api.patch_status(&self.server, &params, &Patch::Apply(&body)).await.map(drop)
    }

    async fn get(&self) -> Result<DittoServer, kube::Error> {
        self.api.get(&self.server).await
    }
}

/// Applies the entry and remembers the last one written.
#[derive(Debug)]
pub struct Writer<S = KubeStatus> {
    api: S,
    pod: String,
    metrics: Arc<Metrics>,
    last: Option<AgentStatus>,
    /// When `last` was written (tokio time, so paused-time tests see it move).
    written_at: Option<tokio::time::Instant>,
}

/// Kubernetes times have second precision: truncating keeps "what we wrote" equal to "what we read back".
fn k8s_time(t: Timestamp) -> Time {
    Time(Timestamp::from_second(t.as_second()).unwrap_or(t))
}

/// The entry without the fields that must not trigger a write on their own.
fn significant(entry: &AgentStatus) -> AgentStatus {
    AgentStatus { last_poll_time: None, traceparent: None, ..entry.clone() }
}

impl Writer {
    pub fn new(client: kube::Client, namespace: &str, server: &str, pod: &str, metrics: Arc<Metrics>) -> Writer {
        Writer::with_api(KubeStatus::new(client, namespace, server, pod), pod, metrics)
    }
}

impl<S: StatusApi> Writer<S> {
    pub fn with_api(api: S, pod: &str, metrics: Arc<Metrics>) -> Writer<S> {
        Writer { api, pod: pod.to_owned(), metrics, last: None, written_at: None }
    }

    /// The entry for `obs` (see [`build_entry`]).
    pub fn build(&self, obs: &Observed<'_>, now: Timestamp) -> AgentStatus {
        build_entry(&self.pod, self.last.as_ref(), obs, now)
    }

    /// Writes the entry if it differs from the last one written, or if it only has a newer poll time and
    /// the last write is `heartbeat` old (the controller's proof that this agent is alive); returns
    /// whether it wrote.
    pub async fn write_if_changed(&mut self, obs: &Observed<'_>, heartbeat: Duration) -> Result<bool, kube::Error> {
        let entry = self.build(obs, Timestamp::now());
        let same = self.last.as_ref().map(significant) == Some(significant(&entry));
        let newer_poll = obs.polled_at.is_some_and(|p| self.written_at.is_none_or(|w| p > w));
        let beat_due = self.written_at.is_none_or(|at| at.elapsed() >= heartbeat);
        if same && !(newer_poll && beat_due) {
            self.metrics.status_write(WriteResult::Skipped);
            return Ok(false);
        }
        match self.api.apply(&entry).await {
            Ok(()) => {
                self.metrics.status_write(WriteResult::Done);
                if same {
                    tracing::debug!("status entry's poll time refreshed (heartbeat)");
                } else {
                    tracing::info!(
                        adapters = %summary(&entry.adapters),
                        reachable = entry.reachability.as_ref().map(|r| r.reachable),
                        "status entry written"
                    );
                }
                self.last = Some(entry);
                self.written_at = Some(tokio::time::Instant::now());
                Ok(true)
            }
            Err(e) => {
                self.metrics.status_write(WriteResult::Failed);
                Err(e)
            }
        }
    }

    /// Whether the object's entry for this pod is what was last written (`true` before any write). A
    /// `false` means someone else changed or removed it, or the object is not up to date yet.
    pub fn matches_live(&self, live: &DittoServer) -> bool {
        let Some(last) = &self.last else { return true };
        let entry = live.status.as_ref().and_then(|s| s.agents.iter().find(|a| a.pod_name == self.pod));
        entry.is_some_and(|e| significant(e) == significant(last))
    }

    /// Reads the object now (a watch event may be older than the agent's last write) and tells whether its
    /// entry is what was last written.
    pub async fn live_matches(&self) -> Result<bool, kube::Error> {
        let live = self.api.get().await?;
        Ok(self.matches_live(&live))
    }

    /// Forgets the last write, so the next [`Self::write_if_changed`] writes.
    pub fn invalidate(&mut self) {
        self.last = None;
    }
}

/// The entry for `obs`, keeping the transition times of `prev` (the last written entry) when nothing flipped.
pub fn build_entry(pod: &str, prev: Option<&AgentStatus>, obs: &Observed<'_>, now: Timestamp) -> AgentStatus {
    let reachability = obs.reachability.map(|r| {
        let kept = prev
            .and_then(|p| p.reachability.as_ref())
            .filter(|p| p.reachable == r.reachable)
            .and_then(|p| p.last_transition_time.clone());
        Reachability {
            reachable: r.reachable,
            reason: r.reason.to_owned(),
            message: r.message.clone(),
            last_transition_time: Some(kept.unwrap_or_else(|| k8s_time(now))),
        }
    });
    let auth = obs.auth.map(|a| {
        let kept = prev
            .and_then(|p| p.auth.as_ref())
            .filter(|p| p.authenticated == a.authenticated)
            .and_then(|p| p.last_transition_time.clone());
        AgentAuth {
            authenticated: a.authenticated,
            reason: a.reason.to_owned(),
            message: Some(a.message.clone()),
            last_transition_time: Some(kept.unwrap_or_else(|| k8s_time(now))),
        }
    });
    let mut entry = AgentStatus {
        pod_name: pod.to_owned(),
        observed_generation: obs.generation,
        reachability,
        auth,
        adapters: obs.adapters.map(<[_]>::to_vec).unwrap_or_default(),
        snapshot_policies: obs.snapshot_policies.to_vec(),
        last_poll_time: obs.last_poll.map(k8s_time),
        traceparent: obs.traceparent.clone(),
    };
    // A heartbeat keeps the trace of the change it repeats: the traceparent names the poll that saw the
    // latest change, so a new one always means a change (the controller continues each such trace once).
    if let Some(prev) = prev.filter(|p| significant(p) == significant(&entry)) {
        entry.traceparent.clone_from(&prev.traceparent);
    }
    entry
}

/// `nfs:12049(serving),smb:12445(off)` for the log line.
fn summary(adapters: &[AgentAdapterStatus]) -> String {
    adapters
        .iter()
        .map(|a| format!("{}:{}({})", a.r#type, a.port, if a.is_serving() { "serving" } else { "off" }))
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transition_times_survive_unchanged_flags_and_times_have_second_precision() {
        let t = k8s_time("2026-01-01T10:00:00.9Z".parse().unwrap());
        assert_eq!(t, Time("2026-01-01T10:00:00Z".parse().unwrap()));
        let a = AgentStatus { pod_name: "p".into(), last_poll_time: Some(t.clone()), ..Default::default() };
        let b = AgentStatus { pod_name: "p".into(), traceparent: Some("00-x".into()), ..Default::default() };
        assert_eq!(significant(&a), significant(&b));
    }

    #[test]
    fn a_heartbeat_keeps_the_trace_of_the_change_it_repeats() {
        let up = ReachView { reachable: true, reason: "Reachable", message: None };
        let t0: Timestamp = "2026-01-01T10:00:00Z".parse().unwrap();
        let change = Observed { reachability: Some(&up), traceparent: Some("00-a".into()), ..Default::default() };
        let first = build_entry("p", None, &change, t0);
        let beat = Observed { traceparent: Some("00-b".into()), last_poll: Some(t0), ..change.clone() };
        let repeated = build_entry("p", Some(&first), &beat, t0);
        assert_eq!(repeated.traceparent.as_deref(), Some("00-a"), "the heartbeat names the change's poll");
        assert_eq!(repeated.last_poll_time, Some(Time(t0)));
        let down = ReachView { reachable: false, reason: "Timeout", message: None };
        let next = Observed { reachability: Some(&down), ..beat };
        assert_eq!(build_entry("p", Some(&repeated), &next, t0).traceparent.as_deref(), Some("00-b"));
    }

    #[test]
    fn flips_move_the_transition_time_and_reasons_do_not() {
        let t0: Timestamp = "2026-01-01T10:00:00Z".parse().unwrap();
        let t1: Timestamp = "2026-01-01T10:00:07Z".parse().unwrap();
        let down = ReachView { reachable: false, reason: "ConnectionRefused", message: Some("refused".into()) };
        let obs = Observed { reachability: Some(&down), ..Default::default() };
        let first = build_entry("p", None, &obs, t0);
        let timeout = ReachView { reason: "Timeout", ..down.clone() };
        let obs = Observed { reachability: Some(&timeout), ..Default::default() };
        let second = build_entry("p", Some(&first), &obs, t1);
        let r = second.reachability.unwrap();
        assert_eq!((r.reason.as_str(), r.last_transition_time), ("Timeout", Some(Time(t0))));
        let up = ReachView { reachable: true, reason: "Reachable", message: None };
        let obs = Observed { reachability: Some(&up), ..Default::default() };
        let third = build_entry("p", Some(&first), &obs, t1);
        assert_eq!(third.reachability.unwrap().last_transition_time, Some(Time(t1)));
        assert!(third.adapters.is_empty() && third.auth.is_none());
    }
}
