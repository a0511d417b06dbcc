//! Unit tests of the aggregation: the safety rules, the disagreements between pods, and hostile reports.

use super::*;
use crate::desired::test_support::server;
use dittofs_api::crd::{AgentAdapterStatus, DittoServerStatus, Reachability};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use serde_json::json;

fn adapter(kind: &str, port: i32, running: bool) -> AgentAdapterStatus {
    AgentAdapterStatus {
        r#type: kind.into(),
        port,
        enabled: true,
        running,
        health: Some("healthy".into()),
        message: None,
    }
}

fn agent(pod: &str, reachable: bool, adapters: Vec<AgentAdapterStatus>) -> AgentStatus {
    AgentStatus {
        pod_name: pod.into(),
        reachability: Some(Reachability {
            reachable,
            reason: if reachable { "Reachable" } else { "ConnectionRefused" }.into(),
            message: (!reachable).then(|| "connection refused".into()),
            last_transition_time: None,
        }),
        last_poll_time: Some(Time(jiff::Timestamp::UNIX_EPOCH)),
        adapters,
        traceparent: Some(format!("00-{:032x}-{:016x}-01", 1, 2)),
        ..Default::default()
    }
}

/// Aggregated at the moment the test entries polled (the Unix epoch): every entry is fresh.
fn aggregate(ds: &DittoServer) -> Reports {
    super::aggregate(ds, Timestamp::UNIX_EPOCH)
}

fn at(secs: i64) -> Timestamp {
    Timestamp::from_second(secs).unwrap()
}

fn with_agents(replicas: i32, agents: Vec<AgentStatus>) -> DittoServer {
    let mut ds = server(json!({ "replicas": replicas }));
    ds.status = Some(DittoServerStatus { agents, ..Default::default() });
    ds
}

#[test]
fn no_agent_or_no_poll_means_no_report() {
    assert_eq!(aggregate(&with_agents(1, vec![])), Reports::None);
    let mut fresh = agent("fs-0", true, vec![]);
    fresh.last_poll_time = None;
    assert_eq!(aggregate(&with_agents(1, vec![fresh])), Reports::None);
}

#[test]
fn unreachable_keeps_everything() {
    let ds = with_agents(1, vec![agent("fs-0", false, vec![adapter("nfs", 12049, true)])]);
    assert!(
        matches!(aggregate(&ds), Reports::Unreachable { pod, reason, .. } if pod == "fs-0" && reason == "ConnectionRefused")
    );
}

#[test]
fn empty_successful_report_is_authoritative() {
    let ds = with_agents(1, vec![agent("fs-0", true, vec![])]);
    assert!(matches!(aggregate(&ds), Reports::Known { adapters, .. } if adapters.is_empty()));
}

#[test]
fn only_serving_adapters_count_sorted_by_type() {
    let ds = with_agents(
        1,
        vec![agent(
            "fs-0",
            true,
            vec![adapter("smb", 12445, true), adapter("nfs", 12049, true), adapter("x", 1, false)],
        )],
    );
    let Reports::Known { adapters, conflicts, .. } = aggregate(&ds) else { panic!() };
    let got: Vec<_> = adapters.iter().map(|a| (a.sanitized.as_str(), a.port)).collect();
    assert_eq!(got, [("nfs", 12049), ("smb", 12445)]);
    assert!(conflicts.is_empty());
}

#[test]
fn lowest_ordinal_wins_a_port_disagreement() {
    let ds = with_agents(
        2,
        vec![
            agent("fs-1", true, vec![adapter("nfs", 2000, true)]),
            agent("fs-0", true, vec![adapter("nfs", 1000, true)]),
        ],
    );
    let Reports::Known { adapters, conflicts, .. } = aggregate(&ds) else { panic!() };
    assert_eq!(adapters[0].port, 1000);
    assert_eq!(
        conflicts,
        [PortConflict { sanitized: "nfs".into(), reports: vec![("fs-0".into(), 1000), ("fs-1".into(), 2000)] }]
    );
}

