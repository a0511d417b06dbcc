//! The status the controller owns, computed from what it observed, and whether it differs from the stored one.
//!
//! `status.agents` belongs to the agents (one field manager per pod) and is never part of the
//! controller's status: it is read here (for Authenticated) but left out of what is applied and compared.
//! A condition's `lastTransitionTime` moves only when its status flips.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;

use dittofs_api::conditions::{self as c, reasons};
use dittofs_api::crd::unimplemented::unimplemented_message;
use dittofs_api::crd::{AgentStatus, DittoServerStatus, Phase, adapters_summary};
use dittofs_api::{DittoServer, unimplemented_fields};

use super::adapters::AdaptersState;
use super::config::metrics;
use super::service_monitor::Monitor;

/// Reason of Ready=False when the stored spec does not parse (an object that bypassed the schema).
pub const INVALID_SPEC_REASON: &str = "InvalidSpec";

/// State of the rendered-config ConfigMap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigMapState {
    /// It does not exist.
    Missing,
    /// It exists without `config.yaml`.
    NoConfigKey,
    /// It holds `config.yaml`.
    Present,
}

/// What the StatefulSet reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StatefulSetState {
    /// `metadata.generation`.
    pub generation: i64,
    /// `status.observedGeneration`.
    pub observed_generation: i64,
    /// `status.readyReplicas`.
    pub ready_replicas: i32,
    /// `status.availableReplicas`.
    pub available_replicas: i32,
}

/// Everything the status is computed from besides the server itself.
#[derive(Debug, Clone, PartialEq)]
pub struct Observed {
    /// The ConfigMap.
    pub config_map: ConfigMapState,
    /// The StatefulSet, if it exists.
    pub statefulset: Option<StatefulSetState>,
    /// The pod template's config hash.
    pub config_hash: String,
    /// Why DittoFS would refuse its JWT key (too short), if it would: ConfigReady is False.
    pub jwt_problem: Option<String>,
    /// What the adapter part exposed (`status.adapters`) and its `AdaptersReady` condition.
    pub adapters: AdaptersState,
    /// What is wrong with the `database.postgresSecretRef` Secret, if anything: ConfigReady is False.
    pub database_secret_problem: Option<String>,
    /// Which other referenced Secrets or keys are missing (JWT, LDAP, Kerberos): ConfigReady is False.
    pub secrets_problem: Option<String>,
    /// The Percona cluster, with `percona.enabled` (DatabaseReady; absent otherwise, as in Go).
    pub percona: Option<super::database::PerconaObserved>,
    /// What became of the ServiceMonitor (MetricsReady).
    pub monitor: Monitor,
}

