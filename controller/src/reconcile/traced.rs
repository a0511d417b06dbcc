//! Which trace a reconcile joins: the agent's poll that saw the change the reconcile answers, so one trace
//! holds DittoFS change → agent poll → status apply → this reconcile → the Service, NetworkPolicy and port
//! writes.
//!
//! An agent entry's `traceparent` names the poll that saw its latest change (a heartbeat keeps it), so a
//! traceparent this controller has not answered yet is a change waiting for it. Each is continued once: the
//! reconcile span becomes its child and links to it. The first look at a server only records what is there —
//! after a restart or a leader hand-over the entries name changes answered long ago, and continuing them would
//! hang unrelated work under old traces. The status is written by agents, so it is untrusted: only a
//! well-formed traceparent of at most [`MAX_AGENTS`] entries is read.
//!
//! The span also says how long the server's watch event waited for it (`queued_us`): with the agent's spans
//! that gives every stage of a change its time (the bench reads them from Jaeger).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use kube::ResourceExt;
use kube::runtime::reflector::ObjectRef;
use serde_json::Value;

use dittofs_telemetry::trace::{SpanContext, continue_trace, parse_traceparent};

use crate::raw::RawDittoServer;

/// How many agent entries are looked at (the CRD allows no more).
pub const MAX_AGENTS: usize = 16;

/// The traceparents of the agent entries `agents` (`status.agents`), in entry order (well-formed ones only).
pub fn agent_traceparents(agents: Option<&Value>) -> Vec<String> {
    let agents = agents.and_then(Value::as_array);
    let traceparents = agents.into_iter().flatten().take(MAX_AGENTS).filter_map(|a| a.get("traceparent")?.as_str());
    traceparents.filter(|tp| parse_traceparent(tp).is_some()).map(str::to_owned).collect()
}

/// What this controller has answered, per server (for one leadership term).
#[derive(Debug, Default)]
pub struct Traces {
    answered: Mutex<HashMap<ObjectRef<RawDittoServer>, Vec<String>>>,
    /// When the watch last delivered a change of each server that no reconcile has started for yet.
    arrived: Mutex<HashMap<ObjectRef<RawDittoServer>, Instant>>,
}

impl Traces {
    /// The trace the reconcile of `raw` continues: the first traceparent of its status not answered yet
    /// (`None` on the first look at a server, or when every one was answered). All are then answered.
    pub fn unanswered(&self, raw: &RawDittoServer) -> Option<SpanContext> {
        let now = agent_traceparents(raw.status_part("agents").as_ref());
        let key = ObjectRef::from_obj(raw);
        let mut answered = self.answered.lock().expect("not poisoned");
        let before = answered.insert(key, now.clone())?;
        now.iter().find(|tp| !before.contains(tp)).and_then(|tp| parse_traceparent(tp))
    }

    /// Forgets a server that is going away (its reconciles no longer continue agent traces).
    pub fn forget(&self, raw: &RawDittoServer) {
        self.answered.lock().expect("not poisoned").remove(&ObjectRef::from_obj(raw));
        self.arrived.lock().expect("not poisoned").remove(&ObjectRef::from_obj(raw));
    }

    /// Notes that the watch delivered a change of `raw` (after the trigger filter). The first one since the
    /// last reconcile start is kept: a burst queues behind it.
    pub fn arrived(&self, raw: &RawDittoServer) {
        self.arrived.lock().expect("not poisoned").entry(ObjectRef::from_obj(raw)).or_insert_with(Instant::now);
    }

    /// How long the change a reconcile of `raw` starts for waited since the watch delivered it (`None` when
    /// no watch event of the server started it: a child's event, a requeue, the resync).
    fn queued(&self, raw: &RawDittoServer) -> Option<std::time::Duration> {
        let at = self.arrived.lock().expect("not poisoned").remove(&ObjectRef::from_obj(raw))?;
        Some(at.elapsed())
    }
}

