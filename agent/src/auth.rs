//! The agent's DittoFS account and its token lifecycle.
//!
//! - Account: with the bootstrap admin password (env), ensure user `k8s-operator` with role `operator` and
//!   the password from the credentials Secret — create it, or on 409 reset its password. The admin token
//!   is used for those two calls only and then dropped.
//! - Tokens: log in as `k8s-operator`; refresh at [`Timings::refresh_fraction`] of the access token's
//!   lifetime. Renewal escalates refresh → login → provision → login, so a DittoFS whose database was
//!   reset heals without a restart. Every new pair is mirrored into the Secret; on start a still-valid
//!   pair from the Secret is reused instead of logging in.
//! - Failures: no answer or 5xx is transient and retried by the poll schedule; anything else (refused
//!   admin password, Secret unusable, …) backs off exponentially ([`Timings::auth_backoff_min`]…max).

use std::{sync::Arc, time::Duration};

use base64::Engine as _;
use dittofs_api::names::OPERATOR_USERNAME;
use jiff::Timestamp;
use serde::Deserialize;
use tokio::time::Instant;

use crate::{
    config::{AgentConfig, Timings},
    credentials::{Mirror, Store},
    dittofs::{ApiError, Client, OPERATOR_ROLE, TokenPair},
    error::AuthError,
    metrics::{Metrics, WriteResult},
    secret::SecretString,
};

/// An access token closer than this to its expiry is not used any more.
const EXPIRY_MARGIN: Duration = Duration::from_secs(2);

/// The agent's authentication state as the status entry shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthView {
    pub authenticated: bool,
    pub reason: &'static str,
    pub message: String,
}

/// A token pair with the lifetimes read from the tokens themselves.
#[derive(Debug, Clone)]
struct Tokens {
    access: SecretString,
    refresh: SecretString,
    issued_at: Timestamp,
    expires_at: Timestamp,
    refresh_expires_at: Option<Timestamp>,
}

/// The JWT claims used for scheduling (the signature is DittoFS's business, not ours).
#[derive(Debug, Deserialize)]
struct Claims {
    #[serde(default)]
    iat: Option<i64>,
    #[serde(default)]
    exp: Option<i64>,
    #[serde(default)]
    sub: Option<String>,
    #[serde(default)]
    token_type: Option<String>,
}

fn claims(token: &SecretString) -> Option<Claims> {
    let payload = token.expose().split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')).ok()?;
    serde_json::from_slice(&bytes).ok()
}

fn ts(secs: Option<i64>) -> Option<Timestamp> {
    secs.and_then(|s| Timestamp::from_second(s).ok())
}

impl Tokens {
    /// From a login or refresh answer: the JWT's `iat`/`exp` (second precision, as DittoFS checks them),
    /// else `expires_in` counted from now.
    fn from_pair(pair: TokenPair, now: Timestamp) -> Tokens {
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

    fn access_usable(&self, now: Timestamp) -> bool {
        remaining(now, self.expires_at) > EXPIRY_MARGIN
    }

    fn refresh_usable(&self, now: Timestamp) -> bool {
        self.refresh_expires_at.is_none_or(|e| remaining(now, e) > EXPIRY_MARGIN)
    }

    /// When to refresh: `fraction` of the way from issue to expiry.
    fn refresh_at(&self, fraction: f64) -> Timestamp {
        let life = self.expires_at.duration_since(self.issued_at).as_secs_f64().max(0.0);
        let offset = jiff::SignedDuration::from_secs_f64(life * fraction.clamp(0.1, 0.95));
        self.issued_at.saturating_add(offset).unwrap_or(self.issued_at)
    }
}

fn remaining(now: Timestamp, until: Timestamp) -> Duration {
    Duration::try_from(until.duration_since(now)).unwrap_or(Duration::ZERO)
}

/// Where a renewal starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Refresh,
    Login,
}

/// See the module docs.
#[derive(Debug)]
pub struct Auth {
    client: Client,
    store: Store,
    admin_username: String,
    admin_password: SecretString,
    admin_source: String,
    timings: Timings,
    metrics: Arc<Metrics>,
    tokens: Option<Tokens>,
    mirror_pending: bool,
    failures: u32,
    retry_at: Option<(Instant, AuthError)>,
    view: Option<AuthView>,
}