/// The status the controller wants: everything but `agents`.
///
/// `adapters` and `adaptersSummary` come from the adapter part; when it did not act (no report, an
/// unreachable DittoFS) the stored ones are carried over, since this field manager omitting them
/// would delete them.
pub fn desired_status(ds: &DittoServer, observed: &Observed, now: Timestamp) -> DittoServerStatus {
    let current = ds.status.as_ref();
    let generation = ds.metadata.generation.unwrap_or_default();
    let desired_replicas = ds.spec.replicas;
    let sts = observed.statefulset.unwrap_or_default();
    let ready = sts.ready_replicas;
    let mut conds = Conditions::new(current, generation, now);

    let config_ready = conds.set(
        c::CONFIG_READY,
        match (observed.config_map, &observed.jwt_problem) {
            (ConfigMapState::Present, _) if observed.database_secret_problem.is_some() => {
                let problem = observed.database_secret_problem.clone().unwrap_or_default();
                (false, reasons::DATABASE_SECRET_MISSING, problem)
            }
            (ConfigMapState::Present, _) if observed.secrets_problem.is_some() => {
                let problem = observed.secrets_problem.clone().unwrap_or_default();
                (false, reasons::SECRET_MISSING, problem)
            }
            (ConfigMapState::Present, Some(problem)) => (false, reasons::JWT_SECRET_TOO_SHORT, problem.clone()),
            (ConfigMapState::Present, None) => (true, reasons::CONFIG_VALID, "config.yaml rendered".into()),
            (ConfigMapState::Missing, _) => {
                (false, reasons::CONFIG_MAP_NOT_FOUND, "the config ConfigMap does not exist".into())
            }
            (ConfigMapState::NoConfigKey, _) => {
                (false, reasons::CONFIG_MISSING, "the config ConfigMap has no config.yaml".into())
            }
        },
    );
    let available = conds.set(
        c::AVAILABLE,
        if desired_replicas == 0 {
            (true, reasons::STOPPED, "scaled to zero replicas".into())
        } else if ready >= 1 {
            (true, reasons::MINIMUM_REPLICAS_AVAILABLE, format!("{ready} of {desired_replicas} replicas ready"))
        } else {
            (false, reasons::NO_REPLICAS_AVAILABLE, "no replica is ready".into())
        },
    );
    let progressing = conds.set(
        c::PROGRESSING,
        if observed.statefulset.is_none() {
            // Not created yet, or held back while its database is not usable (DatabaseReady/ConfigReady say why).
            (true, reasons::STATEFULSET_UPDATING, "the StatefulSet does not exist yet".into())
        } else if sts.observed_generation < sts.generation {
            (true, reasons::STATEFULSET_UPDATING, "the StatefulSet is rolling out".into())
        } else if ready != desired_replicas {
            (true, reasons::SCALING_REPLICAS, format!("{ready} of {desired_replicas} replicas ready"))
        } else {
            (false, reasons::RECONCILE_COMPLETE, "the StatefulSet is up to date".into())
        },
    );
    let database_ready = observed.percona.as_ref().map(|percona| {
        conds.set(
            c::DATABASE_READY,
            match super::database::percona_wait(ds, percona) {
                Some((reason, message)) => (false, reason, message),
                None => {
                    let cluster = super::database::cluster_name(&ds.metadata.name.clone().unwrap_or_default());
                    (true, reasons::PERCONA_READY, format!("PostgreSQL cluster {cluster} is ready"))
                }
            },
        )
    });
    let authenticated = conds.set_tri(c::AUTHENTICATED, authenticated(current));
    conds.set_tri(c::ADAPTERS_READY, observed.adapters.ready.clone());
    if let Some(ready) = metrics_ready(ds, observed.monitor) {
        conds.set_tri(c::METRICS_READY, ready);
    }
    let fields = unimplemented_fields(&ds.spec);
    conds.set(
        c::SPEC_SUPPORTED,
        if fields.is_empty() {
            (true, reasons::ALL_FIELDS_SUPPORTED, "every field set in the spec is implemented".into())
        } else {
            (false, reasons::UNIMPLEMENTED_FIELDS, unimplemented_message(&fields))
        },
    );

    let mut unmet = Vec::new();
    if !config_ready {
        unmet.push("ConfigNotReady");
    }
    if !available {
        unmet.push("NotAvailable");
    }
    if progressing {
        unmet.push("StillProgressing");
    }
    if database_ready == Some(false) {
        unmet.push("DatabaseNotReady");
    }
    if desired_replicas > 0 && authenticated != Some(true) {
        unmet.push("NotAuthenticated");
    }
    conds.set(
        c::READY,
        if unmet.is_empty() {
            (true, reasons::ALL_CONDITIONS_MET, "DittoServer is fully operational".into())
        } else {
            (false, reasons::CONDITIONS_NOT_MET, format!("Not ready: [{}]", unmet.join(" ")))
        },
    );

    DittoServerStatus {
        observed_generation: Some(generation),
        replicas: Some(desired_replicas),
        ready_replicas: Some(ready),
        available_replicas: Some(sts.available_replicas),
        phase: Some(if desired_replicas == 0 {
            Phase::Stopped
        } else if ready == desired_replicas {
            Phase::Running
        } else {
            Phase::Pending
        }),
        config_hash: Some(observed.config_hash.clone()),
        conditions: conds.finish(),
        adapters_summary: match &observed.adapters.exposed {
            Some(exposed) => Some(adapters_summary(exposed)).filter(|s| !s.is_empty()),
            None => current.and_then(|s| s.adapters_summary.clone()),
        },
        adapters: observed
            .adapters
            .exposed
            .clone()
            .unwrap_or_else(|| current.map(|s| s.adapters.clone()).unwrap_or_default()),
        agents: Vec::new(),
    }
}

/// MetricsReady while metrics are enabled (None: they are not, and the condition is left out).
fn metrics_ready(ds: &DittoServer, monitor: Monitor) -> Option<(Option<bool>, &'static str, String)> {
    let m = metrics(&ds.spec)?;
    let service = dittofs_api::names::metrics_service(&ds.metadata.name.clone().unwrap_or_default());
    let served = format!("Service {service} serves the metrics on port {} at {}", m.port, m.path);
    Some(match monitor {
        Monitor::NotWanted => (Some(true), reasons::METRICS_SERVED, served),
        Monitor::Applied => {
            (Some(true), reasons::SERVICE_MONITOR_APPLIED, format!("{served}; ServiceMonitor {service} selects it"))
        }
        Monitor::ApiMissing => (
            Some(false),
            reasons::SERVICE_MONITOR_API_MISSING,
            format!(
                "{served}, but metrics.serviceMonitor.enabled asks for a ServiceMonitor and this cluster does not \
                 serve monitoring.coreos.com/v1 ServiceMonitor: install the prometheus-operator's CRDs (the \
                 controller looks again every few minutes) or turn metrics.serviceMonitor.enabled off"
            ),
        ),
        Monitor::ApiUnknown => (
            None,
            reasons::SERVICE_MONITOR_API_UNKNOWN,
            format!("{served}; whether this cluster serves ServiceMonitors is not known yet (retrying)"),
        ),
    })
}

