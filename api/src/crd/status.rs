//! `DittoServer` status: the controller's summary and conditions, its view of the adapters, and one
//! entry per pod written by that pod's agent.
//!
//! Ownership under server-side apply: the controller (field manager
//! [`crate::constants::CONTROLLER_FIELD_MANAGER`]) owns every field except `agents`; each agent owns
//! its own `agents[podName=…]` entry under [`crate::constants::agent_field_manager`].

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Lifecycle phase of a `DittoServer`.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
// No schema description: it would replace the description of each field of this type.
#[schemars(description = "")]
pub enum Phase {
    /// Waiting for the pod to become ready.
    Pending,
    /// The desired replicas are ready.
    Running,
    /// The server cannot run without intervention.
    Failed,
    /// Scaled to zero replicas.
    Stopped,
    /// Being deleted.
    Deleting,
}

impl Phase {
    /// The value shown in `status.phase`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "Pending",
            Self::Running => "Running",
            Self::Failed => "Failed",
            Self::Stopped => "Stopped",
            Self::Deleting => "Deleting",
        }
    }
}

/// Observed state of a `DittoServer`.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct DittoServerStatus {
    /// The metadata.generation the controller last acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Desired number of pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<i32>,
    /// Pods that are ready.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_replicas: Option<i32>,
    /// Pods that have been ready for the StatefulSet's minReadySeconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub available_replicas: Option<i32>,
    /// Phase: Pending, Running, Failed, Stopped or Deleting.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<Phase>,
    /// Hash of the rendered config and the Secrets it references; a change restarts the pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 128))]
    pub config_hash: Option<String>,
    /// Latest observations: Ready, Available, ConfigReady, Progressing, Authenticated, AdaptersReady,
    /// SpecSupported.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,
    /// Adapters running in DittoFS and exposed by a Service, one entry per type (the controller's
    /// view, aggregated from the agents' reports).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub adapters: Vec<AdapterStatus>,
    /// The exposed adapters as "type:port" pairs, e.g. "nfs:12049,smb:12445" (the Adapters column).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub adapters_summary: Option<String>,
    /// One entry per server pod, written by the agent in that pod (keyed by podName).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["podName".into()]))]
    pub agents: Vec<AgentStatus>,
}

/// An adapter as the controller exposes it.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct AdapterStatus {
    /// Adapter type as DittoFS names it, e.g. "nfs" or "smb".
    #[schemars(length(min = 1, max = 63))]
    pub r#type: String,
    /// TCP port the adapter listens on (port 0 of the API already resolved to the type's default).
    #[schemars(range(min = 1, max = 65535))]
    pub port: i32,
    /// Name of the Service exposing the adapter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 63))]
    pub service_name: Option<String>,
}

/// What the agent of one pod last saw. Written only by that agent, by server-side apply.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct AgentStatus {
    /// Name of the pod the agent runs in (the key of this entry).
    #[schemars(length(min = 1, max = 253))]
    pub pod_name: String,
    /// The DittoServer metadata.generation whose settings the agent was running with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Whether the agent reaches the DittoFS API in its pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reachability: Option<Reachability>,
    /// Whether the agent's DittoFS user could log in (source of the Authenticated condition).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<AgentAuth>,
    /// Every adapter DittoFS reports, enabled or not (keyed by type).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub adapters: Vec<AgentAdapterStatus>,
    /// The agent's result for each entry of spec.snapshotPolicies, and for a removed entry whose policy it
    /// could not delete yet (keyed by share).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["share".into()]))]
    pub snapshot_policies: Vec<crate::crd::snapshot::AgentSnapshotPolicyStatus>,
    /// When the agent last read the adapter list successfully.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_poll_time: Option<Time>,
    /// W3C traceparent of the poll that saw the latest change, to follow it into the controller's trace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 55), regex(pattern = crate::crd::cel::TRACEPARENT_REGEX))]
    pub traceparent: Option<String>,
}

/// Reachability of the DittoFS API from the agent.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Reachability {
    /// True when the last adapter poll succeeded; false with the failure's reason (no answer, 5xx,
    /// malformed answer, credentials refused) otherwise.
    pub reachable: bool,
    /// One CamelCase word, e.g. "Reachable", "ConnectionRefused", "Timeout", "TLSError".
    #[schemars(length(min = 1, max = 64))]
    pub reason: String,
    /// Human-readable detail, e.g. the last error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub message: Option<String>,
    /// When reachable last changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<Time>,
}

/// Authentication state of the agent against the DittoFS API.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AgentAuth {
    /// True when the agent holds a valid token.
    pub authenticated: bool,
    /// One CamelCase word: "AuthenticationSucceeded", "APIUnreachable" or "AuthenticationFailed".
    #[schemars(length(min = 1, max = 64))]
    pub reason: String,
    /// Human-readable detail, e.g. the API's error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub message: Option<String>,
    /// When authenticated last changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<Time>,
}

