//! From the agents' reports in `status.agents` to what Kubernetes should expose.
//!
//! Safety rules (DISC-03, hardened): no report from any agent → act on nothing; a report marked
//! unreachable → keep everything as it is; a successful empty report is authoritative. Entries of pods
//! that cannot exist (ordinal ≥ replicas, or another server's naming) are ignored here and pruned by the
//! controller. When pods disagree on a port, the lowest ordinal wins and the disagreement is reported.
//! A server scaled to zero runs nothing: that is known without any report (the Go operator kept the
//! Services and policies of a stopped server).

use std::collections::BTreeMap;

use kube::ResourceExt;

use dittofs_api::crd::AgentStatus;
use dittofs_api::{DittoServer, names};

/// An adapter to expose: DittoFS's type name, the sanitized name used in object names, its port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exposed {
    pub kind: String,
    pub sanitized: String,
    pub port: i32,
}

/// Pods disagree on an adapter's port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortConflict {
    pub sanitized: String,
    /// (pod, port) in ordinal order; the first one won.
    pub reports: Vec<(String, i32)>,
}

/// What the reports allow the controller to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reports {
    /// No agent has completed a poll: create and delete nothing adapter-related.
    None,
    /// An agent cannot reach DittoFS: keep every adapter object as it is.
    Unreachable { pod: String, reason: String, message: String },
    /// Authoritative: exactly these adapters (sorted by sanitized type) should be exposed.
    Known { adapters: Vec<Exposed>, conflicts: Vec<PortConflict>, traceparents: Vec<String> },
}

/// The ordinal of `pod` if it is one of this server's pods that the spec allows to exist.
fn live_ordinal(ds: &DittoServer, pod: &str) -> Option<u32> {
    let prefix = format!("{}-", names::statefulset(&ds.name_any()));
    let ordinal: u32 = pod.strip_prefix(&prefix)?.parse().ok()?;
    let replicas = u32::try_from(ds.spec.replicas.max(0)).unwrap_or(0);
    (ordinal < replicas && names::pod(&ds.name_any(), ordinal) == pod).then_some(ordinal)
}

/// Entries of pods that cannot exist any more (scaled down, renamed): the controller removes them.
pub fn stale_agents(ds: &DittoServer) -> Vec<String> {
    agents(ds).filter(|a| live_ordinal(ds, &a.pod_name).is_none()).map(|a| a.pod_name.clone()).collect()
}

fn agents(ds: &DittoServer) -> impl Iterator<Item = &AgentStatus> {
    ds.status.iter().flat_map(|s| s.agents.iter())
}

/// Reduces the agents' entries to one decision.
pub fn aggregate(ds: &DittoServer) -> Reports {
    if ds.spec.replicas <= 0 {
        return Reports::Known { adapters: Vec::new(), conflicts: Vec::new(), traceparents: Vec::new() };
    }
    let mut live: Vec<(u32, &AgentStatus)> =
        agents(ds).filter_map(|a| live_ordinal(ds, &a.pod_name).map(|o| (o, a))).collect();
    live.sort_by_key(|(ordinal, _)| *ordinal);
    if let Some((_, a)) = live.iter().find(|(_, a)| a.reachability.as_ref().is_some_and(|r| !r.reachable)) {
        let r = a.reachability.as_ref().expect("checked above");
        return Reports::Unreachable {
            pod: a.pod_name.clone(),
            reason: r.reason.clone(),
            message: r.message.clone().unwrap_or_default(),
        };
    }
    // Only entries with a completed poll count; an agent that just started has not seen anything yet.
    let polled: Vec<&AgentStatus> = live
        .iter()
        .map(|(_, a)| *a)
        .filter(|a| a.last_poll_time.is_some() && a.reachability.as_ref().is_some_and(|r| r.reachable))
        .collect();
    if polled.is_empty() {
        return Reports::None;
    }
    let mut chosen: BTreeMap<String, Exposed> = BTreeMap::new();
    let mut seen: BTreeMap<String, Vec<(String, i32)>> = BTreeMap::new();
    for agent in &polled {
        for adapter in agent.adapters.iter().filter(|a| a.is_serving()) {
            let sanitized = names::sanitize_adapter_type(&adapter.r#type);
            seen.entry(sanitized.clone()).or_default().push((agent.pod_name.clone(), adapter.port));
            chosen.entry(sanitized.clone()).or_insert_with(|| Exposed {
                kind: adapter.r#type.clone(),
                sanitized,
                port: adapter.port,
            });
        }
    }
    let conflicts = seen
        .into_iter()
        .filter(|(_, reports)| reports.iter().any(|(_, p)| *p != reports[0].1))
        .map(|(sanitized, reports)| PortConflict { sanitized, reports })
        .collect();
    let traceparents = polled.iter().filter_map(|a| a.traceparent.clone()).collect();
    Reports::Known { adapters: chosen.into_values().collect(), conflicts, traceparents }
}

#[cfg(test)]
mod tests {
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
                vec![adapter("smb", 12445, true), adapter("NFS", 12049, true), adapter("x", 1, false)],
            )],
        );
        let Reports::Known { adapters, conflicts, traceparents } = aggregate(&ds) else { panic!() };
        let got: Vec<_> = adapters.iter().map(|a| (a.sanitized.as_str(), a.port)).collect();
        assert_eq!(got, [("nfs", 12049), ("smb", 12445)]);
        assert_eq!(adapters[0].kind, "NFS", "DittoFS's name is kept for messages");
        assert!(conflicts.is_empty());
        assert_eq!(traceparents.len(), 1);
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
        let mut stale = adapter("smb", 1445, true);
        stale.health = None;
        let mut down = adapter("x", 9000, true);
        down.health = Some("unknown".into());
        let ds = with_agents(1, vec![agent("fs-0", true, vec![adapter("nfs", 0, true), stale, down])]);
        let Reports::Known { adapters, .. } = aggregate(&ds) else { panic!() };
        let got: Vec<_> = adapters.iter().map(|a| (a.sanitized.as_str(), a.port)).collect();
        assert_eq!(got, [("smb", 1445)], "health not re-checked yet: enabled and running decide");
    }
}
