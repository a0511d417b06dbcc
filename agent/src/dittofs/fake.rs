//! A DittoFS for unit tests: users, tokens that expire on tokio's clock, the adapter list and `/health/ready`,
//! plus scripted failures; it records every call so tests can check what the agent asked and when.
//!
//! Roles behave as in DittoFS: a token carries the role its user had when it was issued (login and refresh
//! re-read the user and report it in the answer), and authorization reads the token's role, not the database.

use std::{
    collections::{BTreeMap, BTreeSet, VecDeque},
    sync::{Arc, Mutex, MutexGuard},
    time::Duration,
};

use tokio::time::Instant;

use super::{ApiAdapter, ApiError, ApiSnapshotPolicy, DittoFs, Endpoint, LoginUser, PolicyBody, TokenPair};
use crate::secret::SecretString;

pub(crate) const ADMIN: &str = "admin";
pub(crate) const ADMIN_PASSWORD: &str = "admin-password";
pub(crate) const URL: &str = "http://127.0.0.1:8080";

/// One request the agent made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Call {
    pub endpoint: Endpoint,
    /// The user of a login, or of the token a request carried.
    pub user: Option<String>,
    pub at: Instant,
}

#[derive(Debug)]
pub(crate) struct State {
    /// username → (password, role).
    pub users: BTreeMap<String, (String, String)>,
    /// Lifetime of the access tokens issued from now on.
    pub lifetime: Duration,
    /// No answer at all (connection refused) to every call.
    pub down: bool,
    /// Every call fails with this error (an outage of another kind than a refusal, e.g. a TLS failure).
    pub broken: Option<ApiError>,
    /// `PUT /users/{name}` answers 200 but changes nothing (a role that does not stick).
    pub ignore_role_updates: bool,
    /// The next call to each endpoint listed fails with its error (in order).
    pub failures: VecDeque<(Endpoint, ApiError)>,
    pub ready: BTreeSet<String>,
    /// The ports [`DittoFs::listening_ports`] reports (`None`: unknown).
    pub listening: Option<BTreeSet<u16>>,
    pub adapters: Vec<ApiAdapter>,
    /// Shares that exist, and their snapshot policies (as the PUT bodies that set them).
    pub shares: BTreeSet<String>,
    pub policies: BTreeMap<String, PolicyBody>,
    pub calls: Vec<Call>,
    /// access token → (user, expiry, role when issued); refresh token → user.
    access: BTreeMap<String, (String, Instant, String)>,
    refresh: BTreeMap<String, String>,
    issued: u64,
}

/// Cheap to clone: every clone is the same server.
#[derive(Debug, Clone)]
pub(crate) struct FakeDittoFs(Arc<Mutex<State>>);

impl FakeDittoFs {
    /// A server with only its bootstrap admin, 100 s access tokens, no adapters.
    pub(crate) fn new() -> FakeDittoFs {
        FakeDittoFs(Arc::new(Mutex::new(State {
            users: BTreeMap::from([(ADMIN.to_owned(), (ADMIN_PASSWORD.to_owned(), "admin".to_owned()))]),
            lifetime: Duration::from_secs(100),
            down: false,
            broken: None,
            ignore_role_updates: false,
            failures: VecDeque::new(),
            ready: BTreeSet::new(),
            listening: None,
            adapters: Vec::new(),
            shares: BTreeSet::new(),
            policies: BTreeMap::new(),
            calls: Vec::new(),
            access: BTreeMap::new(),
            refresh: BTreeMap::new(),
            issued: 0,
        })))
    }

