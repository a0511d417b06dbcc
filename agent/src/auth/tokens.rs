//! The token pair the agent holds, read from the tokens themselves: issue time and expiry of the access
//! token, expiry of the refresh token, and when to refresh. Pure apart from the [`Clock`] it is given.

use std::time::Duration;

use base64::Engine as _;
use jiff::Timestamp;
use serde::Deserialize;

use crate::{
    dittofs::TokenPair,
    secret::SecretString,
    text::{clean, truncate_chars},
};

/// An access token closer than this to its expiry is not used any more.
pub(super) const EXPIRY_MARGIN: Duration = Duration::from_secs(2);

/// Wall-clock time, which JWT lifetimes are counted in. Tests pin it to tokio's clock, so that paused time
/// moves token lifetimes along with every timer.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Clock {
    System,
    #[cfg(test)]
    Tokio {
        wall: Timestamp,
        at: tokio::time::Instant,
    },
}

impl Clock {
    #[cfg(test)]
    pub(crate) fn tokio() -> Clock {
        Clock::Tokio { wall: Timestamp::from_second(1_800_000_000).unwrap(), at: tokio::time::Instant::now() }
    }

    pub(super) fn now(self) -> Timestamp {
        match self {
            Clock::System => Timestamp::now(),
            #[cfg(test)]
            Clock::Tokio { wall, at } => {
                let elapsed = jiff::SignedDuration::try_from(at.elapsed()).unwrap();
                wall.saturating_add(elapsed).unwrap()
            }
        }
    }
}

/// A token pair with the lifetimes read from the tokens themselves.
#[derive(Debug, Clone)]
pub(super) struct Tokens {
    pub access: SecretString,
    pub refresh: SecretString,
    pub issued_at: Timestamp,
    pub expires_at: Timestamp,
    pub refresh_expires_at: Option<Timestamp>,
}

/// The JWT claims used for scheduling (the signature is DittoFS's business, not ours).
#[derive(Debug, Deserialize)]
pub(super) struct Claims {
    #[serde(default)]
    pub iat: Option<i64>,
    #[serde(default)]
    pub exp: Option<i64>,
    #[serde(default)]
    pub sub: Option<String>,
    #[serde(default)]
    pub token_type: Option<String>,
    /// What DittoFS authorizes the token as (`admin`, `operator`, `user`).
    #[serde(default)]
    pub role: Option<String>,
}