/// The status of a server that cannot be reconciled at all — its stored spec does not parse
/// ([`INVALID_SPEC_REASON`]) or a child's name is taken by someone else's object
/// ([`reasons::CHILD_NOT_OWNED`]): Ready=False with `reason` and `message`, the rest kept.
pub fn blocked_status(
    current: Option<&DittoServerStatus>,
    generation: i64,
    reason: &str,
    message: &str,
    now: Timestamp,
) -> DittoServerStatus {
    let mut status = owned_part(current);
    let mut conds = Conditions::new(current, generation, now);
    conds.set(c::READY, (false, reason, message.to_owned()));
    // Keep the other conditions as they were; only Ready changes.
    let ready = conds.finish();
    status.conditions.retain(|cond| cond.type_ != c::READY);
    status.conditions.extend(ready);
    status.conditions.sort_by_key(|cond| order(&cond.type_));
    status.observed_generation = Some(generation);
    status
}

/// The part of a stored status the controller owns (everything but `agents`).
pub fn owned_part(status: Option<&DittoServerStatus>) -> DittoServerStatus {
    let mut owned = status.cloned().unwrap_or_default();
    owned.agents.clear();
    owned
}

/// Whether `desired` differs from what is stored: the only case where the status is written.
pub fn needs_write(current: Option<&DittoServerStatus>, desired: &DittoServerStatus) -> bool {
    owned_part(current) != *desired
}

/// Authenticated from the agents' reports: True if any agent holds a token, False with the first
/// agent's reason otherwise, Unknown while no agent reported.
fn authenticated(current: Option<&DittoServerStatus>) -> (Option<bool>, &'static str, String) {
    let agents: &[AgentStatus] = current.map_or(&[], |s| &s.agents);
    let auths: Vec<_> = agents.iter().filter_map(|a| a.auth.as_ref().map(|auth| (a, auth))).collect();
    if let Some((agent, _)) = auths.iter().find(|(_, auth)| auth.authenticated) {
        return (Some(true), reasons::AUTHENTICATION_SUCCEEDED, format!("agent in {} is logged in", agent.pod_name));
    }
    match auths.first() {
        Some((agent, auth)) => {
            let reason = if auth.reason == reasons::API_UNREACHABLE {
                reasons::API_UNREACHABLE
            } else {
                reasons::AUTHENTICATION_FAILED
            };
            let detail = auth.message.clone().unwrap_or_else(|| auth.reason.clone());
            (Some(false), reason, format!("agent in {}: {detail}", agent.pod_name))
        }
        None => (None, reasons::NO_AGENT_REPORT, "no agent has reported yet".into()),
    }
}

fn order(type_: &str) -> usize {
    c::ALL.iter().position(|t| *t == type_).unwrap_or(c::ALL.len())
}

/// Builds conditions in the order of `conditions::ALL`, keeping transition times of unchanged statuses.
struct Conditions<'a> {
    current: &'a [Condition],
    generation: i64,
    now: Time,
    out: Vec<Condition>,
}

impl<'a> Conditions<'a> {
    fn new(current: Option<&'a DittoServerStatus>, generation: i64, now: Timestamp) -> Self {
        // Stored times have second precision: truncate so a stored time and a fresh one compare equal.
        let now = Timestamp::from_second(now.as_second()).unwrap_or(now);
        Self { current: current.map_or(&[], |s| &s.conditions), generation, now: Time(now), out: Vec::new() }
    }

    /// Sets a True/False condition and returns whether it is True.
    fn set(&mut self, type_: &str, (ok, reason, message): (bool, &str, String)) -> bool {
        self.set_tri(type_, (Some(ok), reason, message));
        ok
    }

    /// Sets a True/False/Unknown condition and returns its value.
    fn set_tri(&mut self, type_: &str, (value, reason, message): (Option<bool>, &str, String)) -> Option<bool> {
        let status = match value {
            Some(true) => c::STATUS_TRUE,
            Some(false) => c::STATUS_FALSE,
            None => c::STATUS_UNKNOWN,
        };
        let since = self
            .current
            .iter()
            .find(|old| old.type_ == type_ && old.status == status)
            .map_or_else(|| self.now.clone(), |old| old.last_transition_time.clone());
        self.out.push(Condition {
            type_: type_.into(),
            status: status.into(),
            reason: reason.into(),
            message,
            observed_generation: Some(self.generation),
            last_transition_time: since,
        });
        value
    }

    fn finish(mut self) -> Vec<Condition> {
        self.out.sort_by_key(|cond| order(&cond.type_));
        self.out
    }
}

#[cfg(test)]
mod tests;