    pub(crate) fn state(&self) -> MutexGuard<'_, State> {
        self.0.lock().unwrap()
    }

    /// The calls to one endpoint so far.
    pub(crate) fn calls(&self, endpoint: Endpoint) -> Vec<Call> {
        self.state().calls.iter().filter(|c| c.endpoint == endpoint).cloned().collect()
    }

    pub(crate) fn count(&self, endpoint: Endpoint) -> usize {
        self.calls(endpoint).len()
    }

    /// The next call to `endpoint` fails with `error`.
    pub(crate) fn fail_next(&self, endpoint: Endpoint, error: ApiError) {
        self.state().failures.push_back((endpoint, error));
    }

    /// A fresh database: only the admin is left and every token is forgotten.
    pub(crate) fn wipe(&self) {
        let mut s = self.state();
        s.users.retain(|name, _| name == ADMIN);
        s.access.clear();
        s.refresh.clear();
    }

    /// Records the call; the scripted failure or outage if there is one.
    fn enter(&self, endpoint: Endpoint, user: Option<String>) -> Result<MutexGuard<'_, State>, ApiError> {
        let mut s = self.state();
        s.calls.push(Call { endpoint, user, at: Instant::now() });
        if s.down {
            return Err(ApiError::Refused(URL.to_owned()));
        }
        if let Some(error) = &s.broken {
            return Err(error.clone());
        }
        if let Some(i) = s.failures.iter().position(|(e, _)| *e == endpoint)
            && let Some((_, error)) = s.failures.remove(i)
        {
            return Err(error);
        }
        Ok(s)
    }

    fn user_of(&self, token: &SecretString) -> Option<String> {
        self.state().access.get(token.expose()).map(|(user, _, _)| user.clone())
    }

    /// Changes a user's role behind the agent's back (as an admin would with `PUT /api/v1/users/{name}`).
    pub(crate) fn set_role_of(&self, username: &str, role: &str) {
        self.state().users.get_mut(username).expect("user exists").1 = role.to_owned();
    }

    pub(crate) fn role_of(&self, username: &str) -> Option<String> {
        self.state().users.get(username).map(|(_, role)| role.clone())
    }

    /// The role an access token was issued with.
    pub(crate) fn token_role(&self, token: &SecretString) -> Option<String> {
        self.state().access.get(token.expose()).map(|(_, _, role)| role.clone())
    }
}

impl State {
    fn issue(&mut self, user: &str) -> TokenPair {
        self.issued += 1;
        let (access, refresh) = (format!("access-{}", self.issued), format!("refresh-{}", self.issued));
        let role = self.users.get(user).map(|(_, role)| role.clone()).unwrap_or_default();
        self.access.insert(access.clone(), (user.to_owned(), Instant::now() + self.lifetime, role.clone()));
        self.refresh.insert(refresh.clone(), user.to_owned());
        TokenPair {
            access: access.into(),
            refresh: refresh.into(),
            expires_in: i64::try_from(self.lifetime.as_secs()).unwrap_or(i64::MAX),
            expires_at: None,
            user: Some(LoginUser { username: user.to_owned(), role }),
        }
    }

    /// The role a valid, unexpired access token was issued with, if its user still exists.
    fn bearer(&self, token: &SecretString) -> Result<String, ApiError> {
        match self.access.get(token.expose()) {
            Some((user, expiry, role)) if Instant::now() < *expiry && self.users.contains_key(user) => Ok(role.clone()),
            _ => Err(ApiError::Unauthorized("Invalid or expired token".into())),
        }
    }

    fn admin(&self, token: &SecretString) -> Result<(), ApiError> {
        if self.bearer(token)? == "admin" { Ok(()) } else { Err(ApiError::Forbidden("Admin access required".into())) }
    }
}

impl DittoFs for FakeDittoFs {
    fn base_url(&self) -> &str {
        URL
    }

    async fn health_ready(&self) -> Result<BTreeSet<String>, ApiError> {
        Ok(self.enter(Endpoint::HealthReady, None)?.ready.clone())
    }

    fn listening_ports(&self) -> Option<BTreeSet<u16>> {
        self.state().listening.clone()
    }

    async fn login(&self, username: &str, password: &SecretString) -> Result<TokenPair, ApiError> {
        let mut s = self.enter(Endpoint::Login, Some(username.to_owned()))?;
        match s.users.get(username) {
            Some((p, _)) if p == password.expose() => Ok(s.issue(username)),
            _ => Err(ApiError::Unauthorized("Invalid username or password".into())),
        }
    }

