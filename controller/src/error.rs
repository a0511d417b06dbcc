//! Reconcile errors: each has a stable label (metrics, Events) and says whether retrying can help.
//!
//! Invalid objects (a spec that does not parse, an object the apiserver refuses as invalid) wait for
//! the next change of the server; everything else is retried with a per-server, jittered exponential backoff.

use std::time::Duration;

use backon::{BackoffBuilder as _, ExponentialBuilder};

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
    /// A child's fixed name is taken by an object that does not belong to this server: it is never
    /// written or deleted, and the reconcile stops (retried with the backoff, since that object is not
    /// watched and may go away).
    #[error("{kind} {name} already exists and does not belong to this DittoServer ({holder}); it is left untouched")]
    NotOwned {
        /// Its kind.
        kind: String,
        /// Its name.
        name: String,
        /// Who owns it, e.g. "owned by DittoServer other (uid …)".
        holder: String,
    },
    /// The server's StatefulSet has a shape this controller cannot take over (its selector is neither
    /// this controller's nor the Go operator's): nothing is written; retried with the backoff, since the
    /// fix (deleting that StatefulSet) changes an object that is not watched.
    #[error("{0}")]
    TakeoverBlocked(String),
    /// This instance lost the leader Lease while reconciling: the reconcile was cancelled.
    #[error("the leader Lease was lost; reconcile cancelled")]
    LeadershipLost,
    /// The reconcile did not end within its deadline and was cancelled (retried with the backoff).
    #[error("the reconcile took longer than {0:?} and was cancelled")]
    TimedOut(Duration),
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
            Error::NotOwned { .. } => "not_owned",
            Error::TakeoverBlocked(_) => "takeover_blocked",
            Error::LeadershipLost => "leadership_lost",
            Error::TimedOut(_) => "timed_out",
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

/// Shortest retry delay after a transient failure.
pub const MIN_BACKOFF: Duration = Duration::from_secs(1);
/// Longest retry delay, however long the failures last.
pub const MAX_BACKOFF: Duration = Duration::from_secs(300);

/// Backoff after the `failures`-th consecutive transient failure: from 1 s, doubling, never above 5 min,
/// with random jitter so that servers failing together (an apiserver outage) do not retry in step.
pub fn backoff(failures: u32) -> Duration {
    // backon's jitter adds a random share (0 to 1) of the delay on top of it: the doubling base stops
    // at half the ceiling, so the jittered delays spread over [2.5 min, 5 min] once it is reached.
    let mut delays = ExponentialBuilder::new()
        .with_min_delay(MIN_BACKOFF)
        .with_max_delay(MAX_BACKOFF / 2)
        .with_factor(2.0)
        .with_jitter()
        // Seeded explicitly: without backon's `std` feature its jitter would use a fixed seed.
        .with_jitter_seed(rand::random())
        .without_max_times()
        .build();
    // The base reaches the cap after 8 doublings; stepping further changes nothing.
    let step = failures.saturating_sub(1).min(9) as usize;
    delays.nth(step).unwrap_or(MAX_BACKOFF).min(MAX_BACKOFF)
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

    /// The un-jittered delay of the `failures`-th retry: 1 s doubling, capped at 150 s.
    fn base(failures: u32) -> Duration {
        Duration::from_secs((1u64 << (failures - 1).min(9)).min(150))
    }

    #[test]
    fn backoff_doubles_with_jitter_between_one_second_and_five_minutes() {
        for failures in 1..=40u32 {
            for _ in 0..64 {
                let d = backoff(failures);
                assert!(d >= base(failures) && d <= 2 * base(failures), "failure {failures}: {d:?}");
                assert!((MIN_BACKOFF..=MAX_BACKOFF).contains(&d), "failure {failures}: {d:?}");
            }
        }
        assert!(backoff(0) >= MIN_BACKOFF && backoff(u32::MAX) <= MAX_BACKOFF);
        // Growth survives the jitter: every delay of the 5th failure exceeds every one of the 3rd.
        let third = (0..64).map(|_| backoff(3)).max().unwrap();
        let fifth = (0..64).map(|_| backoff(5)).min().unwrap();
        assert!(third < fifth, "{third:?} !< {fifth:?}");
        // Jitter: servers failing together do not retry at the same instant, even at the ceiling.
        for failures in [1, 5, 30] {
            let distinct: std::collections::BTreeSet<_> = (0..64).map(|_| backoff(failures)).collect();
            assert!(distinct.len() > 1, "failure {failures}: no jitter");
        }
    }
}
