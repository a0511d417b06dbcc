//! What can go wrong talking to DittoFS, classified the way the agent reacts to it: transport failures
//! (DittoFS down or hung), 401 (renew the token), 403, 409 (user exists), 5xx, and malformed answers.

use std::time::Duration;

use super::tls::TlsFailure;
use crate::text::clean;

/// The HTTP client could not be built (a TLS backend or resolver that fails to initialise).
#[derive(Debug, thiserror::Error)]
#[error("HTTP client: {0}")]
pub struct ClientError(pub(super) String);

/// A failed request to DittoFS. Messages hold DittoFS's own error text, never a token or password.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    #[error("connection refused: {0}")]
    Refused(String),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("transport error: {0}")]
    Transport(String),
    #[error("HTTP 401 Unauthorized: {0}")]
    Unauthorized(String),
    #[error("HTTP 403 Forbidden: {0}")]
    Forbidden(String),
    #[error("HTTP 404 Not Found: {0}")]
    NotFound(String),
    #[error("HTTP 409 Conflict: {0}")]
    Conflict(String),
    #[error("HTTP {status}: {message}")]
    Server { status: u16, message: String },
    #[error("HTTP {status}: {message}")]
    Unexpected { status: u16, message: String },
    #[error("malformed response: {0}")]
    Malformed(String),
    /// The TLS handshake failed (or the agent's TLS files are unusable): no HTTP answer, like a refusal.
    #[error("TLS: {detail}")]
    Tls { failure: TlsFailure, detail: String },
}

impl ApiError {
    /// Stable metric label.
    pub fn label(&self) -> &'static str {
        match self {
            ApiError::Refused(_) => "refused",
            ApiError::Timeout(_) => "timeout",
            ApiError::Transport(_) => "transport",
            ApiError::Unauthorized(_) => "unauthorized",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::NotFound(_) => "not_found",
            ApiError::Conflict(_) => "conflict",
            ApiError::Server { .. } => "server_error",
            ApiError::Unexpected { .. } => "unexpected_status",
            ApiError::Malformed(_) => "malformed",
            ApiError::Tls { failure, .. } => failure.label(),
        }
    }

    /// One CamelCase word for `reachability.reason`.
    pub fn reason(&self) -> &'static str {
        match self {
            ApiError::Refused(_) => "ConnectionRefused",
            ApiError::Timeout(_) => "Timeout",
            ApiError::Transport(_) => "ConnectionError",
            ApiError::Unauthorized(_) => "Unauthorized",
            ApiError::Forbidden(_) => "Forbidden",
            ApiError::NotFound(_) => "NotFound",
            ApiError::Conflict(_) => "Conflict",
            ApiError::Server { .. } => "ServerError",
            ApiError::Unexpected { .. } => "UnexpectedStatus",
            ApiError::Malformed(_) => "MalformedResponse",
            ApiError::Tls { failure, .. } => failure.reason(),
        }
    }

    /// No HTTP answer at all: DittoFS is down, hung or unreachable — or cannot be trusted (TLS), which the
    /// agent treats the same way: it keeps its last adapter list and reports the entry unreachable.
    pub fn is_transport(&self) -> bool {
        matches!(self, ApiError::Refused(_) | ApiError::Timeout(_) | ApiError::Transport(_) | ApiError::Tls { .. })
    }

    /// Worth retrying soon without changing credentials (the Go operator's "transient" class).
    pub fn is_transient(&self) -> bool {
        self.is_transport() || matches!(self, ApiError::Server { .. })
    }

    /// Builds the error of a non-success HTTP answer from its status and body.
    pub(crate) fn from_status(status: u16, content_type: &str, body: &[u8]) -> ApiError {
        let message = error_text(content_type, body);
        match status {
            401 => ApiError::Unauthorized(message),
            403 => ApiError::Forbidden(message),
            404 => ApiError::NotFound(message),
            409 => ApiError::Conflict(message),
            500..=599 => ApiError::Server { status, message },
            _ => ApiError::Unexpected { status, message },
        }
    }

    /// Classifies a failure without an HTTP answer (connect, TLS, or the body could not be read).
    pub(crate) fn from_transport(e: &(dyn std::error::Error + 'static), url: &str) -> ApiError {
        if let Some((failure, detail)) = super::tls::classify(e) {
            return ApiError::Tls { failure, detail };
        }
        let mut source = Some(e);
        while let Some(err) = source {
            if let Some(io) = err.downcast_ref::<std::io::Error>()
                && io.kind() == std::io::ErrorKind::ConnectionRefused
            {
                return ApiError::Refused(url.to_owned());
            }
            source = err.source();
        }
        ApiError::Transport(clean(&full_chain(e)))
    }
}

/// DittoFS's error text: `detail` of a problem+json body (docs/dittofs-api.md#errors), the text of a Go
/// `http.Error` (text/plain, used by the auth middleware: docs/dittofs-api.md#middleware-order-and-status-codes),
/// or the start of anything else.
fn error_text(content_type: &str, body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let json_like =
        content_type.starts_with("application/problem+json") || content_type.starts_with("application/json");
    if json_like && let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) {
        for key in ["detail", "title", "error"] {
            if let Some(s) = v.get(key).and_then(|s| s.as_str()).filter(|s| !s.is_empty()) {
                return clean(s);
            }
        }
    }
    let t = clean(&text);
    if t.is_empty() { "(empty body)".to_owned() } else { t }
}

fn full_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(err) = source {
        out.push_str(": ");
        out.push_str(&err.to_string());
        source = err.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_problem_and_plain_text_answers() {
        let problem = br#"{"type":"about:blank","title":"Conflict","status":409,"detail":"User already exists"}"#;
        assert_eq!(
            ApiError::from_status(409, "application/problem+json", problem),
            ApiError::Conflict("User already exists".into())
        );
        let plain = b"Invalid or expired token\n";
        assert_eq!(
            ApiError::from_status(401, "text/plain; charset=utf-8", plain),
            ApiError::Unauthorized("Invalid or expired token".into())
        );
        let e = ApiError::from_status(503, "", b"");
        assert_eq!(e.reason(), "ServerError");
        assert!(e.is_transient());
        assert_eq!(ApiError::from_status(418, "text/html", b"<b>\x07tea</b>").label(), "unexpected_status");
    }
}