pub(super) fn claims(token: &SecretString) -> Option<Claims> {
    let payload = token.expose().split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// The role the pair was issued for: `user.role` of the answer, else the access token's `role` claim;
/// `None` when neither says. Shaped for messages (it is DittoFS's text, not ours).
pub(super) fn role_of(pair: &TokenPair) -> Option<String> {
    let role = pair
        .user
        .as_ref()
        .map(|u| u.role.clone())
        .filter(|r| !r.is_empty())
        .or_else(|| claims(&pair.access).and_then(|c| c.role))?;
    Some(truncate_chars(&clean(&role), 32))
}

pub(super) fn ts(secs: Option<i64>) -> Option<Timestamp> {
    secs.and_then(|s| Timestamp::from_second(s).ok())
}

impl Tokens {
    /// From a login or refresh answer: the JWT's `iat`/`exp` (second precision, as DittoFS checks them),
    /// else `expires_in` counted from now.
    pub fn from_pair(pair: TokenPair, now: Timestamp) -> Tokens {
        let access = claims(&pair.access);
        let lifetime = jiff::SignedDuration::from_secs(pair.expires_in.clamp(1, 10 * 365 * 86_400));
        let issued_at = access.as_ref().and_then(|c| ts(c.iat)).unwrap_or(now);
        let expires_at = access
            .as_ref()
            .and_then(|c| ts(c.exp))
            .or(pair.expires_at)
            .unwrap_or_else(|| now.saturating_add(lifetime).unwrap_or(now));
        let refresh_expires_at = claims(&pair.refresh).and_then(|c| ts(c.exp));
        Tokens { access: pair.access, refresh: pair.refresh, issued_at, expires_at, refresh_expires_at }
    }

    pub fn access_usable(&self, now: Timestamp) -> bool {
        remaining(now, self.expires_at) > EXPIRY_MARGIN
    }

    pub fn refresh_usable(&self, now: Timestamp) -> bool {
        self.refresh_expires_at.is_none_or(|e| remaining(now, e) > EXPIRY_MARGIN)
    }

    /// When to refresh: `fraction` of the way from issue to expiry.
    pub fn refresh_at(&self, fraction: f64) -> Timestamp {
        let life = self.expires_at.duration_since(self.issued_at).as_secs_f64().max(0.0);
        let offset = jiff::SignedDuration::from_secs_f64(life * fraction.clamp(0.1, 0.95));
        self.issued_at.saturating_add(offset).unwrap_or(self.issued_at)
    }
}

pub(super) fn remaining(now: Timestamp, until: Timestamp) -> Duration {
    Duration::try_from(until.duration_since(now)).unwrap_or(Duration::ZERO)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jwt(claims: serde_json::Value) -> SecretString {
        let enc = |v: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v);
        SecretString::new(format!("{}.{}.sig", enc(br#"{"alg":"HS256"}"#), enc(claims.to_string().as_bytes())))
    }

    #[test]
    fn schedules_refresh_at_the_fraction_of_the_lifetime() {
        let now = Timestamp::from_second(1_000_000).unwrap();
        let pair = TokenPair {
            access: jwt(serde_json::json!({"iat": 1_000_000, "exp": 1_000_900, "sub": "k8s-operator"})),
            refresh: jwt(serde_json::json!({"iat": 1_000_000, "exp": 1_604_800})),
            expires_in: 900,
            expires_at: None,
            user: None,
        };
        let t = Tokens::from_pair(pair, now);
        assert_eq!(t.refresh_at(0.8), Timestamp::from_second(1_000_720).unwrap());
        assert!(t.access_usable(now));
        assert!(!t.access_usable(Timestamp::from_second(1_000_899).unwrap()));
        assert!(t.refresh_usable(Timestamp::from_second(1_000_899).unwrap()));
    }

    #[test]
    fn the_role_comes_from_the_answer_else_from_the_token() {
        let pair = |user_role: Option<&str>, claim: serde_json::Value| TokenPair {
            access: jwt(claim),
            refresh: "r".into(),
            expires_in: 900,
            expires_at: None,
            user: user_role.map(|r| crate::dittofs::LoginUser { username: "k8s-operator".into(), role: r.into() }),
        };
        let admin_claim = serde_json::json!({"sub": "k8s-operator", "role": "admin"});
        assert_eq!(role_of(&pair(Some("user"), admin_claim.clone())).as_deref(), Some("user"), "the answer wins");
        assert_eq!(role_of(&pair(None, admin_claim.clone())).as_deref(), Some("admin"));
        assert_eq!(role_of(&pair(Some(""), admin_claim)).as_deref(), Some("admin"));
        assert_eq!(role_of(&pair(None, serde_json::json!({"sub": "k8s-operator"}))), None, "unknown: not judged");
        let odd = role_of(&pair(Some("root\n\u{7}x"), serde_json::json!({}))).unwrap();
        assert_eq!(odd, "root x", "DittoFS's text is cleaned before it reaches a message");
    }

    #[test]
    fn opaque_tokens_fall_back_to_expires_in() {
        let now = Timestamp::from_second(1_000_000).unwrap();
        let pair = TokenPair {
            access: "opaque".into(),
            refresh: "opaque2".into(),
            expires_in: 20,
            expires_at: None,
            user: None,
        };
        let t = Tokens::from_pair(pair, now);
        assert_eq!(t.expires_at, Timestamp::from_second(1_000_020).unwrap());
        assert_eq!(t.refresh_at(0.8), Timestamp::from_second(1_000_016).unwrap());
    }
}
