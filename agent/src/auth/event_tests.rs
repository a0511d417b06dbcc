//! The auth Events on the fake DittoFS: one per change of the authentication state, whatever the number of
//! attempts, with the Go operator's reasons.

use std::{sync::Arc, time::Duration};

use tokio::{sync::mpsc, time::advance};

use super::{Auth, Clock};
use crate::{
    config::{AgentConfig, SecretKeyRef},
    credentials::fake::FakeStore,
    dittofs::fake::{ADMIN_PASSWORD, FakeDittoFs, URL},
    events::{AgentEvent, Events},
    metrics::Metrics,
    secret::SecretString,
};

fn start(config: &AgentConfig, fs: &FakeDittoFs) -> (Auth<FakeDittoFs, FakeStore>, mpsc::Receiver<AgentEvent>) {
    let (events, queued) = Events::channel();
    let store = FakeStore::with_password("operator-password");
    let auth = Auth::new(config, fs.clone(), store, Arc::new(Metrics::new())).with_clock(Clock::tokio());
    (auth.with_events(events), queued)
}

fn config(admin_password: &str) -> AgentConfig {
    let mut c = AgentConfig::new("fs-0", "ns", "fs", URL, SecretString::new(admin_password));
    c.timings.auth_backoff_min = Duration::from_secs(2);
    c.timings.auth_backoff_max = Duration::from_secs(8);
    c
}

/// The reasons queued so far.
fn drain(queued: &mut mpsc::Receiver<AgentEvent>) -> Vec<&'static str> {
    std::iter::from_fn(|| queued.try_recv().ok()).map(|e| e.reason).collect()
}

#[tokio::test(start_paused = true)]
async fn an_outage_is_one_event_and_the_account_created_after_it_another() {
    let fs = FakeDittoFs::new();
    fs.state().down = true;
    let (mut auth, mut queued) = start(&config(ADMIN_PASSWORD), &fs);
    for _ in 0..4 {
        auth.token().await.unwrap_err();
    }
    assert_eq!(drain(&mut queued), ["AuthAPIUnreachable"], "four refused attempts, one Event");

    fs.state().down = false;
    auth.token().await.expect("provisioned");
    let events: Vec<_> = std::iter::from_fn(|| queued.try_recv().ok()).collect();
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!((events[0].warning, events[0].reason), (false, "AuthProvisioned"));
    assert!(events[0].note.contains("\"k8s-operator\" (role operator) created"), "{}", events[0].note);

    // A later outage is news again.
    fs.state().down = true;
    auth.token_rejected().await.unwrap_err();
    auth.token_rejected().await.unwrap_err();
    assert_eq!(drain(&mut queued), ["AuthAPIUnreachable"]);
}

#[tokio::test(start_paused = true)]
async fn a_refused_admin_of_the_users_secret_is_one_event_across_the_back_off() {
    let mut c = config("wrong-admin-password");
    c.admin_secret = Some(SecretKeyRef { name: "my-admin".into(), key: "pw".into() });
    let fs = FakeDittoFs::new();
    let (mut auth, mut queued) = start(&c, &fs);
    for _ in 0..3 {
        auth.token().await.unwrap_err();
        // Refused while backing off (no attempt), then the next attempt.
        auth.token().await.unwrap_err();
        let until = auth.backoff_until().expect("backing off");
        advance(until - tokio::time::Instant::now()).await;
    }
    let events: Vec<_> = std::iter::from_fn(|| queued.try_recv().ok()).collect();
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!((events[0].warning, events[0].reason), (true, "AdminCredentialUnauthorized"));
    assert!(events[0].note.contains("Secret ns/my-admin key \"pw\""), "{}", events[0].note);
    assert!(!events[0].note.contains("wrong-admin-password"), "never the password");

    // The managed bootstrap Secret has the other reason.
    let mut c = config("wrong-admin-password");
    c.admin_secret = Some(SecretKeyRef { name: "fs-admin-bootstrap-credentials".into(), key: "password".into() });
    let (mut auth, mut queued) = start(&c, &fs);
    auth.token().await.unwrap_err();
    assert_eq!(drain(&mut queued), ["AdminBootstrapUnauthorized"]);
}
