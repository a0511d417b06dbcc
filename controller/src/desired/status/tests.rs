//! Unit tests of the status computation: conditions, transition times, the write decision.

use super::*;
use crate::desired::adapters::{AdaptersState, Exposed, Problems, Reports, state};
use crate::desired::test_support::server;
use dittofs_api::crd::AgentAuth;
use serde_json::json;

fn t(secs: i64) -> Timestamp {
    Timestamp::from_second(1_800_000_000 + secs).unwrap()
}

fn observed(ready: i32) -> Observed {
    Observed {
        config_map: ConfigMapState::Present,
        statefulset: Some(StatefulSetState {
            generation: 1,
            observed_generation: 1,
            ready_replicas: ready,
            available_replicas: ready,
        }),
        config_hash: "h".into(),
        jwt_problem: None,
        adapters: AdaptersState::unknown("no report"),
        database_secret_problem: None,
        secrets_problem: None,
        percona: None,
        monitor: Monitor::NotWanted,
    }
}

fn cond<'a>(s: &'a DittoServerStatus, type_: &str) -> &'a Condition {
    s.conditions.iter().find(|c| c.type_ == type_).unwrap()
}

fn with_agent(mut ds: DittoServer, authenticated: bool, reason: &str) -> DittoServer {
    let mut status = ds.status.take().unwrap_or_default();
    status.agents = vec![AgentStatus {
        pod_name: "fs-0".into(),
        auth: Some(AgentAuth { authenticated, reason: reason.into(), message: None, last_transition_time: None }),
        ..Default::default()
    }];
    ds.status = Some(status);
    ds
}

#[test]
fn a_fresh_server_is_pending_and_not_ready() {
    let ds = server(json!({}));
    let s = desired_status(&ds, &observed(0), t(0));
    assert_eq!(s.phase, Some(Phase::Pending));
    assert_eq!(s.observed_generation, Some(3));
    assert_eq!(cond(&s, c::AVAILABLE).status, "False");
    assert_eq!(cond(&s, c::AUTHENTICATED).status, "Unknown");
    assert_eq!(cond(&s, c::AUTHENTICATED).reason, reasons::NO_AGENT_REPORT);
    let ready = cond(&s, c::READY);
    assert_eq!(ready.status, "False");
    assert_eq!(ready.message, "Not ready: [NotAvailable StillProgressing NotAuthenticated]");
    assert!(s.conditions.iter().all(|c| c.observed_generation == Some(3)));
    let types: Vec<_> = s.conditions.iter().map(|c| c.type_.as_str()).collect();
    // DatabaseReady only with Percona (as in Go), MetricsReady only while metrics are on.
    let expected: Vec<_> = c::ALL.into_iter().filter(|t| *t != c::DATABASE_READY && *t != c::METRICS_READY).collect();
    assert_eq!(types, expected);
    assert!(s.agents.is_empty());
}

#[test]
fn metrics_ready_says_what_became_of_the_service_monitor_and_never_holds_ready_back() {
    let metrics_on = json!({"metrics": {"enabled": true, "port": 9191, "serviceMonitor": {"enabled": true}}});
    let ds = with_agent(server(metrics_on), true, reasons::AUTHENTICATION_SUCCEEDED);
    let with = |monitor| desired_status(&ds, &Observed { monitor, ..observed(1) }, t(0));
    let cases = [
        (Monitor::NotWanted, "True", reasons::METRICS_SERVED),
        (Monitor::Applied, "True", reasons::SERVICE_MONITOR_APPLIED),
        (Monitor::ApiMissing, "False", reasons::SERVICE_MONITOR_API_MISSING),
        (Monitor::ApiUnknown, "Unknown", reasons::SERVICE_MONITOR_API_UNKNOWN),
    ];
    for (monitor, status, reason) in cases {
        let s = with(monitor);
        let metrics = cond(&s, c::METRICS_READY);
        assert_eq!((metrics.status.as_str(), metrics.reason.as_str()), (status, reason), "{monitor:?}");
        assert!(metrics.message.starts_with("Service fs-metrics serves the metrics on port 9191 at /metrics"));
        assert_eq!(cond(&s, c::READY).status, "True", "{monitor:?}");
        let types: Vec<_> = s.conditions.iter().map(|c| c.type_.as_str()).collect();
        let expected: Vec<_> = c::ALL.into_iter().filter(|t| *t != c::DATABASE_READY).collect();
        assert_eq!(types, expected, "all but DatabaseReady (no Percona here)");
    }
    assert!(cond(&with(Monitor::ApiMissing), c::METRICS_READY).message.contains("monitoring.coreos.com/v1"));
    // Turned off, the condition goes.
    let off = server(json!({"metrics": {"enabled": false, "serviceMonitor": {"enabled": true}}}));
    let s = desired_status(&off, &observed(1), t(0));
    assert!(s.conditions.iter().all(|cond| cond.type_ != c::METRICS_READY));
}

