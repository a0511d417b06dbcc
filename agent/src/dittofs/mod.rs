//! The DittoFS control-plane API as the agent uses it: a leaf that knows nothing of the agent.
//!
//! [`DittoFs`] is what the agent needs from DittoFS (login, refresh, the three provisioning calls, the
//! adapter list, `/health/ready`, and the three snapshot-policy calls, made as admin); [`Client`] implements it over hyper (plain HTTP or TLS, [`TlsSettings`]), with its own [`ApiError`], the [`Limits`]
//! it is given, and an [`Observer`] told about every request (the agent's metrics implement it).

mod client;
mod error;
#[cfg(test)]
pub(crate) mod fake;
mod policies;
mod tls;
mod types;

use std::{collections::BTreeSet, future::Future, time::Duration};

pub use client::Client;
pub use error::{ApiError, ClientError};
pub use policies::{ApiSnapshotPolicy, PolicyBody, policy_path};
pub use tls::{TlsFailure, TlsSettings, ca_bundle};
pub use types::{ApiAdapter, ApiHealth, LoginUser, TokenPair};

use crate::secret::SecretString;

/// The DittoFS endpoints the agent calls. DittoFS logs every one of them at INFO except `/health*`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Endpoint {
    HealthReady,
    Login,
    Refresh,
    CreateUser,
    ResetPassword,
    UpdateUser,
    ListAdapters,
    ListSnapshotPolicies,
    PutSnapshotPolicy,
    DeleteSnapshotPolicy,
}

impl Endpoint {
    pub fn as_str(self) -> &'static str {
        match self {
            Endpoint::HealthReady => "health_ready",
            Endpoint::Login => "login",
            Endpoint::Refresh => "refresh",
            Endpoint::CreateUser => "create_user",
            Endpoint::ResetPassword => "reset_password",
            Endpoint::UpdateUser => "update_user",
            Endpoint::ListAdapters => "list_adapters",
            Endpoint::ListSnapshotPolicies => "list_snapshot_policies",
            Endpoint::PutSnapshotPolicy => "put_snapshot_policy",
            Endpoint::DeleteSnapshotPolicy => "delete_snapshot_policy",
        }
    }

    /// Whether DittoFS writes an INFO "API request completed" line for it
    /// (docs/dittofs-api.md#transport-and-request-logging).
    pub fn logs_at_info(self) -> bool {
        !matches!(self, Endpoint::HealthReady)
    }
}

/// The DittoFS role the agent's account gets: lists adapters, nothing else (docs/dittofs-api.md#the-operator-role).
pub const OPERATOR_ROLE: &str = "operator";

/// Timeouts and bounds of the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Timeout of establishing a connection.
    pub connect_timeout: Duration,
    /// Timeout of one `/health/ready` request.
    pub ready_timeout: Duration,
    /// Timeout of one adapter list.
    pub poll_timeout: Duration,
    /// Timeout of login and refresh.
    pub auth_timeout: Duration,
    /// Timeout of user creation, password reset and role change.
    pub mutation_timeout: Duration,
    /// Largest adapter-list body read (the other answers are small and capped at 64 KiB).
    pub max_body_bytes: usize,
}

/// Told about every request the client makes: its endpoint, outcome (`ok`, an HTTP status class such as
/// `unauthorized` or `server_error`, or the [`ApiError::label`] of a request without an answer) and latency.
pub trait Observer: Send + Sync + std::fmt::Debug {
    fn request(&self, endpoint: Endpoint, outcome: &'static str, took: Duration);
}

/// What the agent asks of DittoFS. Every call either gets DittoFS's answer or a classified [`ApiError`].
pub trait DittoFs: Send + Sync {
    /// The URL the client talks to (recorded next to the token pair, so a pair is only reused for it).
    fn base_url(&self) -> &str;

    /// `GET /health/ready`: the running adapter types (unauthenticated, logged only at DEBUG).
    fn health_ready(&self) -> impl Future<Output = Result<BTreeSet<String>, ApiError>> + Send;

    /// The TCP ports listening beside DittoFS (the pod's network namespace), without a request: `None` when
    /// they cannot be read. See [`crate::listeners`].
    fn listening_ports(&self) -> Option<BTreeSet<u16>>;

    /// `POST /api/v1/auth/login`.
    fn login(
        &self,
        username: &str,
        password: &SecretString,
    ) -> impl Future<Output = Result<TokenPair, ApiError>> + Send;

    /// `POST /api/v1/auth/refresh`: a new pair (the old refresh token stays valid; DittoFS has no rotation).
    fn refresh(&self, refresh_token: &SecretString) -> impl Future<Output = Result<TokenPair, ApiError>> + Send;

    /// `POST /api/v1/users` (admin): `Ok`, or [`ApiError::Conflict`] when the user exists.
    fn create_user(
        &self,
        admin: &SecretString,
        username: &str,
        password: &SecretString,
        role: &str,
    ) -> impl Future<Output = Result<(), ApiError>> + Send;

    /// `POST /api/v1/users/{username}/password` (admin reset).
    fn reset_password(
        &self,
        admin: &SecretString,
        username: &str,
        password: &SecretString,
    ) -> impl Future<Output = Result<(), ApiError>> + Send;

    /// `PUT /api/v1/users/{username}` (admin) with only `role`: the other fields are left as they are.
    /// DittoFS applies it to tokens issued from then on (login, refresh), never to tokens already out.
    fn set_role(
        &self,
        admin: &SecretString,
        username: &str,
        role: &str,
    ) -> impl Future<Output = Result<(), ApiError>> + Send;

    /// `GET /api/v1/adapters` (admin or operator). A JSON `null` or any non-array is malformed, never "empty".
    fn list_adapters(&self, token: &SecretString) -> impl Future<Output = Result<Vec<ApiAdapter>, ApiError>> + Send;

    /// `GET /api/v1/snapshot-policies` (admin): every share's policy.
    fn list_snapshot_policies(
        &self,
        admin: &SecretString,
    ) -> impl Future<Output = Result<Vec<ApiSnapshotPolicy>, ApiError>> + Send;

    /// `PUT /api/v1/shares/{share}/snapshot-policy` (admin): create or replace; [`ApiError::NotFound`] when
    /// the share does not exist.
    fn put_snapshot_policy(
        &self,
        admin: &SecretString,
        share: &str,
        body: &PolicyBody,
    ) -> impl Future<Output = Result<(), ApiError>> + Send;

    /// `DELETE /api/v1/shares/{share}/snapshot-policy` (admin); [`ApiError::NotFound`] when there is none.
    fn delete_snapshot_policy(
        &self,
        admin: &SecretString,
        share: &str,
    ) -> impl Future<Output = Result<(), ApiError>> + Send;
}
