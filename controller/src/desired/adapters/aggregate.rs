//! From the agents' reports in `status.agents` to what Kubernetes should expose.
//!
//! Safety rules (DISC-03, hardened): no report from any agent → act on nothing; a report marked
//! unreachable → keep everything as it is; a successful empty report is authoritative. Entries of pods
//! that cannot exist (ordinal ≥ replicas, or another server's naming) are ignored here and pruned by the
//! controller. When pods disagree on a port, the lowest ordinal wins and the disagreement is reported.
//! A server scaled to zero runs nothing: that is known without any report (the Go operator kept the
//! Services and policies of a stopped server).
//!
//! A report is untrusted input: whoever can write the status (a compromised DittoFS container, anyone
//! allowed to patch it) could otherwise publish any listener of the pod. So an adapter is exposed only if
//! its type is in `spec.adapterServices.allowedTypes`, its port is in 1–65535 and is not the API, metrics
//! or agent port, and no other type gets the same object name (names are shortened with a 16-bit hash,
//! so two long types can collide: the type that sorts first keeps the name). Refused entries are
//! returned, to be named in the condition and an Event.
//!
//! Reports go stale: an entry whose last successful poll (or, never having polled, whose unreachability)
//! is older than `adapterServices.reportMaxAgeSeconds` means nobody knows what DittoFS runs now. A healthy
//! agent refreshes its poll time every third of that limit, so only a silent agent or a DittoFS
//! unreachable for that long gets there. Then `onStaleReport` decides: Keep (default) freezes the objects
//! as for an unreachable DittoFS — a broken sidecar must not become an outage of the file server, and a
//! port whose adapter stopped has no listener behind it — or Close removes them (fail closed).
//!
//! A missing health reading (the agent leaves it out while DittoFS's 5 s health cache predates the last
//! change, docs/dittofs-api.md#adapter-status-caching) lets `enabled` and `running` decide. Waiting for a
//! reading instead would protect nothing — a hostile writer simply reports `healthy` — and would delay every
//! honest enable by up to 5 s; the screen above is what bounds a hostile report.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use jiff::{SignedDuration, Timestamp};
use kube::ResourceExt;

use dittofs_api::crd::{AgentStatus, StaleReportPolicy};
use dittofs_api::{DittoServer, agent_env, names};

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

/// Why a reported, serving adapter is not exposed.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Refusal {
    /// Its type is not in the form the agent writes (lower-case letters, digits and '-'): not an agent's report.
    NotSanitized,
    /// Its type is not in `spec.adapterServices.allowedTypes`.
    TypeNotAllowed,
    /// Its port is one the pod serves something else on (what, as a phrase).
    ReservedPort(&'static str),
    /// Another type, which sorts first, gives the same object name.
    NameTaken { name: String, kept: String },
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotSanitized => f.write_str("type not in the agent's form: lower-case letters, digits and '-'"),
            Self::TypeNotAllowed => f.write_str("type not in spec.adapterServices.allowedTypes"),
            Self::ReservedPort(what) => write!(f, "{what}, never exposed"),
            Self::NameTaken { name, kept } => write!(f, "object name {name} already taken by type {kept}"),
        }
    }
}

/// A reported adapter the controller refuses to expose.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Refused {
    /// The type as reported.
    pub kind: String,
    pub port: i32,
    pub why: Refusal,
}

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Escaped: the type is whatever the status writer put there, and it ends up in Events and logs.
        write!(f, "{}:{} ({})", self.kind.escape_debug(), self.port, self.why)
    }
}

