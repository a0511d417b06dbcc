//! Reconcile errors: each has a stable label (metrics, Events) and says whether retrying can help.
//!
//! Invalid objects (a spec that does not parse, an object the apiserver refuses as invalid) wait for
//! the next change of the server; everything else is retried with a per-server exponential backoff.

use std::time::Duration;

use crate::raw::InvalidSpec;

/// Why a reconcile failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The stored spec does not parse (an object that bypassed the schema).
    #[error("invalid DittoServer: {0}")]
    InvalidSpec(#[from] InvalidSpec),
    /// The server has no namespace or uid (never true for an object read from the apiserver).
    #[error("the DittoServer has no {0}")]
    MissingMetadata(&'static str),
    /// An API call failed.
    #[error("{action}: {source}")]
    Kube {
        /// What was being done, e.g. "apply StatefulSet fs".
        action: String,
        /// The client error.
        #[source]
        source: kube::Error,
    },
    /// Adapter Services, NetworkPolicies or container ports could not be written. Each failure got its
    /// own Warning Event and `AdaptersReady=False`; always retried with the backoff, even a refusal,
    /// since the next report may fix what was refused.
    #[error("{failed} adapter object write(s) failed; the first: {first}")]
    Adapters {
        /// How many writes failed.
        failed: usize,
        /// The first failure.
        #[source]
        first: Box<Error>,
    },
    /// A body could not be serialized (a bug).
    #[error("serializing {what}: {source}")]
    Serialize {
        /// What was serialized.
        what: &'static str,
        /// The serde error.
        #[source]
        source: serde_json::Error,
    },
}

impl Error {
    /// Wraps a client error with what was being done.
    pub fn kube(action: impl Into<String>, source: kube::Error) -> Self {
        Error::Kube { action: action.into(), source }
    }

    /// The HTTP status of an API error, if that is what this is.
    pub fn status_code(&self) -> Option<u16> {
        match self {
            Error::Kube { source: kube::Error::Api(status), .. } => Some(status.code),
            _ => None,
        }
    }

    /// Stable label for metrics and Event notes.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::InvalidSpec(_) => "invalid_spec",
            Error::MissingMetadata(_) => "missing_metadata",
            Error::Serialize { .. } => "serialize",
            Error::Adapters { .. } => "adapters_failed",
            Error::Kube { source, .. } => match source {
                kube::Error::Api(status) => match status.code {
                    400 | 422 => "rejected",
                    403 => "forbidden",
                    404 => "not_found",
                    409 => "conflict",
                    429 => "throttled",
                    500..=599 => "apiserver_error",
                    _ => "api_error",
                },
                _ => "transport",
            },
        }
    }

    /// True when retrying without a change of the server cannot succeed: the spec does not parse, or
    /// the apiserver refuses what the spec produces as invalid (e.g. a malformed size).
    pub fn is_permanent(&self) -> bool {
        matches!(self, Error::InvalidSpec(_) | Error::MissingMetadata(_) | Error::Serialize { .. })
            || matches!(self.status_code(), Some(400 | 422))
    }
}

/// Backoff after the `failures`-th consecutive transient failure: 1 s, doubling, capped at 5 min.
pub fn backoff(failures: u32) -> Duration {
    let secs = 1u64 << failures.saturating_sub(1).min(9);
    Duration::from_secs(secs.min(300))
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::core::Status;

    fn api(code: u16) -> Error {
        let status = Status::failure("refused", "Test").with_code(code);
        Error::kube("apply", kube::Error::Api(status.boxed()))
    }

    #[test]
    fn labels_and_permanence() {
        assert_eq!(api(422).metric_label(), "rejected");
        assert!(api(422).is_permanent());
        assert_eq!(api(409).metric_label(), "conflict");
        assert!(!api(409).is_permanent());
        assert!(!api(403).is_permanent());
        assert!(!api(503).is_permanent());
        let adapters = Error::Adapters { failed: 2, first: Box::new(api(422)) };
        assert_eq!(adapters.metric_label(), "adapters_failed");
        assert!(!adapters.is_permanent(), "a refused adapter object is retried: the next report may fix it");
        let invalid = Error::InvalidSpec(InvalidSpec { path: "replicas".into(), message: "bad".into() });
        assert!(invalid.is_permanent());
        assert_eq!(invalid.to_string(), "invalid DittoServer: spec.replicas: bad");
    }

    #[test]
    fn backoff_doubles_to_five_minutes() {
        assert_eq!(backoff(1), Duration::from_secs(1));
        assert_eq!(backoff(2), Duration::from_secs(2));
        assert_eq!(backoff(5), Duration::from_secs(16));
        assert_eq!(backoff(30), Duration::from_secs(300));
    }
}
