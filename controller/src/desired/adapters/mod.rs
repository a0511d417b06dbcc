//! Desired state of the adapter part: from the agents' reports ([`mod@aggregate`]) to Services,
//! NetworkPolicies and container ports ([`objects`]), what differs from the live objects ([`compare`]),
//! and what the status says about it ([`state`]). Pure, like the rest of `desired`.

pub mod aggregate;
pub mod compare;
pub mod objects;

pub use aggregate::{Exposed, PortConflict, Refused, Reports, aggregate, is_stale, next_stale_at, stale_agents};

use jiff::Timestamp;

use dittofs_api::DittoServer;
use dittofs_api::conditions::{ADAPTERS_READY, reasons};
use dittofs_api::crd::AdapterStatus;
use dittofs_api::crd::adapters_summary;

/// A condition as (True/False/Unknown, reason, message).
pub type ConditionValue = (Option<bool>, &'static str, String);

/// What went wrong while making Kubernetes match an authoritative report.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Problems {
    /// Writes that failed, e.g. "apply Service fs-adapter-nfs: …".
    pub failed: Vec<String>,
    /// Objects the controller must not touch that stand in the way, e.g. an unlabelled Service with an
    /// adapter Service's name, or `adapter-*` container ports another field manager holds.
    pub not_managed: Vec<String>,
}

/// The adapter part of the status.
#[derive(Debug, Clone, PartialEq)]
pub struct AdaptersState {
    /// `status.adapters`; `None` keeps what is stored (the reports did not allow acting).
    pub exposed: Option<Vec<AdapterStatus>>,
    /// The `AdaptersReady` condition.
    pub ready: ConditionValue,
}

impl AdaptersState {
    /// The state before the adapter step ran (or when it could not): stored adapters kept, Unknown.
    pub fn unknown(message: impl Into<String>) -> Self {
        Self { exposed: None, ready: (None, reasons::NO_REPORT, message.into()) }
    }
}

/// "the report of fs-0 dates from 2026-…, older than spec.adapterServices.reportMaxAgeSeconds (300)".
pub fn stale_text(ds: &DittoServer, pod: &str, since: Timestamp) -> String {
    format!(
        "the report of {pod} dates from {since}, older than spec.adapterServices.reportMaxAgeSeconds ({})",
        ds.spec.adapter_services.report_max_age_seconds
    )
}

/// The adapter part of the status for `reports` (aggregated at `now`), after the controller acted on them
/// with `problems`.
pub fn state(ds: &DittoServer, reports: &Reports, problems: &Problems, now: Timestamp) -> AdaptersState {
    if let (Some((pod, since)), Reports::Known { .. }) = (is_stale(ds, now), reports) {
        // onStaleReport: Close.
        let text = stale_text(ds, &pod, since);
        let message = format!("{text}; adapter objects are removed until a fresh report (onStaleReport: Close)");
        let closed = state(ds, &Reports::nothing(), problems, Timestamp::UNIX_EPOCH);
        return AdaptersState { exposed: closed.exposed, ready: (Some(false), reasons::REPORT_STALE, message) };
    }
    match reports {
        Reports::Stale { pod, since } => AdaptersState {
            exposed: None,
            ready: (
                None,
                reasons::REPORT_STALE,
                format!("{}; adapter objects are kept as they are (onStaleReport: Keep)", stale_text(ds, pod, *since)),
            ),
        },
        Reports::None => AdaptersState::unknown(
            "no agent has read the adapter list of DittoFS yet; adapter objects are left as they are",
        ),
        Reports::Unreachable { pod, reason, message } => {
            let detail = if message.is_empty() { reason.clone() } else { format!("{reason}: {message}") };
            AdaptersState {
                exposed: None,
                ready: (
                    None,
                    reasons::AGENT_UNREACHABLE,
                    format!(
                        "the agent in {pod} cannot read the adapters of DittoFS ({detail}); adapter objects are kept as they are"
                    ),
                ),
            }
        }
        Reports::Known { adapters, conflicts, refused, .. } => {
            let exposed = objects::status_adapters(ds, adapters);
            let ready = if !problems.failed.is_empty() {
                (Some(false), reasons::APPLY_FAILED, problems.failed.join("; "))
            } else if !problems.not_managed.is_empty() {
                (Some(false), reasons::OBJECT_NOT_MANAGED, problems.not_managed.join("; "))
            } else if !conflicts.is_empty() {
                let each: Vec<String> = conflicts
                    .iter()
                    .map(|c| {
                        let pods: Vec<String> = c.reports.iter().map(|(pod, port)| format!("{pod}={port}")).collect();
                        format!("{} ({}; {} wins)", c.sanitized, pods.join(", "), c.reports[0].0)
                    })
                    .collect();
                (Some(false), reasons::PORT_CONFLICT, format!("pods report different ports: {}", each.join("; ")))
            } else if ds.spec.replicas <= 0 {
                (Some(true), reasons::ADAPTERS_EXPOSED, "scaled to zero replicas: no adapter is exposed".into())
            } else if exposed.is_empty() {
                (Some(true), reasons::ADAPTERS_EXPOSED, "no adapter is serving: none is exposed".into())
            } else {
                (Some(true), reasons::ADAPTERS_EXPOSED, format!("exposed: {}", adapters_summary(&exposed)))
            };
            AdaptersState { exposed: Some(exposed), ready: with_refusals(ready, refused) }
        }
    }
}