#[test]
fn entries_of_pods_that_cannot_exist_are_ignored_and_stale() {
    let ds = with_agents(
        1,
        vec![
            agent("fs-0", true, vec![]),
            agent("fs-1", false, vec![]),
            agent("other-0", false, vec![]),
            agent("fs-x", true, vec![]),
        ],
    );
    assert!(
        matches!(aggregate(&ds), Reports::Known { .. }),
        "fs-1 is scaled away: its unreachable report does not count"
    );
    assert_eq!(stale_agents(&ds), ["fs-1", "other-0", "fs-x"]);
    assert!(stale_agents(&with_agents(0, vec![agent("fs-0", true, vec![])])) == ["fs-0"]);
}

#[test]
fn a_server_scaled_to_zero_exposes_nothing_whatever_was_reported() {
    let ds = with_agents(0, vec![agent("fs-0", false, vec![adapter("nfs", 12049, true)])]);
    assert!(matches!(aggregate(&ds), Reports::Known { adapters, .. } if adapters.is_empty()));
}

#[test]
fn port_zero_and_unhealthy_adapters_are_not_exposed() {
    let mut down = adapter("smb", 9000, true);
    down.health = Some("unknown".into());
    let ds = with_agents(1, vec![agent("fs-0", true, vec![adapter("nfs", 0, true), down])]);
    let Reports::Known { adapters, refused, .. } = aggregate(&ds) else { panic!() };
    assert!(adapters.is_empty() && refused.is_empty(), "not serving is not refused: {refused:?}");
}

fn known(ds: &DittoServer) -> (Vec<(String, i32)>, Vec<String>) {
    let Reports::Known { adapters, refused, .. } = aggregate(ds) else { panic!("not authoritative") };
    (adapters.into_iter().map(|a| (a.kind, a.port)).collect(), refused.iter().map(ToString::to_string).collect())
}

#[test]
fn a_missing_health_reading_leaves_enabled_and_running_to_decide() {
    let mut unchecked = adapter("smb", 1445, true);
    unchecked.health = None;
    let ds = with_agents(1, vec![agent("fs-0", true, vec![unchecked.clone()])]);
    assert_eq!(known(&ds), (vec![("smb".into(), 1445)], vec![]), "just enabled, not re-checked yet: exposed at once");
    unchecked.running = false;
    let ds = with_agents(1, vec![agent("fs-0", true, vec![unchecked])]);
    assert_eq!(known(&ds), (vec![], vec![]), "not running: nothing, whatever the health");
}

#[test]
fn hostile_reports_expose_only_allowed_types_on_free_ports() {
    let mut ds = server(json!({
        "controlPlane": {"port": 8080},
        "metrics": {"enabled": true, "port": 9090},
        "adapterServices": {"allowedTypes": ["nfs", "smb", "a", "b", "c"]}
    }));
    let reported = vec![
        adapter("nfs", 12049, true),
        adapter("smb", 8080, true),
        adapter("a", 8082, true),
        adapter("b", 9090, true),
        adapter("c", 70000, true),
        adapter("NFS", 2049, true),
        adapter("\nsmb\u{7}", 1445, true),
        adapter("x", 9999, true),
        adapter("y", 9998, false),
    ];
    ds.status = Some(DittoServerStatus { agents: vec![agent("fs-0", true, reported)], ..Default::default() });
    let (exposed, refused) = known(&ds);
    assert_eq!(exposed, [("nfs".into(), 12049)]);
    assert_eq!(
        refused,
        [
            "\\nsmb\\u{7}:1445 (type not in the agent's form: lower-case letters, digits and '-')",
            "NFS:2049 (type not in the agent's form: lower-case letters, digits and '-')",
            "a:8082 (the agent's admin port, never exposed)",
            "b:9090 (the metrics port (spec.metrics.port), never exposed)",
            "smb:8080 (the DittoFS API port (spec.controlPlane.port), never exposed)",
            "x:9999 (type not in spec.adapterServices.allowedTypes)",
        ],
        "sorted by type, control characters escaped; y is not serving and c's port is unusable, so neither is refused"
    );
}

