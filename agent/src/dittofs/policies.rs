//! The snapshot-policy surface of DittoFS as the agent uses it (docs/dittofs-api.md#snapshot-policies): the
//! wire shapes of `GET /api/v1/snapshot-policies` and `PUT /api/v1/shares/{name}/snapshot-policy`, the path of
//! a share, and whether a stored policy already says what a spec entry asks for. All of it is admin-only in
//! DittoFS, so every call carries a short-lived admin token.

use std::time::Duration;

use dittofs_api::{crd::SnapshotPolicySpec, duration::parse_go_duration};
use serde::{Deserialize, Serialize};

/// One element of `GET /api/v1/snapshot-policies` (`dto.SnapshotPolicy`); interval and ttl are Go
/// `Duration.String()` texts ("24h0m0s"), a zero ttl is omitted.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ApiSnapshotPolicy {
    pub share: String,
    pub enabled: bool,
    pub interval: String,
    #[serde(default)]
    pub keep_last: i64,
    #[serde(default)]
    pub ttl: Option<String>,
    #[serde(default)]
    pub name_prefix: Option<String>,
}

/// The body of the PUT (`dto.UpsertSnapshotPolicyRequest`). `enabled` is always sent: DittoFS reads an
/// omitted one as true, and the spec's default is the same, so sending it keeps both explicit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PolicyBody {
    pub interval: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keep_last: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ttl: Option<String>,
    pub enabled: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name_prefix: Option<String>,
}

impl PolicyBody {
    pub fn of(spec: &SnapshotPolicySpec) -> PolicyBody {
        PolicyBody {
            interval: spec.interval.clone(),
            keep_last: spec.keep_last.filter(|n| *n != 0),
            ttl: spec.ttl.clone().filter(|t| !t.is_empty()),
            enabled: spec.enabled.unwrap_or(true),
            name_prefix: spec.name_prefix.clone().filter(|p| !p.is_empty()),
        }
    }

    /// Whether DittoFS's stored `policy` already is this body, compared as DittoFS stores them (durations as
    /// values: "24h", "@daily" and "24h0m0s" are the same interval). Anything that does not parse never
    /// matches, so it is sent and DittoFS's own refusal is what the status shows.
    pub fn matches(&self, policy: &ApiSnapshotPolicy) -> bool {
        let (Some(want), Some(have)) = (interval(&self.interval), duration(&policy.interval)) else { return false };
        let want_ttl = self.ttl.as_deref().map_or(Some(Duration::ZERO), duration);
        let have_ttl = policy.ttl.as_deref().map_or(Some(Duration::ZERO), duration);
        want == have
            && want_ttl.is_some()
            && want_ttl == have_ttl
            && i64::from(self.keep_last.unwrap_or(0)) == policy.keep_last
            && self.enabled == policy.enabled
            && self.name_prefix.as_deref().unwrap_or("") == policy.name_prefix.as_deref().unwrap_or("")
    }
}

/// `schedule.ParseInterval`'s shorthands, else a duration.
fn interval(text: &str) -> Option<Duration> {
    let hours = match text.trim().to_ascii_lowercase().as_str() {
        "@hourly" => 1,
        "@daily" => 24,
        "@weekly" => 168,
        _ => return duration(text.trim()),
    };
    Some(Duration::from_secs(hours * 3600))
}

/// A Go duration as DittoFS writes or accepts it ("0" is zero); `None` beyond Go's range (about 292 years).
fn duration(text: &str) -> Option<Duration> {
    if text == "0" {
        return Some(Duration::ZERO);
    }
    parse_go_duration(text).ok().filter(|d| d.as_nanos() <= i64::MAX as u128)
}

/// `/api/v1/shares/{name}/snapshot-policy` for a share: DittoFS adds the leading slash back
/// (`normalizeShareName`) and path-unescapes the parameter, so a name with inner slashes travels as `%2F`.
pub fn policy_path(share: &str) -> String {
    let mut name = String::new();
    for byte in share.trim_start_matches('/').bytes() {
        if byte.is_ascii_alphanumeric() || b"-_.~".contains(&byte) {
            name.push(byte as char);
        } else {
            name.push_str(&format!("%{byte:02X}"));
        }
    }
    format!("/api/v1/shares/{name}/snapshot-policy")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(json: serde_json::Value) -> SnapshotPolicySpec {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn a_stored_policy_matches_the_entry_it_came_from() {
        // The answer DittoFS v0.29.0 gave to PUT {"interval":"24h","keep_last":3,"ttl":"90m","name_prefix":"k8s"}.
        let stored: ApiSnapshotPolicy = serde_json::from_str(
            r#"{"share":"/archive","enabled":true,"interval":"24h0m0s","keep_last":3,"ttl":"1h30m0s",
                "name_prefix":"k8s","created_at":"2026-12-07T07:58:04.868857939Z","updated_at":"2026-12-07T07:58:04Z"}"#,
        )
        .unwrap();
        let body = PolicyBody::of(&spec(
            serde_json::json!({"share": "archive", "interval": "@Daily", "keepLast": 3, "ttl": "90m", "namePrefix": "k8s"}),
        ));
        assert!(body.matches(&stored));
        for changed in [
            serde_json::json!({"share": "/archive", "interval": "12h", "keepLast": 3, "ttl": "90m", "namePrefix": "k8s"}),
            serde_json::json!({"share": "/archive", "interval": "24h", "ttl": "90m", "namePrefix": "k8s"}),
            serde_json::json!({"share": "/archive", "interval": "24h", "keepLast": 3, "namePrefix": "k8s"}),
            serde_json::json!({"share": "/archive", "interval": "24h", "keepLast": 3, "ttl": "90m"}),
            serde_json::json!({"share": "/archive", "interval": "24h", "keepLast": 3, "ttl": "90m", "namePrefix": "k8s", "enabled": false}),
            serde_json::json!({"share": "/archive", "interval": "9999999999h", "keepLast": 3, "ttl": "90m", "namePrefix": "k8s"}),
        ] {
            assert!(!PolicyBody::of(&spec(changed.clone())).matches(&stored), "{changed}");
        }
    }

    #[test]
    fn bodies_leave_out_what_dittofs_defaults_and_paths_escape_the_name() {
        let body =
            PolicyBody::of(&spec(serde_json::json!({"share": "/a", "interval": "1h", "keepLast": 0, "ttl": ""})));
        assert_eq!(serde_json::to_value(&body).unwrap(), serde_json::json!({"interval": "1h", "enabled": true}));
        assert_eq!(policy_path("/archive"), "/api/v1/shares/archive/snapshot-policy");
        assert_eq!(policy_path("a/b c"), "/api/v1/shares/a%2Fb%20c/snapshot-policy");
    }
}
