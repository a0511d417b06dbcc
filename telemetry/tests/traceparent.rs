//! With the subscriber installed (no OTLP endpoint set), spans still carry real trace ids, so the agent can
//! record a `traceparent` and the controller can continue its trace.

use dittofs_telemetry::{LogFormat, init, trace};

#[test]
fn spans_have_a_traceparent_that_round_trips() {
    let _guard = init("telemetry-test", LogFormat::Plain).unwrap();
    assert!(trace::current_traceparent().is_none(), "no span, no traceparent");
    let span = tracing::info_span!("poll");
    let traceparent = span.in_scope(trace::current_traceparent).expect("a span has a traceparent");
    let sc = trace::parse_traceparent(&traceparent).expect("our own traceparent parses");
    assert!(traceparent.starts_with("00-") && traceparent.ends_with("-01"), "{traceparent}");
    let child = tracing::info_span!(parent: &span, "write");
    let child_tp = child.in_scope(trace::current_traceparent).unwrap();
    assert_eq!(trace::parse_traceparent(&child_tp).unwrap().trace_id(), sc.trace_id(), "one trace");
    // The controller's reconcile continues the agent's trace: same trace id, the poll as its parent.
    let reconcile = tracing::info_span!("reconcile");
    assert!(trace::continue_trace(&reconcile, sc.clone()));
    let continued = reconcile.in_scope(trace::current_traceparent).unwrap();
    let continued = trace::parse_traceparent(&continued).unwrap();
    assert_eq!(continued.trace_id(), sc.trace_id(), "the reconcile is in the agent's trace");
    assert_ne!(continued.span_id(), sc.span_id(), "as a span of its own");
    // Once started, a span keeps its parent (only the link is added).
    assert!(!trace::continue_trace(&reconcile, sc));
    assert!(matches!(init("again", LogFormat::Json), Err(e) if e.label() == "subscriber_installed"));
}
