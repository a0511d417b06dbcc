//! Kubernetes Events (events.k8s.io/v1) on the agent's DittoServer, reporter `dittofs-agent`, instance the
//! pod: the authentication Events of the Go operator, with its reasons and types, so `kubectl describe ditto`
//! shows them as it did, and the snapshot-policy Events ([`crate::snapshots`] decides those).
//!
//! - One Event per change of the authentication state, never one per attempt: [`Announced`] remembers the
//!   last failure announced (its reason and the kind of error) and stays silent while it repeats; a success
//!   clears it. A long outage gives one `AuthAPIUnreachable`.
//! - Events never hold up authentication: they are queued (bounded; past that dropped) and one task
//!   publishes them. A publish that fails is logged and dropped: Events explain, the status entry decides.
//! - The task waits for the DittoServer's uid (from the agent's watch) before it publishes: `kubectl
//!   describe` finds Events by the uid of the object they regard.
//! - Each Event gets a fresh [`Recorder`]: a recorder that saw the same reason within minutes patches its
//!   earlier Event into a series, which needs `patch` on events — and every Event here is news anyway. So
//!   the agent's Role grants `create` only.

use dittofs_api::{conditions::events as reasons, names::OPERATOR_USERNAME};
use k8s_openapi::api::core::v1::ObjectReference;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::error::AuthError;

/// The agent as an Event's reporting controller (the instance is the pod name).
pub const REPORTER: &str = "dittofs-agent";

/// Most Events waiting to be published: an apiserver that takes none must not make the agent hoard them.
const MAX_QUEUED: usize = 64;

/// The API caps an Event's note at 1 kB.
const MAX_NOTE_BYTES: usize = dittofs_api::text::MAX_EVENT_NOTE_BYTES;

/// One Event, as the auth loop decides it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentEvent {
    pub warning: bool,
    pub reason: &'static str,
    pub action: &'static str,
    pub note: String,
}

/// Where Events go: the publishing task's queue, or nowhere (unit tests, tools without an apiserver).
#[derive(Debug, Clone)]
pub struct Events {
    queue: Option<mpsc::Sender<AgentEvent>>,
    regarding: Option<watch::Sender<Option<ObjectReference>>>,
}

impl Default for Events {
    fn default() -> Self {
        Events::none()
    }
}

impl Events {
    /// Events that go nowhere.
    pub fn none() -> Events {
        Events { queue: None, regarding: None }
    }

    /// Starts the publishing task as `pod`; it ends with `shutdown` (what is still queued is dropped).
    pub fn spawn(client: kube::Client, pod: &str, shutdown: CancellationToken) -> Events {
        let (queue, queued) = mpsc::channel(MAX_QUEUED);
        let (regarding, object) = watch::channel(None);
        let reporter = Reporter { controller: REPORTER.into(), instance: Some(pod.into()) };
        tokio::spawn(async move {
            shutdown.run_until_cancelled(publish(queued, object, client, reporter)).await;
        });
        Events { queue: Some(queue), regarding: Some(regarding) }
    }

    /// A queue the caller reads instead of the apiserver (unit tests).
    #[cfg(test)]
    pub(crate) fn channel() -> (Events, mpsc::Receiver<AgentEvent>) {
        let (queue, queued) = mpsc::channel(MAX_QUEUED);
        (Events { queue: Some(queue), regarding: None }, queued)
    }

    /// The DittoServer as the watch delivered it: the object the Events regard.
    pub fn regarding(&self, reference: ObjectReference) {
        let Some(regarding) = &self.regarding else { return };
        // Without the resourceVersion: it changes with every status write and means nothing to an Event.
        let reference = ObjectReference { resource_version: None, ..reference };
        regarding.send_if_modified(|current| {
            let changed = current.as_ref() != Some(&reference);
            if changed {
                *current = Some(reference);
            }
            changed
        });
    }

    /// Queues `event`; never waits. A full queue drops it (logged).
    pub fn emit(&self, event: AgentEvent) {
        let Some(queue) = &self.queue else { return };
        let reason = event.reason;
        if let Err(e) = queue.try_send(event) {
            tracing::info!(reason, error = %e, "Event dropped");
        }
    }
}

async fn publish(
    mut queued: mpsc::Receiver<AgentEvent>,
    mut object: watch::Receiver<Option<ObjectReference>>,
    client: kube::Client,
    reporter: Reporter,
) {
    while let Some(event) = queued.recv().await {
        let Ok(reference) = object.wait_for(Option::is_some).await.map(|r| r.clone()) else { return };
        let Some(reference) = reference else { continue };
        let kube_event = Event {
            type_: if event.warning { EventType::Warning } else { EventType::Normal },
            reason: event.reason.into(),
            note: Some(dittofs_api::text::truncate(event.note, MAX_NOTE_BYTES)),
            action: event.action.into(),
            secondary: None,
        };
        match Recorder::new(client.clone(), reporter.clone()).publish(&kube_event, &reference).await {
            Ok(()) => tracing::debug!(reason = event.reason, "Event published"),
            Err(e) => tracing::info!(reason = event.reason, error = %e, "could not publish an Event; dropped"),
        }
    }
}