/// What the reports allow the controller to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reports {
    /// No agent has completed a poll: create and delete nothing adapter-related.
    None,
    /// An agent cannot reach DittoFS: keep every adapter object as it is.
    Unreachable { pod: String, reason: String, message: String },
    /// The entry of `pod` has not been refreshed since `since`, longer than the limit allows: keep every
    /// adapter object as it is (`onStaleReport: Keep`; with Close the reports are [`Reports::Known`] empty
    /// and [`is_stale`] says why).
    Stale { pod: String, since: Timestamp },
    /// Authoritative: exactly these adapters (sorted by sanitized type) should be exposed; `refused`
    /// (sorted, without repeats) were reported as serving but are not.
    Known { adapters: Vec<Exposed>, conflicts: Vec<PortConflict>, refused: Vec<Refused> },
}

impl Reports {
    /// Authoritative: nothing is exposed.
    pub fn nothing() -> Self {
        Self::Known { adapters: Vec::new(), conflicts: Vec::new(), refused: Vec::new() }
    }
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

/// The ports of the pod that serve something other than an adapter, with what they serve.
fn non_adapter_ports(ds: &DittoServer) -> Vec<(i32, &'static str)> {
    let mut ports = vec![
        (ds.spec.control_plane.port, "the DittoFS API port (spec.controlPlane.port)"),
        (i32::from(agent_env::DEFAULT_ADMIN_PORT), "the agent's admin port"),
    ];
    if let Some(metrics) = ds.spec.metrics.as_ref().filter(|m| m.enabled) {
        ports.push((metrics.port, "the metrics port (spec.metrics.port)"));
    }
    ports
}

/// Why the controller refuses a serving adapter, if it does (the name check comes later, over all).
/// Ports outside 1–65535 never get here: the status schema bounds them and `is_serving` requires a usable one.
fn screen(
    ds: &DittoServer,
    reserved: &[(i32, &'static str)],
    kind: &str,
    sanitized: &str,
    port: i32,
) -> Option<Refusal> {
    if kind != sanitized {
        return Some(Refusal::NotSanitized);
    }
    if !ds.spec.adapter_services.allows(sanitized) {
        return Some(Refusal::TypeNotAllowed);
    }
    reserved.iter().find(|(p, _)| *p == port).map(|(_, what)| Refusal::ReservedPort(what))
}

/// A serving adapter that passed the screen, from one pod.
struct Candidate<'a> {
    pod: &'a str,
    kind: &'a str,
    sanitized: String,
    port: i32,
}

/// The entries of the pods the spec allows, in ordinal order.
fn live_agents(ds: &DittoServer) -> Vec<&AgentStatus> {
    let mut live: Vec<(u32, &AgentStatus)> =
        agents(ds).filter_map(|a| live_ordinal(ds, &a.pod_name).map(|o| (o, a))).collect();
    live.sort_by_key(|(ordinal, _)| *ordinal);
    live.into_iter().map(|(_, a)| a).collect()
}

/// Since when an entry's knowledge dates: its last successful poll, or, never having polled, the moment
/// it found DittoFS unreachable. None for an agent that has just started (nothing to go stale).
fn known_since(agent: &AgentStatus) -> Option<Timestamp> {
    let unreachable_since =
        || agent.reachability.as_ref().filter(|r| !r.reachable).and_then(|r| r.last_transition_time.as_ref());
    agent.last_poll_time.as_ref().or_else(unreachable_since).map(|t| t.0)
}

fn max_age(ds: &DittoServer) -> SignedDuration {
    SignedDuration::from_secs(i64::from(ds.spec.adapter_services.report_max_age_seconds.max(1)))
}

/// The first entry (pod, since) that is stale at `now`.
pub fn is_stale(ds: &DittoServer, now: Timestamp) -> Option<(String, Timestamp)> {
    if ds.spec.replicas <= 0 {
        return None;
    }
    let limit = max_age(ds);
    live_agents(ds).into_iter().find_map(|a| {
        let since = known_since(a)?;
        (now.duration_since(since) > limit).then(|| (a.pod_name.clone(), since))
    })
}

/// When the first entry that is fresh at `now` goes stale (for a timely re-check).
pub fn next_stale_at(ds: &DittoServer, now: Timestamp) -> Option<Timestamp> {
    let limit = max_age(ds);
    let deadlines = live_agents(ds).into_iter().filter_map(known_since).filter_map(|t| t.checked_add(limit).ok());
    deadlines.filter(|d| *d >= now).min()
}

/// Reduces the agents' entries to one decision at `now`.
pub fn aggregate(ds: &DittoServer, now: Timestamp) -> Reports {
    if ds.spec.replicas <= 0 {
        return Reports::nothing();
    }
    if let Some((pod, since)) = is_stale(ds, now) {
        return match ds.spec.adapter_services.on_stale_report {
            StaleReportPolicy::Keep => Reports::Stale { pod, since },
            StaleReportPolicy::Close => Reports::nothing(),
        };
    }
    let live = live_agents(ds);
    if let Some(a) = live.iter().find(|a| a.reachability.as_ref().is_some_and(|r| !r.reachable)) {
        let r = a.reachability.as_ref().expect("checked above");
        return Reports::Unreachable {
            pod: a.pod_name.clone(),
            reason: r.reason.clone(),
            message: r.message.clone().unwrap_or_default(),
        };
    }
    // Only entries with a completed poll count; an agent that just started has not seen anything yet.
    let polled: Vec<&AgentStatus> = live
        .into_iter()
        .filter(|a| a.last_poll_time.is_some() && a.reachability.as_ref().is_some_and(|r| r.reachable))
        .collect();
    if polled.is_empty() {
        return Reports::None;
    }
    let reserved = non_adapter_ports(ds);
    let cr = ds.name_any();
    let mut refused: BTreeSet<Refused> = BTreeSet::new();
    // By final object name, each list in ordinal order.
    let mut by_name: BTreeMap<String, Vec<Candidate>> = BTreeMap::new();
    for agent in &polled {
        for adapter in &agent.adapters {
            // Enabled, running, a usable port, healthy or not re-checked since the change (see the module doc).
            if !adapter.is_serving() {
                continue;
            }
            let sanitized = names::sanitize_adapter_type(&adapter.r#type);
            if let Some(why) = screen(ds, &reserved, &adapter.r#type, &sanitized, adapter.port) {
                refused.insert(Refused { kind: adapter.r#type.clone(), port: adapter.port, why });
                continue;
            }
            let name = names::adapter_object_name(&cr, &sanitized);
            let candidate = Candidate { pod: &agent.pod_name, kind: &adapter.r#type, sanitized, port: adapter.port };
            by_name.entry(name).or_default().push(candidate);
        }
    }
    let mut adapters = Vec::new();
    let mut conflicts = Vec::new();
    for (name, candidates) in by_name {
        // Whatever the order of the reports, the type that sorts first keeps the name.
        let winner = candidates.iter().map(|c| (c.sanitized.as_str(), c.kind)).min().expect("never empty");
        let (won, lost): (Vec<&Candidate>, Vec<&Candidate>) =
            candidates.iter().partition(|c| (c.sanitized.as_str(), c.kind) == winner);
        let first = won[0];
        for c in lost {
            let why = Refusal::NameTaken { name: name.clone(), kept: first.kind.to_owned() };
            refused.insert(Refused { kind: c.kind.to_owned(), port: c.port, why });
        }
        if won.iter().any(|c| c.port != first.port) {
            let reports = won.iter().map(|c| (c.pod.to_owned(), c.port)).collect();
            conflicts.push(PortConflict { sanitized: first.sanitized.clone(), reports });
        }
        adapters.push(Exposed { kind: first.kind.to_owned(), sanitized: first.sanitized.clone(), port: first.port });
    }
    adapters.sort_by(|a, b| a.sanitized.cmp(&b.sanitized));
    conflicts.sort_by(|a, b| a.sanitized.cmp(&b.sanitized));
    Reports::Known { adapters, conflicts, refused: refused.into_iter().collect() }
}

#[cfg(test)]
mod tests;
