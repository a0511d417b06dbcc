//! The parts of DittoFS's JSON answers the agent reads (docs/dittofs-api.md#authentication-and-tokens,
//! docs/dittofs-api.md#adapters, docs/dittofs-api.md#health). Unknown fields are ignored; a missing required
//! field makes the whole answer malformed, so it is never half-believed.

use std::collections::BTreeSet;

use jiff::Timestamp;
use serde::Deserialize;

use crate::{secret::SecretString, text::sanitize_type};

/// Most adapter types read from `/health/ready` (DittoFS knows two; anything near this is garbage).
pub const MAX_READY_TYPES: usize = 64;

/// A login or refresh answer (`LoginResponse`).
#[derive(Debug, Clone, Deserialize)]
pub struct TokenPair {
    #[serde(rename = "access_token")]
    pub access: SecretString,
    #[serde(rename = "refresh_token")]
    pub refresh: SecretString,
    /// Access-token lifetime in seconds.
    #[serde(default)]
    pub expires_in: i64,
    /// Access-token expiry (Go `time.Time`, RFC 3339 with the server's offset).
    #[serde(default, deserialize_with = "lenient_time")]
    pub expires_at: Option<Timestamp>,
    /// The user as DittoFS's database has it now (login and refresh both re-read it): its role is what
    /// the new tokens carry, so it is where a promoted or demoted account shows.
    #[serde(default)]
    pub user: Option<LoginUser>,
}

/// The part of `LoginResponse.user` (`UserResponse`) the agent reads.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct LoginUser {
    #[serde(default)]
    pub username: String,
    #[serde(default)]
    pub role: String,
}

/// One element of `GET /api/v1/adapters` (`AdapterResponse`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ApiAdapter {
    #[serde(rename = "type")]
    pub kind: String,
    pub enabled: bool,
    pub running: bool,
    /// The stored port: 0 means the type's default (docs/dittofs-api.md#adapters).
    pub port: i64,
    /// Cached health report (5 s TTL, docs/dittofs-api.md#adapter-status-caching); may predate the last change.
    #[serde(default)]
    pub status: Option<ApiHealth>,
    /// When the row last changed (PUT enable/disable/port): a report checked before it is stale.
    #[serde(default, deserialize_with = "lenient_time")]
    pub updated_at: Option<Timestamp>,
}

/// `health.Report`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ApiHealth {
    #[serde(default)]
    pub status: String,
    #[serde(default)]
    pub message: Option<String>,
    #[serde(default, deserialize_with = "lenient_time")]
    pub checked_at: Option<Timestamp>,
}

/// `GET /health/ready`: only `data.adapters.types` matters.
#[derive(Debug, Deserialize)]
pub(crate) struct ReadyResponse {
    data: ReadyData,
}

#[derive(Debug, Deserialize)]
struct ReadyData {
    #[serde(default)]
    adapters: Option<ReadyAdapters>,
}

#[derive(Debug, Deserialize)]
struct ReadyAdapters {
    #[serde(default)]
    types: Option<Vec<String>>,
}

impl ReadyResponse {
    /// The running adapter types as a set (DittoFS lists them in random map order), sanitized and bounded.
    pub(crate) fn running_types(self) -> Result<BTreeSet<String>, String> {
        let types = self.data.adapters.and_then(|a| a.types).unwrap_or_default();
        if types.len() > MAX_READY_TYPES {
            return Err(format!("{} adapter types in /health/ready", types.len()));
        }
        Ok(types.iter().map(|t| sanitize_type(t)).collect())
    }
}

/// A timestamp that does not fail the whole answer when absent or unparsable.
fn lenient_time<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Timestamp>, D::Error> {
    let raw: Option<String> = Option::deserialize(d)?;
    Ok(raw.and_then(|s| s.parse::<Timestamp>().ok()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_recorded_answers() {
        let list = r#"[{"id":"u","type":"smb","enabled":false,"running":false,"port":21445,
            "created_at":"2026-01-01T10:00:00Z","updated_at":"2026-01-01T10:15:00.123456789+01:00",
            "status":{"status":"unknown","message":"adapter smb not running","checked_at":"2026-01-01T09:15:01Z"}}]"#;
        let adapters: Vec<ApiAdapter> = serde_json::from_str(list).unwrap();
        let a = &adapters[0];
        assert_eq!((a.kind.as_str(), a.enabled, a.running, a.port), ("smb", false, false, 21445));
        let health = a.status.as_ref().unwrap();
        assert!(health.checked_at.unwrap() > a.updated_at.unwrap(), "offsets are honoured");
        assert!(serde_json::from_str::<Vec<ApiAdapter>>("null").is_err(), "null is not an empty list");
        assert!(serde_json::from_str::<Vec<ApiAdapter>>(r#"[{"type":"nfs"}]"#).is_err());

        let ready = r#"{"status":"healthy","data":{"adapters":{"running":2,"types":["smb","NFS"]},"shares":0}}"#;
        let types = serde_json::from_str::<ReadyResponse>(ready).unwrap().running_types().unwrap();
        assert_eq!(types.into_iter().collect::<Vec<_>>(), ["nfs", "smb"]);
        let login = r#"{"access_token":"a","refresh_token":"r","token_type":"Bearer","expires_in":20,
            "expires_at":"2026-01-01T10:15:00.123456789Z","user":{"username":"k8s-operator"}}"#;
        let pair: TokenPair = serde_json::from_str(login).unwrap();
        assert_eq!(pair.expires_in, 20);
        assert_eq!(pair.user, Some(LoginUser { username: "k8s-operator".into(), role: String::new() }));
        let recorded = r#"{"access_token":"a","refresh_token":"r","expires_in":20,
            "user":{"id":"u","username":"k8s-operator","role":"operator","enabled":true}}"#;
        assert!(!format!("{pair:?}").contains("\"a\""));
        let pair: TokenPair = serde_json::from_str(recorded).unwrap();
        assert_eq!(pair.user.map(|u| u.role).as_deref(), Some("operator"));
    }
}