/// The sentence naming the refused adapters, e.g. "refused reported adapters: x:9999 (type not in …)".
pub fn refusal_text(refused: &[Refused]) -> Option<String> {
    let each: Vec<String> = refused.iter().map(ToString::to_string).collect();
    (!each.is_empty()).then(|| format!("refused reported adapters: {}", each.join(", ")))
}

/// Refusals end the condition's message and make an otherwise fine AdaptersReady False.
fn with_refusals(ready: ConditionValue, refused: &[Refused]) -> ConditionValue {
    let Some(text) = refusal_text(refused) else { return ready };
    let (status, reason, message) = ready;
    if status == Some(true) {
        (Some(false), reasons::ADAPTERS_REFUSED, format!("{message}; {text}"))
    } else {
        (status, reason, format!("{message}; {text}"))
    }
}

/// The Warning Event's note when the refused set differs from the one the stored AdaptersReady
/// condition names (so one Event per change, not one per reconcile; the status survives restarts).
pub fn refusal_to_announce(ds: &DittoServer, reports: &Reports) -> Option<String> {
    let Reports::Known { refused, .. } = reports else { return None };
    let text = refusal_text(refused)?;
    let conditions = ds.status.iter().flat_map(|s| s.conditions.iter());
    let stored = conditions.into_iter().find(|c| c.type_ == ADAPTERS_READY).map(|c| c.message.as_str());
    (!stored.is_some_and(|m| m.ends_with(&format!("; {text}")))).then_some(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::desired::test_support::server;
    use serde_json::json;

    /// The state with no agent entry, so no staleness: the clock does not matter.
    fn state(ds: &DittoServer, reports: &Reports, problems: &Problems) -> AdaptersState {
        super::state(ds, reports, problems, Timestamp::UNIX_EPOCH)
    }

    fn known(adapters: Vec<Exposed>, conflicts: Vec<PortConflict>) -> Reports {
        Reports::Known { adapters, conflicts, refused: Vec::new() }
    }

    fn nfs(port: i32) -> Exposed {
        Exposed { kind: "nfs".into(), sanitized: "nfs".into(), port }
    }

    #[test]
    fn no_report_and_unreachable_keep_the_stored_adapters() {
        let ds = server(json!({}));
        let none = state(&ds, &Reports::None, &Problems::default());
        assert_eq!((none.exposed, none.ready.0, none.ready.1), (None, None, reasons::NO_REPORT));
        let down = Reports::Unreachable { pod: "fs-0".into(), reason: "Timeout".into(), message: "5s".into() };
        let s = state(&ds, &down, &Problems::default());
        assert_eq!((s.exposed, s.ready.1), (None, reasons::AGENT_UNREACHABLE));
        assert!(s.ready.2.contains("fs-0") && s.ready.2.contains("Timeout: 5s"), "{}", s.ready.2);
    }

    #[test]
    fn known_reports_say_what_is_exposed_or_what_is_wrong() {
        let ds = server(json!({}));
        let ok = state(&ds, &known(vec![nfs(12049)], vec![]), &Problems::default());
        assert_eq!(ok.ready, (Some(true), reasons::ADAPTERS_EXPOSED, "exposed: nfs:12049".into()));
        assert_eq!(ok.exposed.unwrap()[0].service_name.as_deref(), Some("fs-adapter-nfs"));
        let empty = state(&ds, &known(vec![], vec![]), &Problems::default());
        assert_eq!((empty.ready.0, empty.exposed), (Some(true), Some(vec![])));

        let conflict = PortConflict { sanitized: "nfs".into(), reports: vec![("fs-0".into(), 1), ("fs-1".into(), 2)] };
        let c = state(&ds, &known(vec![nfs(1)], vec![conflict]), &Problems::default());
        assert_eq!(c.ready.1, reasons::PORT_CONFLICT);
        assert_eq!(c.ready.2, "pods report different ports: nfs (fs-0=1, fs-1=2; fs-0 wins)");

        let problems = Problems { failed: vec!["apply Service x: boom".into()], not_managed: vec!["y".into()] };
        let f = state(&ds, &known(vec![nfs(1)], vec![]), &problems);
        assert_eq!(f.ready, (Some(false), reasons::APPLY_FAILED, "apply Service x: boom".into()));
        let n =
            state(&ds, &known(vec![nfs(1)], vec![]), &Problems { not_managed: vec!["y".into()], ..Default::default() });
        assert_eq!(n.ready, (Some(false), reasons::OBJECT_NOT_MANAGED, "y".into()));
    }

    fn refused(kind: &str, port: i32) -> Refused {
        Refused { kind: kind.into(), port, why: aggregate::Refusal::TypeNotAllowed }
    }

    #[test]
    fn refusals_make_adapters_ready_false_and_are_named() {
        let ds = server(json!({}));
        let reports =
            Reports::Known { adapters: vec![nfs(12049)], conflicts: vec![], refused: vec![refused("x", 9999)] };
        let s = state(&ds, &reports, &Problems::default());
        assert_eq!(s.ready.0, Some(false));
        assert_eq!(s.ready.1, reasons::ADAPTERS_REFUSED);
        assert_eq!(
            s.ready.2,
            "exposed: nfs:12049; refused reported adapters: x:9999 (type not in spec.adapterServices.allowedTypes)"
        );
        assert_eq!(s.exposed.unwrap().len(), 1, "the allowed adapter is still exposed");
        let problems = Problems { failed: vec!["boom".into()], ..Default::default() };
        let f = state(&ds, &reports, &problems);
        assert_eq!(f.ready.1, reasons::APPLY_FAILED);
        assert_eq!(
            f.ready.2,
            "boom; refused reported adapters: x:9999 (type not in spec.adapterServices.allowedTypes)"
        );
    }

    #[test]
    fn a_refusal_is_announced_once_per_change_of_the_refused_set() {
        use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
        let reports = |r: Vec<Refused>| Reports::Known { adapters: vec![], conflicts: vec![], refused: r };
        let mut ds = server(json!({}));
        let one = reports(vec![refused("x", 9999)]);
        let note = refusal_to_announce(&ds, &one).expect("nothing stored yet: announced");
        assert_eq!(note, "refused reported adapters: x:9999 (type not in spec.adapterServices.allowedTypes)");
        let stored = state(&ds, &one, &Problems::default()).ready.2;
        ds.status = Some(dittofs_api::crd::DittoServerStatus {
            conditions: vec![Condition {
                type_: ADAPTERS_READY.into(),
                status: "False".into(),
                reason: reasons::ADAPTERS_REFUSED.into(),
                message: stored,
                last_transition_time: Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH),
                observed_generation: None,
            }],
            ..Default::default()
        });
        assert_eq!(refusal_to_announce(&ds, &one), None, "the stored condition names the same set");
        let two = reports(vec![refused("x", 9999), refused("y", 1)]);
        assert!(refusal_to_announce(&ds, &two).is_some(), "the set grew");
        assert!(refusal_to_announce(&ds, &reports(vec![refused("y", 1)])).is_some(), "the set changed");
        assert_eq!(refusal_to_announce(&ds, &reports(vec![])), None, "nothing refused: nothing to say");
        assert_eq!(refusal_to_announce(&ds, &Reports::None), None);
    }
}
