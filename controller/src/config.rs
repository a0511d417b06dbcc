//! What a controller instance needs besides a client: the agent image, its identity, the watch scope, leader election.

use crate::leader::LeaderElectionConfig;

/// Settings of one controller instance.
#[derive(Debug, Clone)]
pub struct Config {
    /// Agent image injected into every server pod unless `spec.agent.image` overrides it.
    pub agent_image: String,
    /// This instance's identity: the Lease holder and the Events' reporting instance (the pod name in a cluster).
    pub identity: String,
    /// Watch only this namespace (None: all namespaces).
    pub namespace: Option<String>,
    /// Leader election (None: this instance always leads, e.g. a single replica or a test).
    pub leader_election: Option<LeaderElectionConfig>,
}

impl Config {
    /// A single-instance configuration (no leader election, all namespaces) with a random identity.
    pub fn new(agent_image: impl Into<String>) -> Self {
        Self { agent_image: agent_image.into(), identity: random_identity(), namespace: None, leader_election: None }
    }
}

/// `dittofs-controller-<8 hex digits>`: unique enough to tell replicas apart.
pub fn random_identity() -> String {
    let id = uuid::Uuid::new_v4().simple().to_string();
    format!("dittofs-controller-{}", &id[..8])
}