/// The span of one reconcile of `raw`, continuing the agent's trace when its status brings a change.
pub fn reconcile_span(traces: &Traces, raw: &RawDittoServer) -> tracing::Span {
    let span = tracing::info_span!(
        "reconcile",
        namespace = raw.namespace().unwrap_or_default(),
        name = %raw.name_any(),
        server = %raw.name_any(),
        continued = tracing::field::Empty,
        queued_us = tracing::field::Empty,
    );
    if let Some(queued) = traces.queued(raw) {
        span.record("queued_us", u64::try_from(queued.as_micros()).unwrap_or(u64::MAX));
    }
    if let Some(parent) = traces.unanswered(raw) {
        span.record("continued", tracing::field::display(parent.trace_id()));
        continue_trace(&span, parent);
    }
    span
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const A: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    const B: &str = "00-5bf92f3577b34da6a3ce929d0e0e4736-10f067aa0ba902b7-01";

    fn server(status: Value) -> RawDittoServer {
        let status = serde_json::value::to_raw_value(&status).unwrap();
        let mut raw = RawDittoServer { status: Some(status), ..Default::default() };
        raw.metadata.name = Some("fs".into());
        raw.metadata.namespace = Some("ns".into());
        raw
    }

    fn agents(traceparents: &[&str]) -> Value {
        let entries: Vec<Value> = traceparents
            .iter()
            .enumerate()
            .map(|(i, tp)| json!({"podName": format!("fs-{i}"), "traceparent": tp}))
            .collect();
        json!({"agents": entries})
    }

    #[test]
    fn each_change_is_continued_once_and_the_first_look_only_records() {
        let traces = Traces::default();
        assert!(traces.unanswered(&server(agents(&[A]))).is_none(), "first look: answered long ago, maybe");
        assert!(traces.unanswered(&server(agents(&[A]))).is_none(), "nothing new");
        let next = traces.unanswered(&server(agents(&[B]))).expect("a new change");
        assert_eq!(next, parse_traceparent(B).unwrap());
        assert!(traces.unanswered(&server(agents(&[B]))).is_none(), "continued once");
        traces.forget(&server(json!({})));
        assert!(traces.unanswered(&server(agents(&[A]))).is_none(), "forgotten: a first look again");
    }

    #[test]
    fn only_a_watch_event_gives_a_queue_time_and_only_once() {
        let traces = Traces::default();
        let raw = server(json!({}));
        assert!(traces.queued(&raw).is_none(), "a requeue or a child's event");
        traces.arrived(&raw);
        let first = traces.arrived.lock().unwrap()[&ObjectRef::from_obj(&raw)];
        traces.arrived(&raw);
        assert_eq!(traces.arrived.lock().unwrap()[&ObjectRef::from_obj(&raw)], first, "a burst keeps its first");
        assert!(traces.queued(&raw).is_some());
        assert!(traces.queued(&raw).is_none(), "taken by the reconcile that started");
    }

    #[test]
    fn a_server_first_seen_without_reports_continues_its_first_report() {
        let traces = Traces::default();
        assert!(traces.unanswered(&server(json!({}))).is_none());
        assert_eq!(traces.unanswered(&server(agents(&[A]))), parse_traceparent(A));
    }

    #[test]
    fn hostile_entries_are_ignored_and_bounded() {
        let status = json!({"agents": [
            {"podName": "a", "traceparent": "00-zz"},
            {"podName": "b", "traceparent": 7},
            {"podName": "c"},
            "not an object",
            {"podName": "d", "traceparent": A},
        ]});
        assert_eq!(agent_traceparents(status.get("agents")), vec![A.to_owned()]);
        let many: Vec<&str> = std::iter::repeat_n("00-zz", MAX_AGENTS).chain([A]).collect();
        assert!(
            agent_traceparents(agents(&many).get("agents")).is_empty(),
            "entries past the CRD's limit are not read"
        );
        assert!(agent_traceparents(Some(&json!("x"))).is_empty());
        assert!(agent_traceparents(None).is_empty());
    }
}