impl Auth {
    pub fn new(config: &AgentConfig, client: Client, store: Store, metrics: Arc<Metrics>) -> Auth {
        Auth {
            client,
            store,
            admin_username: config.admin_username.clone(),
            admin_password: config.admin_password.clone(),
            admin_source: config.admin_password_source(),
            timings: config.timings.clone(),
            metrics,
            tokens: None,
            mirror_pending: false,
            failures: 0,
            retry_at: None,
            view: None,
        }
    }

    /// The state for the status entry; `None` until the first attempt.
    pub fn view(&self) -> Option<&AuthView> {
        self.view.as_ref()
    }

    /// Adopts the pair stored in the Secret if it belongs to `k8s-operator` on this server and can still
    /// be used (its access token, or at least its refresh token). Nothing is sent to DittoFS.
    pub async fn restore(&mut self) -> bool {
        let stored = match self.store.read().await {
            Ok(Some(stored)) => stored,
            Ok(None) => return false,
            Err(e) => {
                tracing::warn!(secret = self.store.name(), error = %e, "cannot read the credentials Secret");
                return false;
            }
        };
        let (Some(access), Some(refresh)) = (stored.access_token, stored.refresh_token) else {
            return false;
        };
        if stored.server_url.as_deref() != Some(self.client.base_url()) {
            tracing::info!("stored token pair is for another server URL; not reused");
            return false;
        }
        let (Some(a), Some(r)) = (claims(&access), claims(&refresh)) else {
            return false;
        };
        let ours = |c: &Claims, kind: &str| {
            c.sub.as_deref() == Some(OPERATOR_USERNAME) && c.token_type.as_deref().is_none_or(|t| t == kind)
        };
        if !ours(&a, "access") || !ours(&r, "refresh") {
            return false;
        }
        let now = Timestamp::now();
        let tokens = Tokens {
            issued_at: ts(a.iat).unwrap_or(now),
            expires_at: ts(a.exp).or(stored.expires_at).unwrap_or(now),
            refresh_expires_at: ts(r.exp),
            access,
            refresh,
        };
        if !tokens.access_usable(now) && !tokens.refresh_usable(now) {
            return false;
        }
        tracing::info!(expires_at = %tokens.expires_at, "reusing the token pair stored in the credentials Secret");
        self.metrics.auth_step("reuse", "ok");
        self.tokens = Some(tokens);
        true
    }

    /// A request with the current token succeeded: whatever failed before, the agent is authenticated.
    pub fn confirm(&mut self) {
        if !self.view.as_ref().is_some_and(|v| v.authenticated) {
            self.view = Some(succeeded());
        }
    }

    /// A usable access token, renewing (refresh, else login, else provision) when needed.
    pub async fn token(&mut self) -> Result<SecretString, AuthError> {
        let now = Timestamp::now();
        if let Some(t) = &self.tokens
            && t.access_usable(now)
        {
            return Ok(t.access.clone());
        }
        let from = self.renewal_start(now);
        self.renew(from).await?;
        self.current()
    }

    /// DittoFS answered 401 to the current access token: renew it and hand out the new one.
    pub async fn token_rejected(&mut self) -> Result<SecretString, AuthError> {
        let from = self.renewal_start(Timestamp::now());
        self.renew(from).await?;
        self.current()
    }

    /// How long until the access token should be refreshed; `None` without a token.
    pub fn refresh_in(&self) -> Option<Duration> {
        let t = self.tokens.as_ref()?;
        Some(remaining(Timestamp::now(), t.refresh_at(self.timings.refresh_fraction)))
    }

    /// Refreshes now (the 80 % timer, or after DittoFS came back: a refresh re-reads the user from
    /// DittoFS's database, so it proves the account still exists).
    pub async fn refresh_now(&mut self) -> Result<(), AuthError> {
        let from = self.renewal_start(Timestamp::now());
        self.renew(from).await
    }

    /// When the next authentication attempt is allowed after a failure.
    pub fn backoff_until(&self) -> Option<Instant> {
        self.retry_at.as_ref().map(|(at, _)| *at).filter(|at| *at > Instant::now())
    }