#[test]
fn ready_when_running_and_an_agent_is_logged_in() {
    let ds = with_agent(server(json!({})), true, reasons::AUTHENTICATION_SUCCEEDED);
    let s = desired_status(&ds, &observed(1), t(0));
    assert_eq!(s.phase, Some(Phase::Running));
    assert_eq!(cond(&s, c::READY).status, "True");
    let failing = with_agent(server(json!({})), false, reasons::API_UNREACHABLE);
    let s = desired_status(&failing, &observed(1), t(0));
    assert_eq!(cond(&s, c::AUTHENTICATED).reason, reasons::API_UNREACHABLE);
    assert_eq!(cond(&s, c::READY).message, "Not ready: [NotAuthenticated]");
}

#[test]
fn stopped_needs_no_agent() {
    let ds = server(json!({"replicas": 0}));
    let s = desired_status(&ds, &observed(0), t(0));
    assert_eq!(s.phase, Some(Phase::Stopped));
    assert_eq!(cond(&s, c::AVAILABLE).reason, reasons::STOPPED);
    assert_eq!(cond(&s, c::READY).status, "True");
}

#[test]
fn transition_times_move_only_on_flips_and_unchanged_status_is_not_written() {
    let mut ds = server(json!({}));
    let first = desired_status(&ds, &observed(0), t(0));
    assert!(needs_write(ds.status.as_ref(), &first));
    // Stored (with an agent entry the controller must ignore), then recomputed later: no write.
    let mut stored = first.clone();
    stored.agents = vec![AgentStatus { pod_name: "fs-0".into(), ..Default::default() }];
    ds.status = Some(stored);
    let again = desired_status(&ds, &observed(0), t(100));
    assert!(!needs_write(ds.status.as_ref(), &again), "{again:#?}");
    // A flip moves exactly the flipped conditions' times.
    let flipped = desired_status(&ds, &observed(1), t(200));
    assert_eq!(cond(&flipped, c::AVAILABLE).last_transition_time, Time(t(200)));
    assert_eq!(cond(&flipped, c::CONFIG_READY).last_transition_time, Time(t(0)));
    assert!(needs_write(ds.status.as_ref(), &flipped));
}

#[test]
fn every_go_section_is_supported() {
    let ds = server(json!({"snapshotPolicies": [{"share": "/a", "interval": "1h"}], "percona": {"enabled": true},
        "metrics": {"enabled": true, "serviceMonitor": {"enabled": true}}}));
    let s = desired_status(&ds, &observed(1), t(0));
    let supported = cond(&s, c::SPEC_SUPPORTED);
    assert_eq!((supported.status.as_str(), supported.reason.as_str()), ("True", reasons::ALL_FIELDS_SUPPORTED));
}

#[test]
fn database_ready_with_percona_only_and_ready_needs_it() {
    use crate::desired::database::PerconaObserved;
    let ds = with_agent(server(json!({"percona": {"enabled": true}})), true, reasons::AUTHENTICATION_SUCCEEDED);
    let waiting = Observed {
        percona: Some(PerconaObserved::Cluster { state: "initializing".into(), missing_keys: None }),
        ..observed(1)
    };
    let s = desired_status(&ds, &waiting, t(0));
    let db = cond(&s, c::DATABASE_READY);
    assert_eq!((db.status.as_str(), db.reason.as_str()), ("False", reasons::PERCONA_NOT_READY));
    assert_eq!(db.message, "Waiting for PostgreSQL cluster fs-postgres (state: initializing)");
    assert_eq!(cond(&s, c::READY).message, "Not ready: [DatabaseNotReady]");
    let ready = Observed {
        percona: Some(PerconaObserved::Cluster { state: "ready".into(), missing_keys: Some(vec![]) }),
        ..observed(1)
    };
    let s = desired_status(&ds, &ready, t(0));
    let db = cond(&s, c::DATABASE_READY);
    assert_eq!((db.status.as_str(), db.reason.as_str()), ("True", reasons::PERCONA_READY));
    assert_eq!(cond(&s, c::READY).status, "True");
    let absent = Observed { percona: Some(PerconaObserved::NoCluster), statefulset: None, ..observed(1) };
    let progressing = cond(&desired_status(&ds, &absent, t(0)), c::PROGRESSING).clone();
    assert_eq!(progressing.message, "the StatefulSet does not exist yet");
    assert_eq!(cond(&desired_status(&ds, &absent, t(0)), c::DATABASE_READY).reason, reasons::PERCONA_NOT_FOUND);
    // Percona off: no DatabaseReady at all.
    let off = with_agent(server(json!({})), true, reasons::AUTHENTICATION_SUCCEEDED);
    assert!(desired_status(&off, &observed(1), t(0)).conditions.iter().all(|c| c.type_ != c::DATABASE_READY));
}

