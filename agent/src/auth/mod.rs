//! The agent's DittoFS account and its token lifecycle.
//!
//! - Account: with the bootstrap admin password (a Secret file, read at each use), ensure user
//!   `k8s-operator` with role `operator` and the password from the credentials Secret — create it, or on
//!   409 set its role and reset its password. The admin token is used for those calls only and then dropped
//!   (docs/dittofs-api.md#users-and-the-admin-bootstrap).
//! - Role: every login and refresh answer carries the user as DittoFS has it now. When its role is not
//!   `operator` (someone promoted or demoted the account), the pair is dropped unused, the admin sets the
//!   role back and the agent logs in again — a warning, `auth_steps{step="role_repair"}`, and a note in
//!   the status entry's `auth.message`. A 403 on the adapter list ([`Auth::token_forbidden`]) leads there
//!   through a fresh login, since a token's role changes only when a new one is issued.
//! - Tokens: log in as `k8s-operator`; refresh at [`Timings::refresh_fraction`] of the access token's
//!   lifetime (docs/dittofs-api.md#authentication-and-tokens). Renewal escalates refresh → login →
//!   provision → login, so a DittoFS whose database was reset heals without a restart. Every new pair is
//!   mirrored into the Secret; on start a still-valid pair from the Secret is reused instead of logging in.
//! - Failures: no answer or 5xx is transient and retried by the poll schedule; anything else (refused
//!   admin password, Secret unusable, …) backs off exponentially with jitter
//!   ([`Timings::auth_backoff_min`]…max).
//! - Events: each renewal's outcome goes through [`Announced`], which queues the Go operator's auth Event
//!   when the state changed (`AuthProvisioned`, `AuthFailed`, `AuthAPIUnreachable`,
//!   `AdminBootstrapUnauthorized`, `AdminCredentialUnauthorized`); a retry of the same failure queues none.

mod account;
#[cfg(test)]
mod event_tests;
#[cfg(test)]
mod tests;
mod tokens;

use std::{sync::Arc, time::Duration};

use dittofs_api::{
    DittoServer,
    names::{self, OPERATOR_USERNAME},
};
use kube::Resource as _;
use tokio::time::Instant;

pub(crate) use self::tokens::Clock;
use self::tokens::{Claims, Tokens, claims, remaining, ts};
use crate::{
    backoff::Backoff,
    config::{AdminPassword, AgentConfig, Timings},
    credentials::{Mirror, SecretStore, Store},
    dittofs::{ApiError, Client, DittoFs, OPERATOR_ROLE},
    error::AuthError,
    events::{AdminSecret, Announced, Events, Provisioned},
    metrics::{Metrics, WriteResult},
    secret::SecretString,
    text::truncate_chars,
};

/// The agent's authentication state as the status entry shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthView {
    pub authenticated: bool,
    pub reason: &'static str,
    pub message: String,
}

/// Where a renewal starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Refresh,
    Login,
}

/// See the module docs.
#[derive(Debug)]
pub struct Auth<C = Client, S = Store> {
    client: C,
    store: S,
    admin_username: String,
    admin_password: AdminPassword,
    admin_source: String,
    timings: Timings,
    metrics: Arc<Metrics>,
    clock: Clock,
    tokens: Option<Tokens>,
    mirror_pending: bool,
    backoff: Backoff,
    retry_at: Option<(Instant, AuthError)>,
    view: Option<AuthView>,
    /// The current token came from the fresh login a 403 asked for: another 403 is not a role problem.
    forbidden_checked: bool,
    /// The last role repair: the role found and when, for the status entry.
    repaired: Option<(String, jiff::Timestamp)>,
    events: Events,
    announced: Announced,
    admin_secret: AdminSecret,
    /// Set by the renewal in progress when it created the account or reset its password.
    provisioned: Option<Provisioned>,
    /// How many times the account had to be created: a DittoFS whose database is new (or was reset).
    created: u64,
}

impl<C: DittoFs, S: SecretStore> Auth<C, S> {
    pub fn new(config: &AgentConfig, client: C, store: S, metrics: Arc<Metrics>) -> Auth<C, S> {
        Auth {
            client,
            store,
            admin_username: config.admin_username.clone(),
            admin_password: config.admin_password.clone(),
            admin_source: config.admin_password_source(),
            timings: config.timings.clone(),
            metrics,
            clock: Clock::System,
            tokens: None,
            mirror_pending: false,
            backoff: Backoff::new(config.timings.auth_backoff_min, config.timings.auth_backoff_max),
            retry_at: None,
            view: None,
            forbidden_checked: false,
            repaired: None,
            events: Events::none(),
            announced: Announced::default(),
            admin_secret: admin_secret_of(config),
            provisioned: None,
            created: 0,
        }
    }

    /// Emits the auth Events through `events` (none by default).
    pub fn with_events(mut self, events: Events) -> Self {
        self.events = events;
        self
    }

    /// The DittoServer the Events regard, as the watch delivered it.
    pub fn regarding(&self, server: &DittoServer) {
        self.events.regarding(server.object_ref(&()));
    }