/// Which admin Secret the agent uses: the one the controller manages, or the user's
/// `identity.admin.passwordSecretRef` (the Go operator's two reasons for a refused admin).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdminSecret {
    Managed,
    User,
}

/// How a renewal that succeeded got its account, when it had to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provisioned {
    Created,
    PasswordReset,
}

/// The last failure announced: (reason, kind of error). See the module docs.
#[derive(Debug, Default)]
pub struct Announced(Option<(&'static str, &'static str)>);

impl Announced {
    /// A renewal succeeded: the failure is over, the next one is news. `provisioned` gives `AuthProvisioned`.
    pub fn succeeded(&mut self, provisioned: Option<Provisioned>) -> Option<AgentEvent> {
        self.0 = None;
        let how = match provisioned? {
            Provisioned::Created => "created",
            Provisioned::PasswordReset => "existed; its role was set to operator and its password reset",
        };
        Some(AgentEvent {
            warning: false,
            reason: reasons::AUTH_PROVISIONED,
            action: "Provision",
            note: format!("DittoFS user {OPERATOR_USERNAME:?} (role operator) {how}; the agent is logged in"),
        })
    }

    /// A renewal failed with `e` (never a back-off wait: that is no attempt). The Event when it is news.
    pub fn failed(&mut self, e: &AuthError, admin: AdminSecret) -> Option<AgentEvent> {
        let e = e.root();
        let (reason, kind, note) = match e {
            // Whatever the transport error of each retry, one outage is one Event.
            AuthError::Api(api) if api.is_transient() => {
                (reasons::AUTH_API_UNREACHABLE, "", format!("DittoFS API is unreachable: {api}"))
            }
            AuthError::AdminRefused { .. } => {
                let reason = match admin {
                    AdminSecret::Managed => reasons::ADMIN_BOOTSTRAP_UNAUTHORIZED,
                    AdminSecret::User => reasons::ADMIN_CREDENTIAL_UNAUTHORIZED,
                };
                (reason, "", e.to_string())
            }
            e => (reasons::AUTH_FAILED, e.label(), e.to_string()),
        };
        if self.0 == Some((reason, kind)) {
            return None;
        }
        self.0 = Some((reason, kind));
        Some(AgentEvent { warning: true, reason, action: "Authenticate", note })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dittofs::ApiError;

    fn refused(source: &str) -> AuthError {
        AuthError::AdminRefused { user: "admin".into(), source_desc: source.into(), detail: "HTTP 401".into() }
    }

    #[test]
    fn one_event_per_change_of_the_failure_and_again_after_a_success() {
        let mut a = Announced::default();
        let down = AuthError::Api(ApiError::Refused("x".into()));
        let first = a.failed(&down, AdminSecret::Managed).unwrap();
        assert_eq!((first.warning, first.reason), (true, "AuthAPIUnreachable"));
        assert!(first.note.starts_with("DittoFS API is unreachable: connection refused"), "{}", first.note);
        assert_eq!(
            a.failed(&AuthError::Api(ApiError::Timeout(std::time::Duration::from_secs(5))), AdminSecret::Managed),
            None
        );
        let waiting = AuthError::BackingOff(std::time::Duration::from_secs(2), Box::new(down.clone()));
        assert_eq!(a.failed(&waiting, AdminSecret::Managed), None, "the same outage");

        let secret =
            a.failed(&refused("Secret ns/fs-admin-bootstrap-credentials key \"password\""), AdminSecret::Managed);
        assert_eq!(secret.unwrap().reason, "AdminBootstrapUnauthorized");
        assert_eq!(a.failed(&refused("again"), AdminSecret::Managed), None);
        let missing = AuthError::CredentialsSecret { secret: "s".into(), detail: "no password key".into() };
        assert_eq!(a.failed(&missing, AdminSecret::Managed).unwrap().reason, "AuthFailed");
        let other = AuthError::OperatorRefused { user: "k8s-operator".into(), detail: "HTTP 403".into() };
        assert_eq!(a.failed(&other, AdminSecret::Managed).unwrap().reason, "AuthFailed", "another kind of failure");
        assert_eq!(a.failed(&other, AdminSecret::Managed), None);

        assert_eq!(a.succeeded(None), None, "a plain login is no Event");
        assert_eq!(a.failed(&other, AdminSecret::Managed).unwrap().reason, "AuthFailed", "news after a success");
        let provisioned = a.succeeded(Some(Provisioned::Created)).unwrap();
        assert_eq!((provisioned.warning, provisioned.reason), (false, "AuthProvisioned"));
    }

    #[test]
    fn the_users_admin_secret_has_its_own_reason_and_the_note_names_it() {
        let mut a = Announced::default();
        let e = a.failed(&refused("Secret ns/my-admin key \"pw\""), AdminSecret::User).unwrap();
        assert_eq!(e.reason, "AdminCredentialUnauthorized");
        assert!(e.note.contains("Secret ns/my-admin key \"pw\""), "{}", e.note);
        assert!(!e.note.contains("dfsctl"), "{}", e.note);
    }
}
