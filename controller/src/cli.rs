//! Command line of `dittofs-controller`: flags (each also an env var) and the `crd` subcommand.

use std::net::SocketAddr;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};

use dittofs_api::duration::parse_go_duration;

use dittofs_api::crd::AgentLogFormat;

use crate::config::{AgentTelemetry, Config, random_identity};
use crate::leader::LeaderElectionConfig;

/// Agent image used when neither `--agent-image` nor `spec.agent.image` says otherwise.
pub const DEFAULT_AGENT_IMAGE: &str = concat!("ghcr.io/dittofs/dittofs-agent:", env!("CARGO_PKG_VERSION"));

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormatArg {
    /// One JSON object per line.
    Json,
    /// Human-readable lines.
    Plain,
}

impl From<LogFormatArg> for AgentLogFormat {
    fn from(format: LogFormatArg) -> Self {
        match format {
            LogFormatArg::Json => AgentLogFormat::Json,
            LogFormatArg::Plain => AgentLogFormat::Plain,
        }
    }
}

/// The DittoFS controller: turns DittoServer objects into a DittoFS StatefulSet with the agent injected.
#[derive(Debug, Parser)]
#[command(name = "dittofs-controller", version, about)]
pub struct Cli {
    /// Print something instead of running.
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Agent image injected into server pods (overridable per server by spec.agent.image).
    #[arg(long, env = "DITTOFS_AGENT_IMAGE", default_value = DEFAULT_AGENT_IMAGE)]
    pub agent_image: String,
    /// Address of the admin server (/livez, /readyz, /metrics).
    #[arg(long, env = "ADMIN_ADDR", default_value = "0.0.0.0:8081")]
    pub admin_addr: SocketAddr,
    /// Log format (of the controller, and of every agent whose server sets no spec.agent.logFormat).
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = LogFormatArg::Json)]
    pub log_format: LogFormatArg,
    /// Watch DittoServers of this namespace only (default: all namespaces).
    #[arg(long, env = "WATCH_NAMESPACE")]
    pub namespace: Option<String>,
    /// Elect a leader among replicas through a Lease (turn off only for a single replica).
    #[arg(long, env = "LEADER_ELECT", default_value_t = true, action = clap::ArgAction::Set)]
    pub leader_elect: bool,
    /// Name of the leader-election Lease.
    #[arg(long, env = "LEADER_ELECTION_LEASE_NAME", default_value = "dittofs-controller-leader")]
    pub lease_name: String,
    /// Namespace of the Lease (default: the controller's own namespace).
    #[arg(long, env = "LEADER_ELECTION_NAMESPACE")]
    pub lease_namespace: Option<String>,
    /// How long a silent leader keeps the Lease (Go duration).
    #[arg(long, env = "LEADER_ELECTION_LEASE_DURATION", default_value = "15s", value_parser = duration)]
    pub lease_duration: Duration,
    /// How long a leader keeps leading without renewing (Go duration).
    #[arg(long, env = "LEADER_ELECTION_RENEW_DEADLINE", default_value = "10s", value_parser = duration)]
    pub renew_deadline: Duration,
    /// Pause between election attempts (Go duration).
    #[arg(long, env = "LEADER_ELECTION_RETRY_PERIOD", default_value = "2s", value_parser = duration)]
    pub retry_period: Duration,
    /// Most servers reconciled at once (at least 1).
    #[arg(long, env = "MAX_CONCURRENT_RECONCILES", default_value_t = crate::config::DEFAULT_MAX_CONCURRENT_RECONCILES,
          value_parser = clap::value_parser!(u16).range(1..))]
    pub max_concurrent_reconciles: u16,
    /// This replica's identity (default: the pod name, else a random one).
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print the DittoServer CustomResourceDefinition as YAML.
    Crd,
}

fn duration(s: &str) -> Result<Duration, String> {
    parse_go_duration(s).map_err(|e| e.to_string())
}

/// The in-cluster namespace file, read when no Lease namespace is given.
const NAMESPACE_FILE: &str = "/var/run/secrets/kubernetes.io/serviceaccount/namespace";

impl Cli {
    /// The controller settings the flags describe, with the agents' log and OTEL_* settings read from the
    /// process environment (`RUST_LOG` and [`dittofs_api::agent_env::PASSED_OTEL_VARS`]), once.
    pub fn config(&self) -> Config {
        let lease_namespace = self.lease_namespace.clone().unwrap_or_else(|| {
            std::fs::read_to_string(NAMESPACE_FILE)
                .map(|s| s.trim().to_owned())
                .ok()
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| "default".to_owned())
        });
        Config {
            agent_image: self.agent_image.clone(),
            agent_telemetry: AgentTelemetry::from_lookup(self.log_format.into(), |name| std::env::var(name).ok()),
            identity: self.identity.clone().unwrap_or_else(random_identity),
            namespace: self.namespace.clone(),
            leader_election: self.leader_elect.then(|| LeaderElectionConfig {
                lease_name: self.lease_name.clone(),
                lease_namespace,
                lease_duration: self.lease_duration,
                renew_deadline: self.renew_deadline,
                retry_period: self.retry_period,
            }),
            max_concurrent_reconciles: self.max_concurrent_reconciles,
            api_rediscovery: crate::config::DEFAULT_API_REDISCOVERY,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_become_a_config() {
        let cli = Cli::try_parse_from([
            "dittofs-controller",
            "--agent-image=a:1",
            "--lease-namespace=sys",
            "--lease-duration=4s",
            "--identity=me",
            "--log-format=plain",
        ])
        .unwrap();
        let config = cli.config();
        assert_eq!(config.agent_image, "a:1");
        assert_eq!(config.agent_telemetry.log_format, AgentLogFormat::Plain, "the agents log as the controller does");
        assert_eq!(config.identity, "me");
        let le = config.leader_election.unwrap();
        assert_eq!((le.lease_namespace.as_str(), le.lease_duration), ("sys", Duration::from_secs(4)));
        let off = Cli::try_parse_from(["dittofs-controller", "--leader-elect=false"]).unwrap();
        assert!(off.config().leader_election.is_none());
        assert!(matches!(Cli::try_parse_from(["dittofs-controller", "crd"]).unwrap().command, Some(Command::Crd)));
    }
}
