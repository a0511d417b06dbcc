//! Errors of the agent, each with a stable metric label and, where it ends up in the status, a
//! CamelCase reason.

use crate::dittofs::{ApiError, ClientError};

/// Why [`crate::run`] stopped.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("configuration: {0}")]
    Config(String),
    /// The DittoFS client could not be built.
    #[error("configuration: {0}")]
    Client(#[from] ClientError),
    #[error("admin server: {0}")]
    Admin(String),
    #[error("Kubernetes client: {0}")]
    Kube(#[from] kube::Error),
}

impl AgentError {
    pub fn label(&self) -> &'static str {
        match self {
            AgentError::Config(_) | AgentError::Client(_) => "config",
            AgentError::Admin(_) => "admin_server",
            AgentError::Kube(_) => "kube",
        }
    }
}

/// The admin password file exists but cannot be used. Names the file, never its content.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AdminPasswordError {
    #[error("cannot read the admin password file {path}: {detail}")]
    Unreadable { path: String, detail: String },
    #[error("the admin password file {path} is not UTF-8 text")]
    NotText { path: String },
}

/// Why the agent holds no usable DittoFS token.
#[derive(Debug, Clone, thiserror::Error)]
pub enum AuthError {
    /// DittoFS did not answer, or answered 5xx: retried on the next poll.
    #[error("DittoFS API: {0}")]
    Api(#[from] ApiError),
    /// DittoFS refused the bootstrap admin password: nothing the agent can fix by retrying quickly.
    #[error(
        "DittoFS refused the admin password ({detail}) for user {user:?} from {source_desc}; \
         it is only applied when DittoFS creates its database, so if the admin password was changed \
         in DittoFS, put the current one into that Secret"
    )]
    AdminRefused { user: String, source_desc: String, detail: String },
    /// The `k8s-operator` login was refused even right after its password was (re)set.
    #[error("DittoFS refused user {user:?} right after its password was set: {detail}")]
    OperatorRefused { user: String, detail: String },
    /// The credentials Secret is missing or has no password (the controller creates it).
    #[error("credentials Secret {secret}: {detail}")]
    CredentialsSecret { secret: String, detail: String },
    /// No admin password (its file is missing or empty), and the operator account needs the admin.
    #[error("the operator account must be provisioned or repaired but {0} is empty or missing")]
    NoAdminPassword(String),
    /// The admin password file exists but cannot be read.
    #[error("{0}")]
    AdminPassword(#[from] AdminPasswordError),
    /// DittoFS still gives `k8s-operator` another role than `operator` right after the admin set it.
    #[error("DittoFS reports role {role:?} for user {user:?} right after its role was set to operator")]
    WrongRole { user: String, role: String },
    /// The last attempt failed and the next is not due yet.
    #[error("waiting {0:?} before the next authentication attempt after: {1}")]
    BackingOff(std::time::Duration, Box<AuthError>),
}

impl AuthError {
    pub fn label(&self) -> &'static str {
        match self {
            AuthError::Api(e) => e.label(),
            AuthError::AdminRefused { .. } => "admin_refused",
            AuthError::OperatorRefused { .. } => "operator_refused",
            AuthError::CredentialsSecret { .. } => "credentials_secret",
            AuthError::NoAdminPassword(_) => "no_admin_password",
            AuthError::AdminPassword(_) => "admin_password_unreadable",
            AuthError::WrongRole { .. } => "wrong_role",
            AuthError::BackingOff(_, e) => e.label(),
        }
    }

    /// Reason of `auth` in the status entry: the three reasons of the Authenticated condition.
    pub fn auth_reason(&self) -> &'static str {
        match self {
            AuthError::Api(e) if e.is_transient() => "APIUnreachable",
            AuthError::BackingOff(_, e) => e.auth_reason(),
            _ => "AuthenticationFailed",
        }
    }

    /// Reason of `reachability` when a poll fails on this.
    pub fn reachability_reason(&self) -> &'static str {
        match self {
            AuthError::Api(e) => e.reason(),
            AuthError::BackingOff(_, e) => e.reachability_reason(),
            AuthError::AdminRefused { .. } => "AdminCredentialsRefused",
            AuthError::OperatorRefused { .. } => "Unauthorized",
            AuthError::CredentialsSecret { .. } => "CredentialsSecretUnusable",
            AuthError::NoAdminPassword(_) => "AdminPasswordMissing",
            AuthError::AdminPassword(_) => "AdminPasswordUnreadable",
            AuthError::WrongRole { .. } => "WrongRole",
        }
    }

    /// The root cause, without the back-off wrapper.
    pub fn root(&self) -> &AuthError {
        match self {
            AuthError::BackingOff(_, e) => e.root(),
            e => e,
        }
    }
}

/// Why a full poll failed. It never changes the reported adapters.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PollError {
    #[error("{0}")]
    Api(#[from] ApiError),
    #[error("{0}")]
    Auth(#[from] AuthError),
}

impl PollError {
    pub fn label(&self) -> &'static str {
        match self {
            PollError::Api(e) => e.label(),
            PollError::Auth(e) => e.label(),
        }
    }

    pub fn reachability_reason(&self) -> &'static str {
        match self {
            PollError::Api(e) => e.reason(),
            PollError::Auth(e) => e.reachability_reason(),
        }
    }
}

/// Every label a failed full poll can carry (the metric reader sums them).
pub const POLL_FAILURE_LABELS: &[&str] = &[
    "refused",
    "timeout",
    "transport",
    "unauthorized",
    "forbidden",
    "not_found",
    "conflict",
    "server_error",
    "unexpected_status",
    "malformed",
    "tls_untrusted",
    "tls_expired",
    "tls_name_mismatch",
    "tls_client_cert_rejected",
    "tls_files_unusable",
    "tls_handshake",
    "admin_refused",
    "operator_refused",
    "credentials_secret",
    "no_admin_password",
    "admin_password_unreadable",
    "wrong_role",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_tls_label_is_a_poll_failure_label() {
        for label in crate::dittofs::TlsFailure::LABELS {
            assert!(POLL_FAILURE_LABELS.contains(&label), "{label}");
        }
    }

    #[test]
    fn refused_admin_names_the_secret_and_key() {
        let e = AuthError::AdminRefused {
            user: "admin".into(),
            source_desc: "Secret ns/fs-admin-bootstrap-credentials key \"password\"".into(),
            detail: "HTTP 401 Unauthorized: Invalid username or password".into(),
        };
        let text = e.to_string();
        assert!(text.contains("fs-admin-bootstrap-credentials") && text.contains("\"password\""), "{text}");
        assert_eq!(e.auth_reason(), "AuthenticationFailed");
        let wrapped = AuthError::BackingOff(std::time::Duration::from_secs(4), Box::new(e));
        assert_eq!(wrapped.label(), "admin_refused");
        assert!(POLL_FAILURE_LABELS.contains(&wrapped.label()));
        let down = AuthError::Api(ApiError::Refused("x".into()));
        assert_eq!(down.auth_reason(), "APIUnreachable");
    }
}