    /// Retries a token mirror that failed earlier.
    pub async fn flush_mirror(&mut self) {
        if !self.mirror_pending {
            return;
        }
        let Some(t) = &self.tokens else { return };
        let mirror = Mirror {
            access_token: &t.access,
            refresh_token: &t.refresh,
            expires_at: t.expires_at,
            server_url: self.client.base_url(),
        };
        match self.store.mirror(&mirror).await {
            Ok(()) => {
                self.mirror_pending = false;
                self.metrics.secret_write(WriteResult::Done);
            }
            Err(e) => {
                self.metrics.secret_write(WriteResult::Failed);
                tracing::warn!(secret = self.store.name(), error = %e, "cannot mirror the token pair into the Secret");
            }
        }
    }

    fn current(&self) -> Result<SecretString, AuthError> {
        self.tokens
            .as_ref()
            .map(|t| t.access.clone())
            .ok_or_else(|| AuthError::Api(ApiError::Malformed("no token after renewal".into())))
    }

    fn renewal_start(&self, now: Timestamp) -> Step {
        match &self.tokens {
            Some(t) if t.refresh_usable(now) => Step::Refresh,
            _ => Step::Login,
        }
    }

    async fn renew(&mut self, from: Step) -> Result<(), AuthError> {
        if let Some((at, cause)) = &self.retry_at {
            let now = Instant::now();
            if now < *at {
                return Err(AuthError::BackingOff(*at - now, Box::new(cause.clone())));
            }
        }
        let result = self.try_renew(from).await;
        match &result {
            Ok(()) => {
                self.failures = 0;
                self.retry_at = None;
                self.view = Some(succeeded());
                self.mirror_pending = true;
                self.flush_mirror().await;
            }
            Err(e) => {
                let transient = matches!(e, AuthError::Api(api) if api.is_transient());
                if !transient {
                    self.failures = self.failures.saturating_add(1);
                    let delay = backoff(&self.timings, self.failures);
                    self.retry_at = Some((Instant::now() + delay, e.clone()));
                    tracing::warn!(error = %e, retry_in = ?delay, "DittoFS authentication failed");
                }
                self.view = Some(AuthView {
                    authenticated: false,
                    reason: e.auth_reason(),
                    message: crate::dittofs::truncate_chars(&e.to_string(), 1024),
                });
            }
        }
        result
    }

    async fn try_renew(&mut self, from: Step) -> Result<(), AuthError> {
        if from == Step::Refresh
            && let Some(t) = &self.tokens
        {
            let refresh = t.refresh.clone();
            match self.client.refresh(&refresh).await {
                Ok(pair) => {
                    self.metrics.auth_step("refresh", "ok");
                    self.adopt(pair);
                    return Ok(());
                }
                Err(e) => {
                    self.metrics.auth_step("refresh", e.label());
                    if e.is_transient() {
                        return Err(e.into());
                    }
                    // Expired, or the user is gone (database reset): log in again.
                    tracing::info!(error = %e, "token refresh refused; logging in again");
                    self.tokens = None;
                }
            }
        }
        let password = self.operator_password().await?;
        match self.client.login(OPERATOR_USERNAME, &password).await {
            Ok(pair) => {
                self.metrics.auth_step("login", "ok");
                self.adopt(pair);
                return Ok(());
            }
            Err(e) => {
                self.metrics.auth_step("login", e.label());
                match e {
                    ApiError::Unauthorized(_) => {
                        tracing::info!("DittoFS refused {OPERATOR_USERNAME:?}: provisioning the account");
                    }
                    e if e.is_transient() => return Err(e.into()),
                    e => {
                        return Err(AuthError::OperatorRefused {
                            user: OPERATOR_USERNAME.into(),
                            detail: e.to_string(),
                        });
                    }
                }
            }
        }
        self.provision(&password).await?;
        match self.client.login(OPERATOR_USERNAME, &password).await {
            Ok(pair) => {
                self.metrics.auth_step("login", "ok");
                self.adopt(pair);
                Ok(())
            }
            Err(e) => {
                self.metrics.auth_step("login", e.label());
                if e.is_transient() {
                    return Err(e.into());
                }
                Err(AuthError::OperatorRefused { user: OPERATOR_USERNAME.into(), detail: e.to_string() })
            }
        }
    }