#[test]
fn the_default_allow_list_is_nfs_and_smb_and_metrics_are_reserved_only_when_served() {
    let ds = with_agents(1, vec![agent("fs-0", true, vec![adapter("nfs", 9090, true), adapter("webdav", 8443, true)])]);
    let (exposed, refused) = known(&ds);
    assert_eq!(exposed, [("nfs".into(), 9090)], "metrics are off: 9090 is free");
    assert_eq!(refused, ["webdav:8443 (type not in spec.adapterServices.allowedTypes)"]);
}

/// Two types of 55 characters whose object names of server `fs` are the same.
fn colliding_types() -> (String, String) {
    let mut seen: BTreeMap<String, String> = BTreeMap::new();
    for i in 0.. {
        let kind = format!("{}{i:05}", "a".repeat(50));
        if let Some(other) = seen.insert(names::adapter_object_name("fs", &kind), kind.clone()) {
            return (other, kind);
        }
    }
    unreachable!()
}

#[test]
fn types_with_one_object_name_keep_the_first_in_order_and_refuse_the_other() {
    let (first, second) = colliding_types();
    assert!(first < second);
    let name = names::adapter_object_name("fs", &first);
    assert_eq!(name, names::adapter_object_name("fs", &second));
    for order in [[&second, &first], [&first, &second]] {
        let mut ds = server(json!({"adapterServices": {"allowedTypes": [first, second]}}));
        let reported = order.iter().map(|t| adapter(t, 9000, true)).collect();
        ds.status = Some(DittoServerStatus { agents: vec![agent("fs-0", true, reported)], ..Default::default() });
        let (exposed, refused) = known(&ds);
        assert_eq!(exposed, [(first.clone(), 9000)], "whatever the order of the report");
        assert_eq!(refused, [format!("{second}:9000 (object name {name} already taken by type {first})")]);
    }
}

#[test]
fn a_report_older_than_the_limit_is_stale_and_the_policy_decides() {
    let mut ds =
        with_agents(2, vec![agent("fs-0", true, vec![adapter("nfs", 12049, true)]), agent("fs-1", true, vec![])]);
    ds.status.as_mut().unwrap().agents[1].last_poll_time = Some(Time(at(200)));
    let limit = 300;
    assert!(matches!(super::aggregate(&ds, at(limit)), Reports::Known { .. }), "exactly at the limit: fresh");
    assert_eq!(next_stale_at(&ds, at(10)), Some(at(limit)), "fs-0 goes stale first");
    let stale = super::aggregate(&ds, at(limit + 1));
    assert_eq!(stale, Reports::Stale { pod: "fs-0".into(), since: at(0) });
    assert_eq!(is_stale(&ds, at(limit + 1)), Some(("fs-0".into(), at(0))));
    ds.spec.adapter_services.on_stale_report = StaleReportPolicy::Close;
    assert_eq!(super::aggregate(&ds, at(limit + 1)), Reports::nothing(), "Close: nothing exposed");
    ds.spec.adapter_services.report_max_age_seconds = 3600;
    assert!(matches!(super::aggregate(&ds, at(limit + 1)), Reports::Known { adapters, .. } if adapters.len() == 1));
}

#[test]
fn unreachable_for_longer_than_the_limit_is_stale_and_a_new_agent_is_not() {
    let mut down = agent("fs-0", false, vec![]);
    down.last_poll_time = None;
    down.reachability.as_mut().unwrap().last_transition_time = Some(Time(at(0)));
    let ds = with_agents(1, vec![down.clone()]);
    assert!(matches!(super::aggregate(&ds, at(100)), Reports::Unreachable { .. }));
    assert!(matches!(super::aggregate(&ds, at(301)), Reports::Stale { .. }));
    let mut starting = down;
    starting.reachability = None;
    let ds = with_agents(1, vec![starting]);
    assert_eq!(super::aggregate(&ds, at(100_000)), Reports::None, "nothing known yet: nothing to go stale");
    assert_eq!(next_stale_at(&ds, at(0)), None);
}