    /// Counts token lifetimes on `clock` (tests: tokio's paused clock).
    #[cfg(test)]
    pub(crate) fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
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
        // Also the role: a pair issued while the account had another one is not resumed (a new login
        // shows the role and repairs it).
        let ours = |c: &Claims, kind: &str| {
            c.sub.as_deref() == Some(OPERATOR_USERNAME)
                && c.token_type.as_deref().is_none_or(|t| t == kind)
                && c.role.as_deref().is_none_or(|r| r == OPERATOR_ROLE)
        };
        if !ours(&a, "access") || !ours(&r, "refresh") {
            return false;
        }
        let now = self.clock.now();
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
            self.view = Some(self.succeeded());
            self.announced.succeeded(None);
        }
    }

    /// A usable access token, renewing (refresh, else login, else provision) when needed.
    pub async fn token(&mut self) -> Result<SecretString, AuthError> {
        let now = self.clock.now();
        if let Some(t) = &self.tokens
            && t.access_usable(now)
        {
            return Ok(t.access.clone());
        }
        self.renew().await?;
        self.current()
    }

    /// DittoFS answered 401 to the current access token: renew it and hand out the new one.
    pub async fn token_rejected(&mut self) -> Result<SecretString, AuthError> {
        self.renew().await?;
        self.current()
    }

    /// DittoFS answered 403 to the current access token (`Insufficient permissions`: the account lost its
    /// role). The token's role is fixed at issue, so only a new one shows the account's role: drop it and
    /// log in, which repairs the role if it is wrong. `None` when the current token already is such a
    /// fresh one — the 403 is then not about the role, and one login per poll would not change it.
    pub async fn token_forbidden(&mut self) -> Result<Option<SecretString>, AuthError> {
        if self.forbidden_checked {
            return Ok(None);
        }
        self.tokens = None;
        self.renew().await?;
        self.forbidden_checked = true;
        self.current().map(Some)
    }

    /// How many times the agent had to create its account: a change means DittoFS's database is new, so
    /// whatever the agent had written to it (snapshot policies) must be checked again.
    pub fn accounts_created(&self) -> u64 {
        self.created
    }

    /// An admin access token for one short task (the snapshot policies, admin-only in DittoFS), from the
    /// bootstrap password read now. The caller drops it when the task is done; it is never stored.
    pub async fn admin_session(&mut self) -> Result<SecretString, AuthError> {
        self.admin_token().await
    }

    /// How long until the access token should be refreshed; `None` without a token.
    pub fn refresh_in(&self) -> Option<Duration> {
        let t = self.tokens.as_ref()?;
        Some(remaining(self.clock.now(), t.refresh_at(self.timings.refresh_fraction)))
    }

    /// Refreshes now (the 80 % timer, or after DittoFS came back: a refresh re-reads the user from
    /// DittoFS's database, so it proves the account still exists).
    pub async fn refresh_now(&mut self) -> Result<(), AuthError> {
        self.renew().await
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

    /// Refresh while the refresh token is usable, else log in; not before the back-off allows.
    async fn renew(&mut self) -> Result<(), AuthError> {
        if let Some((at, cause)) = &self.retry_at {
            let now = Instant::now();
            if now < *at {
                return Err(AuthError::BackingOff(*at - now, Box::new(cause.clone())));
            }
        }
        let from = match &self.tokens {
            Some(t) if t.refresh_usable(self.clock.now()) => Step::Refresh,
            _ => Step::Login,
        };
        let result = self.try_renew(from).await;
        let provisioned = self.provisioned.take();
        if provisioned == Some(Provisioned::Created) {
            self.created += 1;
        }
        let event = match &result {
            Ok(()) => self.announced.succeeded(provisioned),
            Err(e) => self.announced.failed(e, self.admin_secret),
        };
        if let Some(event) = event {
            self.events.emit(event);
        }
        match &result {
            Ok(()) => {
                self.backoff.reset();
                self.retry_at = None;
                self.forbidden_checked = false;
                self.view = Some(self.succeeded());
                self.mirror_pending = true;
                self.flush_mirror().await;
            }
            Err(e) => {
                let transient = matches!(e, AuthError::Api(api) if api.is_transient());
                if !transient {
                    let delay = self.backoff.next_delay();
                    self.retry_at = Some((Instant::now() + delay, e.clone()));
                    tracing::warn!(error = %e, retry_in = ?delay, "DittoFS authentication failed");
                }
                self.view = Some(AuthView {
                    authenticated: false,
                    reason: e.auth_reason(),
                    message: truncate_chars(&e.to_string(), 1024),
                });
            }
        }
        result
    }

    fn succeeded(&self) -> AuthView {
        let mut message = format!("logged in to DittoFS as {OPERATOR_USERNAME:?} (role {OPERATOR_ROLE})");
        if let Some((role, at)) = &self.repaired {
            // Kept while the agent runs: whoever changed the role should be able to find out it was undone.
            message.push_str(&format!("; its role was {role:?} and was set back to {OPERATOR_ROLE} at {at:.0}"));
        }
        AuthView { authenticated: true, reason: "AuthenticationSucceeded", message }
    }
}

/// The controller's bootstrap Secret, unless the agent was told of another (the user's
/// `identity.admin.passwordSecretRef`). No Secret at all (outside Kubernetes) counts as the bootstrap one.
fn admin_secret_of(config: &AgentConfig) -> AdminSecret {
    let managed = names::admin_bootstrap_secret(&config.server_name);
    match &config.admin_secret {
        Some(s) if s.name != managed || s.key != names::PASSWORD_KEY => AdminSecret::User,
        _ => AdminSecret::Managed,
    }
}