    async fn refresh(&self, refresh_token: &SecretString) -> Result<TokenPair, ApiError> {
        let mut s = self.enter(Endpoint::Refresh, None)?;
        // DittoFS re-reads the user: a refresh token of a user that is gone is refused.
        match s.refresh.get(refresh_token.expose()).cloned() {
            Some(user) if s.users.contains_key(&user) => Ok(s.issue(&user)),
            _ => Err(ApiError::Unauthorized("Invalid or expired refresh token".into())),
        }
    }

    async fn create_user(
        &self,
        admin: &SecretString,
        username: &str,
        password: &SecretString,
        role: &str,
    ) -> Result<(), ApiError> {
        let mut s = self.enter(Endpoint::CreateUser, self.user_of(admin))?;
        s.admin(admin)?;
        if s.users.contains_key(username) {
            return Err(ApiError::Conflict("User already exists".into()));
        }
        s.users.insert(username.to_owned(), (password.expose().to_owned(), role.to_owned()));
        Ok(())
    }

    async fn reset_password(
        &self,
        admin: &SecretString,
        username: &str,
        password: &SecretString,
    ) -> Result<(), ApiError> {
        let mut s = self.enter(Endpoint::ResetPassword, self.user_of(admin))?;
        s.admin(admin)?;
        match s.users.get_mut(username) {
            Some((p, _)) => {
                *p = password.expose().to_owned();
                Ok(())
            }
            None => Err(ApiError::NotFound("User not found".into())),
        }
    }

    async fn set_role(&self, admin: &SecretString, username: &str, role: &str) -> Result<(), ApiError> {
        let mut s = self.enter(Endpoint::UpdateUser, self.user_of(admin))?;
        s.admin(admin)?;
        let ignore = s.ignore_role_updates;
        match s.users.get_mut(username) {
            Some((_, r)) => {
                if !ignore {
                    *r = role.to_owned();
                }
                Ok(())
            }
            None => Err(ApiError::NotFound("User not found".into())),
        }
    }

    async fn list_adapters(&self, token: &SecretString) -> Result<Vec<ApiAdapter>, ApiError> {
        let s = self.enter(Endpoint::ListAdapters, self.user_of(token))?;
        match s.bearer(token)?.as_str() {
            "admin" | "operator" => Ok(s.adapters.clone()),
            _ => Err(ApiError::Forbidden("Insufficient permissions".into())),
        }
    }

    async fn list_snapshot_policies(&self, admin: &SecretString) -> Result<Vec<ApiSnapshotPolicy>, ApiError> {
        let s = self.enter(Endpoint::ListSnapshotPolicies, self.user_of(admin))?;
        s.admin(admin)?;
        // As DittoFS writes them: durations in Go's String() form.
        let go = |d: &str| if d.ends_with('h') { format!("{d}0m0s") } else { d.to_owned() };
        Ok(s.policies
            .iter()
            .map(|(share, b)| ApiSnapshotPolicy {
                share: share.clone(),
                enabled: b.enabled,
                interval: go(&b.interval),
                keep_last: i64::from(b.keep_last.unwrap_or(0)),
                ttl: b.ttl.as_deref().map(go),
                name_prefix: b.name_prefix.clone(),
            })
            .collect())
    }

    async fn put_snapshot_policy(&self, admin: &SecretString, share: &str, body: &PolicyBody) -> Result<(), ApiError> {
        let mut s = self.enter(Endpoint::PutSnapshotPolicy, self.user_of(admin))?;
        s.admin(admin)?;
        if !s.shares.contains(share) {
            return Err(ApiError::NotFound("share not found".into()));
        }
        s.policies.insert(share.to_owned(), body.clone());
        Ok(())
    }

    async fn delete_snapshot_policy(&self, admin: &SecretString, share: &str) -> Result<(), ApiError> {
        let mut s = self.enter(Endpoint::DeleteSnapshotPolicy, self.user_of(admin))?;
        s.admin(admin)?;
        match s.policies.remove(share) {
            Some(_) => Ok(()),
            None => Err(ApiError::NotFound("snapshot policy not found".into())),
        }
    }
}
