//! The checker's rules on made-up snapshots: the grace and its clock, the invariants of every moment, failed reads.

use super::super::observe::Obj;
use super::*;

fn labels(cr: &str, kind: &str, marker: &str) -> BTreeMap<String, String> {
    use dittofs_api::labels::*;
    [(INSTANCE_LABEL, cr), (ADAPTER_TYPE_LABEL, kind), (marker, "true")]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

/// A snapshot where server `fs` exposes `kind:port` through all three objects.
fn exposing(kind: &str, port: i32) -> Snapshot {
    use dittofs_api::labels::{ADAPTER_NETWORK_POLICY_LABEL, ADAPTER_SERVICE_LABEL};
    let mut snap = Snapshot::default();
    let obj = |marker: &str| Obj { uid: "u".into(), labels: labels("fs", kind, marker), port: Some(port) };
    snap.objects.insert(("Service", format!("fs-adapter-{kind}")), obj(ADAPTER_SERVICE_LABEL));
    snap.objects.insert(("NetworkPolicy", format!("fs-adapter-{kind}")), obj(ADAPTER_NETWORK_POLICY_LABEL));
    snap.sts_ports.insert("fs".into(), vec![(format!("adapter-{kind}"), port)]);
    snap
}

fn state(truth: Adapters) -> State {
    let spec = serde_json::json!({"storage": {"metadataSize": "1Gi"}});
    let watched = Watched::new("fs", &spec, Truth::Fixed(truth.clone())).unwrap();
    let tracked = Tracked {
        watched,
        truth: Some(truth),
        truth_changed: Instant::now(),
        mismatch_since: BTreeMap::new(),
        recorded: BTreeSet::new(),
        uids: BTreeMap::new(),
        secret_values: BTreeMap::new(),
        session: None,
    };
    State { servers: [("fs".to_owned(), tracked)].into(), ..State::default() }
}

#[test]
fn a_mismatch_counts_only_after_the_grace_and_never_during_a_fault() {
    let mut st = state([("nfs".to_owned(), 12049)].into());
    st.evaluate(Instant::now(), Ok(exposing("nfs", 12049)), BTreeMap::new());
    assert!(st.violations.is_empty() && st.last_match.is_some(), "matching: no violation, converged");

    let started = Instant::now();
    st.evaluate(started, Ok(exposing("nfs", 2049)), BTreeMap::new());
    assert!(st.violations.is_empty(), "within the grace: {:?}", st.violations);
    assert!(st.last_match < Some(started), "a mismatch is not convergence");

    // The mismatch and the truth change are older than the grace, but a fault is active.
    let long_ago = Instant::now() - GRACE - Duration::from_secs(1);
    let t = st.servers.get_mut("fs").unwrap();
    t.truth_changed = long_ago;
    t.mismatch_since.values_mut().for_each(|since| *since = long_ago);
    st.active_faults = 1;
    st.evaluate(Instant::now(), Ok(exposing("nfs", 2049)), BTreeMap::new());
    assert!(st.violations.is_empty(), "no grace counted during a fault");

    // Cleared just now: the clock restarts at the clear.
    st.active_faults = 0;
    st.last_clear = Some(Instant::now());
    st.evaluate(Instant::now(), Ok(exposing("nfs", 2049)), BTreeMap::new());
    assert!(st.violations.is_empty(), "the grace starts again at the clear");

    st.last_clear = Some(long_ago);
    st.evaluate(Instant::now(), Ok(exposing("nfs", 2049)), BTreeMap::new());
    // Service, NetworkPolicy and container port each disagree, once each.
    assert_eq!(st.violations.len(), 3, "{:?}", st.violations);
    st.evaluate(Instant::now(), Ok(exposing("nfs", 2049)), BTreeMap::new());
    assert_eq!(st.violations.len(), 3, "an ongoing mismatch is recorded once");
}

#[test]
fn screen_baseline_children_and_secrets_hold_at_every_moment() {
    let mut st = state(Adapters::new());
    st.active_faults = 1;
    let mut snap = exposing("smb", 8082);
    snap.objects.insert(("StatefulSet", "fs".into()), Obj { uid: "s".into(), labels: BTreeMap::new(), port: None });
    snap.secrets.insert("fs-jwt-secret".into(), [("jwt-secret".to_owned(), b"one".to_vec())].into());
    st.evaluate(Instant::now(), Ok(snap), BTreeMap::new());
    let details: Vec<&str> = st.violations.iter().map(|v| v.detail.as_str()).collect();
    assert!(details.iter().any(|d| d.contains("agent's admin port")), "{details:?}");
    assert!(details.iter().any(|d| d.contains("without NetworkPolicy fs-baseline")), "{details:?}");
    st.violations.clear();

    let mut snap = Snapshot::default();
    snap.secrets.insert("fs-jwt-secret".into(), [("jwt-secret".to_owned(), b"two".to_vec())].into());
    st.evaluate(Instant::now(), Ok(snap), BTreeMap::new());
    let details: Vec<&str> = st.violations.iter().map(|v| v.detail.as_str()).collect();
    assert!(details.contains(&"StatefulSet fs disappeared"), "{details:?}");
    assert!(details.contains(&"Secret fs-jwt-secret key jwt-secret changed value"), "{details:?}");
    assert!(!details.iter().any(|d| d.contains("two") || d.contains("one")), "values never in a report");
}

#[test]
fn a_failed_read_is_no_violation_and_no_convergence() {
    let mut st = state(Adapters::new());
    st.evaluate(Instant::now(), Err(anyhow::anyhow!("connection refused")), BTreeMap::new());
    assert!(st.violations.is_empty());
    assert_eq!(st.read_errors, 1, "outside a fault it is counted");
    assert!(st.last_match.is_none());
    st.active_faults = 1;
    st.evaluate(Instant::now(), Err(anyhow::anyhow!("connection refused")), BTreeMap::new());
    assert_eq!(st.read_errors, 1, "inside a fault it is expected");
}