#[test]
fn a_missing_postgres_secret_key_is_config_not_ready() {
    let ds = server(json!({"database": {"postgresSecretRef": {"name": "pg", "key": "k"}}}));
    let problem = "Secret pg (database.postgresSecretRef) has no key password".to_owned();
    let s = desired_status(&ds, &Observed { database_secret_problem: Some(problem.clone()), ..observed(1) }, t(0));
    let config = cond(&s, c::CONFIG_READY);
    assert_eq!((config.status.as_str(), config.reason.as_str()), ("False", reasons::DATABASE_SECRET_MISSING));
    assert_eq!(config.message, problem);
    assert!(cond(&s, c::READY).message.contains("ConfigNotReady"));
}

#[test]
fn an_invalid_spec_flips_ready_only() {
    let ds = server(json!({}));
    let valid = desired_status(&ds, &observed(1), t(0));
    let s = blocked_status(Some(&valid), 4, INVALID_SPEC_REASON, "spec.replicas: invalid type", t(10));
    let ready = cond(&s, c::READY);
    assert_eq!((ready.status.as_str(), ready.reason.as_str()), ("False", INVALID_SPEC_REASON));
    assert_eq!(s.observed_generation, Some(4));
    assert_eq!(s.conditions.len(), valid.conditions.len());
    assert!(!needs_write(
        Some(&s),
        &blocked_status(Some(&s), 4, INVALID_SPEC_REASON, "spec.replicas: invalid type", t(20))
    ));
}

#[test]
fn adapters_are_carried_over() {
    let mut ds = server(json!({}));
    ds.status = Some(DittoServerStatus { adapters_summary: Some("nfs:12049".into()), ..Default::default() });
    let s = desired_status(&ds, &observed(1), t(0));
    assert_eq!(s.adapters_summary.as_deref(), Some("nfs:12049"));
}

#[test]
fn the_adapter_part_sets_adapters_and_the_summary_or_keeps_the_stored_ones() {
    let mut ds = server(json!({}));
    let nfs = Exposed { kind: "nfs".into(), sanitized: "nfs".into(), port: 12049 };
    let reports = Reports::Known { adapters: vec![nfs], conflicts: vec![], refused: vec![] };
    let mut obs = observed(1);
    obs.adapters = state(&ds, &reports, &Problems::default(), t(0));
    let s = desired_status(&ds, &obs, t(0));
    assert_eq!(s.adapters_summary.as_deref(), Some("nfs:12049"));
    assert_eq!(s.adapters[0].service_name.as_deref(), Some("fs-adapter-nfs"));
    assert_eq!(cond(&s, c::ADAPTERS_READY).status, "True");
    assert_eq!(cond(&s, c::ADAPTERS_READY).reason, reasons::ADAPTERS_EXPOSED);

    // No report (e.g. after a restart, before the agent's first poll): the stored view stays.
    ds.status = Some(s.clone());
    let kept = desired_status(&ds, &observed(1), t(5));
    assert_eq!((kept.adapters.clone(), kept.adapters_summary.clone()), (s.adapters.clone(), s.adapters_summary));
    assert_eq!(cond(&kept, c::ADAPTERS_READY).status, "Unknown");

    // An authoritative empty report clears both.
    obs.adapters = state(
        &ds,
        &Reports::Known { adapters: vec![], conflicts: vec![], refused: vec![] },
        &Problems::default(),
        t(0),
    );
    let empty = desired_status(&ds, &obs, t(9));
    assert!(empty.adapters.is_empty() && empty.adapters_summary.is_none());
}

#[test]
fn a_too_short_jwt_key_makes_config_ready_false_and_not_ready() {
    let ds = server(json!({}));
    let problem = "the JWT signing key in Secret mine (key k) has 3 bytes".to_owned();
    let s = desired_status(&ds, &Observed { jwt_problem: Some(problem.clone()), ..observed(1) }, t(0));
    let config = cond(&s, c::CONFIG_READY);
    assert_eq!((config.status.as_str(), config.reason.as_str()), ("False", reasons::JWT_SECRET_TOO_SHORT));
    assert_eq!(config.message, problem);
    assert!(cond(&s, c::READY).message.contains("ConfigNotReady"));
}
