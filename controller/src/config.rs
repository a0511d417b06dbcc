//! What a controller instance needs besides a client: the agent image and the log and OTLP settings every agent
//! inherits, its identity, the watch scope, leader election.

use std::collections::BTreeMap;

use dittofs_api::agent_env::PASSED_OTEL_VARS;
use dittofs_api::crd::AgentLogFormat;

use crate::leader::LeaderElectionConfig;

/// Settings of one controller instance.
#[derive(Debug, Clone)]
pub struct Config {
    /// Agent image injected into every server pod unless `spec.agent.image` overrides it.
    pub agent_image: String,
    /// The log and OpenTelemetry settings every agent gets unless its server's `spec.agent` overrides them.
    pub agent_telemetry: AgentTelemetry,
    /// This instance's identity: the Lease holder and the Events' reporting instance (the pod name in a cluster).
    pub identity: String,
    /// Watch only this namespace (None: all namespaces).
    pub namespace: Option<String>,
    /// Leader election (None: this instance always leads, e.g. a single replica or a test).
    pub leader_election: Option<LeaderElectionConfig>,
    /// Most servers reconciled at once. Unbounded, a cold start with a thousand servers ran a thousand
    /// reconciles at once, and the Lease renewal queued behind their requests in the apiserver (one user,
    /// one flow): the bench's leader lost its Lease 17 times in four minutes and no server converged.
    pub max_concurrent_reconciles: u16,
    /// How often to ask the apiserver again whether it serves the optional ServiceMonitor API (see
    /// `crate::discovery`): a ServiceMonitor asked for before the prometheus-operator's CRDs were installed
    /// is created within this period.
    pub api_rediscovery: std::time::Duration,
}

/// Default of [`Config::api_rediscovery`]: one small discovery request per period.
pub const DEFAULT_API_REDISCOVERY: std::time::Duration = std::time::Duration::from_secs(300);

/// Default of [`Config::max_concurrent_reconciles`]: a toggle's reconcile never waits behind more than a
/// handful of others, and a cold start keeps the apiserver busy without flooding it (docs/performance.md).
pub const DEFAULT_MAX_CONCURRENT_RECONCILES: u16 = 16;

impl Config {
    /// A single-instance configuration (no leader election, all namespaces) with a random identity; the
    /// agents log JSON with the default filter and export no traces.
    pub fn new(agent_image: impl Into<String>) -> Self {
        Self {
            agent_image: agent_image.into(),
            agent_telemetry: AgentTelemetry::default(),
            identity: random_identity(),
            namespace: None,
            leader_election: None,
            max_concurrent_reconciles: DEFAULT_MAX_CONCURRENT_RECONCILES,
            api_rediscovery: DEFAULT_API_REDISCOVERY,
        }
    }

    /// What every agent starts from: the image and the telemetry settings above.
    pub fn agent_defaults(&self) -> AgentDefaults {
        AgentDefaults { image: self.agent_image.clone(), telemetry: self.agent_telemetry.clone() }
    }
}

/// What the controller gives every agent unless the agent's server says otherwise in `spec.agent`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentDefaults {
    /// The agent image (`--agent-image`).
    pub image: String,
    /// The controller's own log and OpenTelemetry settings.
    pub telemetry: AgentTelemetry,
}

/// The log and OpenTelemetry settings the controller runs with, read once at start and passed on to every
/// agent, so that one `log.*`/`otel.*` setting (the Helm chart's) covers the whole operator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentTelemetry {
    /// The controller's log format (`--log-format`).
    pub log_format: AgentLogFormat,
    /// The controller's `RUST_LOG`, when set and not blank.
    pub log_filter: Option<String>,
    /// The variables of [`PASSED_OTEL_VARS`] the controller was started with (blank ones left out), by
    /// name: a sorted map, so the agents' env comes out in one order every reconcile.
    pub otel: BTreeMap<String, String>,
}

impl Default for AgentTelemetry {
    /// JSON lines, the agent's default filter, no OpenTelemetry variable: the agent's env before these settings existed.
    fn default() -> Self {
        Self { log_format: AgentLogFormat::Json, log_filter: None, otel: BTreeMap::new() }
    }
}

impl AgentTelemetry {
    /// The settings of a controller running with `log_format`, reading `RUST_LOG` and the OTEL_* variables
    /// through `lookup` (the process environment in `main`, a map in tests).
    pub fn from_lookup(log_format: AgentLogFormat, lookup: impl Fn(&str) -> Option<String>) -> Self {
        let get = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());
        let otel = PASSED_OTEL_VARS.iter().filter_map(|&name| Some((name.to_owned(), get(name)?))).collect();
        Self { log_format, log_filter: get(dittofs_api::agent_env::RUST_LOG), otel }
    }
}

/// `dittofs-controller-<8 hex digits>`: unique enough to tell replicas apart.
pub fn random_identity() -> String {
    let id = uuid::Uuid::new_v4().simple().to_string();
    format!("dittofs-controller-{}", &id[..8])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_passed_variables_are_read_and_blank_ones_are_left_out() {
        let env = BTreeMap::from([
            ("RUST_LOG", "info,kube=warn"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318"),
            ("OTEL_TRACES_SAMPLER", " "),
            ("OTEL_SERVICE_NAME", "dittofs-controller-eu"),
            ("OTEL_EXPORTER_OTLP_HEADERS", "authorization=Bearer secret"),
        ]);
        let t = AgentTelemetry::from_lookup(AgentLogFormat::Plain, |name| env.get(name).map(|v| (*v).to_owned()));
        assert_eq!(t.log_format, AgentLogFormat::Plain);
        assert_eq!(t.log_filter.as_deref(), Some("info,kube=warn"));
        let otel: Vec<(&str, &str)> = t.otel.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert_eq!(otel, [("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318")]);
        assert_eq!(AgentTelemetry::from_lookup(AgentLogFormat::Json, |_| None), AgentTelemetry::default());
    }
}
