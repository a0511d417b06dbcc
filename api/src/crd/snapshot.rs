//! `spec.snapshotPolicies` (the Go operator's field, same names and meanings) and the agent's report of what
//! it made of each entry (`status.agents[].snapshotPolicies`).
//!
//! The agent applies the policies to its own DittoFS with a short admin session, since DittoFS serves
//! `/shares/**` to admins only (docs/architecture.md#snapshot-policies). DittoFS is the authority on what a
//! policy may say; the CEL rules here refuse early what it would refuse anyway, so most mistakes are seen by
//! `kubectl apply` rather than in the status.

use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Most entries of `spec.snapshotPolicies` (and of an agent's report of them).
pub const MAX_POLICIES: usize = 64;

/// Rule text: a share name as DittoFS normalizes it — at most one leading slash and something after it.
pub const SHARE_NAME_RULE: &str = "self.matches('^/?[^/]')";
/// Message of [`SHARE_NAME_RULE`].
pub const SHARE_NAME_MESSAGE: &str = "share must name a share, such as /archive: at most one leading slash";
/// Rule text: an interval DittoFS's `schedule.ParseInterval` reads: a Go duration or @hourly, @daily, @weekly.
pub const INTERVAL_RULE: &str = "self.matches('^(?i)@(hourly|daily|weekly)$') || \
     (self.matches('^([0-9]+([.][0-9]+)?(ns|us|µs|μs|ms|s|m|h))+$') && self.matches('[1-9]'))";
/// Message of [`INTERVAL_RULE`].
pub const INTERVAL_MESSAGE: &str =
    "interval must be a positive Go duration such as 24h or 1h30m, or one of @hourly, @daily, @weekly";
/// Rule text: a TTL is a Go duration (DittoFS refuses negative ones; the format has no sign).
pub const TTL_RULE: &str = "self == '' || self == '0' || self.matches('^([0-9]+([.][0-9]+)?(ns|us|µs|μs|ms|s|m|h))+$')";
/// Message of [`TTL_RULE`].
pub const TTL_MESSAGE: &str = "ttl must be a Go duration such as 720h (empty or 0: no age bound)";
/// The `name_prefix` pattern of DittoFS's snapshot-policy handler.
pub const NAME_PREFIX_REGEX: &str = "^[A-Za-z0-9_-]{0,64}$";
/// Rule text: see [`NAME_PREFIX_REGEX`].
pub const NAME_PREFIX_RULE: &str = "self.matches('^[A-Za-z0-9_-]{0,64}$')";
/// Message of [`NAME_PREFIX_RULE`].
pub const NAME_PREFIX_MESSAGE: &str = "namePrefix must be at most 64 letters, digits, '_' or '-'";
/// Rule text on the list: `x` and `/x` are the same share to DittoFS, so they may not both appear.
pub const SAME_SHARE_RULE: &str = "self.all(p, !p.share.startsWith('/') || !self.exists(q, '/' + q.share == p.share))";
/// Message of [`SAME_SHARE_RULE`].
pub const SAME_SHARE_MESSAGE: &str =
    "snapshotPolicies: two entries name the same share (\"x\" and \"/x\" are one share to DittoFS)";

/// A scheduled snapshot policy of one share (DittoFS `PUT /api/v1/shares/{share}/snapshot-policy`).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct SnapshotPolicySpec {
    /// The share the policy applies to, e.g. "/archive" ("archive" names the same share). The share itself
    /// is created through the DittoFS API; until it exists the entry is reported pending and retried.
    #[schemars(length(min = 1, max = 255))]
    #[x_kube(validation = crate::crd::cel::rule(SHARE_NAME_RULE, SHARE_NAME_MESSAGE))]
    pub share: String,
    /// Snapshot cadence: a Go duration ("24h", "6h") or @hourly, @daily, @weekly.
    #[schemars(length(min = 1, max = 32))]
    #[x_kube(validation = crate::crd::cel::rule(INTERVAL_RULE, INTERVAL_MESSAGE))]
    pub interval: String,
    /// Keep only the newest N scheduler-created snapshots. Unset or 0: no count bound.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub keep_last: Option<i32>,
    /// Prune scheduler-created snapshots older than this Go duration. Unset: no age bound.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32))]
    #[x_kube(validation = crate::crd::cel::rule(TTL_RULE, TTL_MESSAGE))]
    pub ttl: Option<String>,
    /// Whether DittoFS takes the snapshots. Unset: true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// Label prefix of scheduler-created snapshots. Unset: DittoFS's default ("scheduled").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    #[x_kube(validation = crate::crd::cel::rule(NAME_PREFIX_RULE, NAME_PREFIX_MESSAGE))]
    pub name_prefix: Option<String>,
}

impl SnapshotPolicySpec {
    /// The share as DittoFS names it (`normalizeShareName`): exactly one leading slash.
    pub fn share_name(&self) -> String {
        format!("/{}", self.share.trim_start_matches('/'))
    }
}

/// What the agent made of one entry of `spec.snapshotPolicies` on its DittoFS.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[schemars(description = "")]
pub enum SnapshotPolicyState {
    /// DittoFS holds the policy as the spec says.
    Applied,
    /// The share does not exist yet (or DittoFS was not reachable): retried every 30 s.
    Pending,
    /// DittoFS refused the policy, or the admin login failed (the message says which); retried when the
    /// entry or the admin password changes, or DittoFS restarts.
    Failed,
}

/// One share's snapshot policy as the agent last applied it (keyed by share).
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct AgentSnapshotPolicyStatus {
    /// The share, as DittoFS names it (with its leading slash).
    #[schemars(length(min = 1, max = 256))]
    pub share: String,
    /// Applied, Pending or Failed.
    pub state: SnapshotPolicyState,
    /// True when the agent wrote this share's policy to DittoFS: only such a policy is deleted when its
    /// entry leaves the spec (a policy made by someone else through the API is left alone).
    #[serde(default)]
    pub managed: bool,
    /// The DittoServer generation whose entry this result is for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Why the policy is pending or failed: DittoFS's own error text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub message: Option<String>,
}