/// One adapter as the agent read it from the DittoFS API.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct AgentAdapterStatus {
    /// Adapter type, e.g. "nfs" or "smb".
    #[schemars(length(min = 1, max = 63))]
    pub r#type: String,
    /// Port the adapter listens on; the API's port 0 is resolved to the type's default.
    /// 0 when DittoFS reports port 0 for a type without a default (or a port out of range):
    /// the adapter is reported but cannot be exposed.
    #[schemars(range(min = 0, max = 65535))]
    pub port: i32,
    /// Enabled in DittoFS's configuration.
    pub enabled: bool,
    /// Started by DittoFS (true even when binding the port failed; see health).
    pub running: bool,
    /// Health reported by DittoFS: healthy, degraded, unhealthy, unknown or disabled.
    /// Only running and healthy means the port is really served. Absent while DittoFS's cached
    /// report predates the adapter's last change (DittoFS caches it up to 5 s): enabled and running
    /// then decide, so a toggle is followed at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32))]
    pub health: Option<String>,
    /// DittoFS's health message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub message: Option<String>,
}

impl AgentAdapterStatus {
    /// Enabled, running, on a usable port, and healthy — or not re-checked since its last change
    /// (`health` absent): the adapter serves its port, as far as the agent can tell.
    pub fn is_serving(&self) -> bool {
        self.enabled
            && self.running
            && (1..=65535).contains(&self.port)
            && self.health.as_deref().is_none_or(|h| h == "healthy")
    }
}

/// Longest `status.adaptersSummary`, in characters (the CRD's bound).
pub const MAX_ADAPTERS_SUMMARY_LEN: usize = 1024;

/// The Adapters column text: `type:port` pairs sorted by type, joined by commas (empty for none).
///
/// Never longer than [`MAX_ADAPTERS_SUMMARY_LEN`] characters (16 types of 63 characters would be):
/// the pairs that fit are kept, in order, and the rest is counted, e.g. `a:1,b:2,…(+3 more)`.
pub fn adapters_summary(adapters: &[AdapterStatus]) -> String {
    let mut pairs: Vec<(&str, i32)> = adapters.iter().map(|a| (a.r#type.as_str(), a.port)).collect();
    pairs.sort_unstable();
    let pairs: Vec<String> = pairs.iter().map(|(t, p)| format!("{t}:{p}")).collect();
    let full = pairs.join(",");
    if full.chars().count() <= MAX_ADAPTERS_SUMMARY_LEN {
        return full;
    }
    let mut kept = String::new();
    for (i, pair) in pairs.iter().enumerate() {
        let sep = if kept.is_empty() { "" } else { "," };
        let rest = pairs.len() - i - 1;
        // Room for this pair and for the count of the pairs after it.
        let len = kept.chars().count() + sep.len() + pair.chars().count();
        if len + format!(",…(+{rest} more)").chars().count() > MAX_ADAPTERS_SUMMARY_LEN {
            return format!("{kept}{sep}…(+{} more)", rest + 1);
        }
        kept.push_str(sep);
        kept.push_str(pair);
    }
    kept
}

#[cfg(test)]
mod tests {
    use super::*;

    fn adapter(t: &str, port: i32) -> AdapterStatus {
        AdapterStatus { r#type: t.into(), port, service_name: None }
    }

    #[test]
    fn summary_is_sorted_by_type() {
        assert_eq!(adapters_summary(&[]), "");
        assert_eq!(adapters_summary(&[adapter("smb", 12445), adapter("nfs", 12049)]), "nfs:12049,smb:12445");
    }

    #[test]
    fn summary_never_exceeds_its_bound() {
        let long: Vec<AdapterStatus> = (0..16).map(|i| adapter(&format!("{i:02}{}", "x".repeat(61)), 65535)).collect();
        let text = adapters_summary(&long);
        assert!(text.chars().count() <= MAX_ADAPTERS_SUMMARY_LEN, "{} characters", text.chars().count());
        let kept = text.matches(":65535").count();
        assert!(kept >= 10, "as many whole pairs as fit: {text}");
        assert!(text.ends_with(&format!(",…(+{} more)", 16 - kept)), "{text}");
        assert!(text.starts_with(&format!("00{}:65535,01", "x".repeat(61))), "sorted, whole pairs first");
        assert_eq!(adapters_summary(&long), text, "deterministic");
        let mut reversed = long.clone();
        reversed.reverse();
        assert_eq!(adapters_summary(&reversed), text, "whatever the order of the input");
    }

    #[test]
    fn serving_needs_enabled_running_and_healthy() {
        let mut a = AgentAdapterStatus {
            r#type: "nfs".into(),
            port: 12049,
            enabled: true,
            running: true,
            health: Some("healthy".into()),
            message: None,
        };
        assert!(a.is_serving());
        a.health = Some("unknown".into());
        assert!(!a.is_serving());
        a.health = None;
        assert!(a.is_serving(), "not re-checked since the change: enabled and running decide");
        a.port = 0;
        assert!(!a.is_serving(), "port 0 cannot be exposed");
    }
}