    /// Creates `k8s-operator` with role operator, or resets its password when it exists. The admin token
    /// lives only for these two calls.
    async fn provision(&mut self, password: &SecretString) -> Result<(), AuthError> {
        if self.admin_password.is_empty() {
            return Err(AuthError::NoAdminPassword(self.admin_source.clone()));
        }
        let admin_refused = |e: &ApiError| AuthError::AdminRefused {
            user: self.admin_username.clone(),
            source_desc: self.admin_source.clone(),
            detail: e.to_string(),
        };
        let admin = match self.client.login(&self.admin_username, &self.admin_password).await {
            Ok(pair) => pair.access,
            Err(e) => {
                self.metrics.auth_step("admin_login", e.label());
                return Err(match e {
                    ApiError::Unauthorized(_) | ApiError::Forbidden(_) => admin_refused(&e),
                    e => e.into(),
                });
            }
        };
        self.metrics.auth_step("admin_login", "ok");
        match self.client.create_user(&admin, OPERATOR_USERNAME, password, OPERATOR_ROLE).await {
            Ok(()) => {
                self.metrics.auth_step("provision", "created");
                tracing::info!("created DittoFS user {OPERATOR_USERNAME:?} with role {OPERATOR_ROLE}");
                Ok(())
            }
            Err(ApiError::Conflict(_)) => match self.client.reset_password(&admin, OPERATOR_USERNAME, password).await {
                Ok(()) => {
                    self.metrics.auth_step("provision", "password_reset");
                    tracing::info!("DittoFS user {OPERATOR_USERNAME:?} exists; its password was reset");
                    Ok(())
                }
                Err(e) => {
                    self.metrics.auth_step("provision", e.label());
                    Err(match e {
                        ApiError::Forbidden(_) => admin_refused(&e),
                        e => e.into(),
                    })
                }
            },
            Err(e) => {
                self.metrics.auth_step("provision", e.label());
                // 403 here: e.g. the admin must change its password first; the message says so.
                Err(match e {
                    ApiError::Forbidden(_) => admin_refused(&e),
                    e => e.into(),
                })
            }
        }
    }

    /// The password from the credentials Secret, read each time so a rotation by the controller is seen.
    async fn operator_password(&self) -> Result<SecretString, AuthError> {
        let unusable = |detail: String| AuthError::CredentialsSecret { secret: self.store.name().to_owned(), detail };
        match self.store.read().await {
            Ok(Some(stored)) => stored.password.ok_or_else(|| unusable("no password key".into())),
            Ok(None) => Err(unusable("does not exist (the controller creates it)".into())),
            Err(e) => Err(unusable(e.to_string())),
        }
    }

    fn adopt(&mut self, pair: TokenPair) {
        let tokens = Tokens::from_pair(pair, Timestamp::now());
        tracing::debug!(expires_at = %tokens.expires_at, "new DittoFS token pair");
        self.tokens = Some(tokens);
    }
}

fn succeeded() -> AuthView {
    AuthView {
        authenticated: true,
        reason: "AuthenticationSucceeded",
        message: format!("logged in to DittoFS as {OPERATOR_USERNAME:?} (role {OPERATOR_ROLE})"),
    }
}

/// `min · 2^(failures-1)`, capped.
fn backoff(t: &Timings, failures: u32) -> Duration {
    let factor = 2u32.saturating_pow(failures.saturating_sub(1).min(16));
    t.auth_backoff_min.saturating_mul(factor).min(t.auth_backoff_max)
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
        };
        let t = Tokens::from_pair(pair, now);
        assert_eq!(t.refresh_at(0.8), Timestamp::from_second(1_000_720).unwrap());
        assert!(t.access_usable(now));
        assert!(!t.access_usable(Timestamp::from_second(1_000_899).unwrap()));
        assert!(t.refresh_usable(Timestamp::from_second(1_000_899).unwrap()));
    }

    #[test]
    fn opaque_tokens_fall_back_to_expires_in() {
        let now = Timestamp::from_second(1_000_000).unwrap();
        let pair = TokenPair { access: "opaque".into(), refresh: "opaque2".into(), expires_in: 20, expires_at: None };
        let t = Tokens::from_pair(pair, now);
        assert_eq!(t.expires_at, Timestamp::from_second(1_000_020).unwrap());
        assert_eq!(t.refresh_at(0.8), Timestamp::from_second(1_000_016).unwrap());
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let t = Timings::default();
        assert_eq!(backoff(&t, 1), Duration::from_secs(2));
        assert_eq!(backoff(&t, 3), Duration::from_secs(8));
        assert_eq!(backoff(&t, 30), Duration::from_secs(300));
    }
}
