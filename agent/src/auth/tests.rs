//! Auth against the fake DittoFS on paused tokio time: provisioning, the 80 % refresh schedule, the
//! escalation refresh → login → provision, and the back-off after failures that retrying cannot fix.

use std::{sync::Arc, time::Duration};

use dittofs_api::names::OPERATOR_USERNAME;
use tokio::time::{Instant, advance};

use super::{Auth, Clock};
use crate::{
    config::AgentConfig,
    credentials::fake::FakeStore,
    dittofs::{
        ApiError, Endpoint, OPERATOR_ROLE,
        fake::{ADMIN, ADMIN_PASSWORD, FakeDittoFs, URL},
    },
    error::AuthError,
    metrics::Metrics,
    secret::SecretString,
};

const OPERATOR_PASSWORD: &str = "operator-password";

fn config(admin_password: &str) -> AgentConfig {
    let mut c = AgentConfig::new("fs-0", "ns", "fs", URL, SecretString::new(admin_password));
    c.timings.auth_backoff_min = Duration::from_secs(2);
    c.timings.auth_backoff_max = Duration::from_secs(60);
    c
}

fn auth(fs: &FakeDittoFs, store: &FakeStore, admin_password: &str) -> Auth<FakeDittoFs, FakeStore> {
    Auth::new(&config(admin_password), fs.clone(), store.clone(), Arc::new(Metrics::new())).with_clock(Clock::tokio())
}

/// A DittoFS where `k8s-operator` already exists with the Secret's password.
fn provisioned() -> FakeDittoFs {
    let fs = FakeDittoFs::new();
    fs.state().users.insert(OPERATOR_USERNAME.into(), (OPERATOR_PASSWORD.into(), OPERATOR_ROLE.into()));
    fs
}

fn logins(fs: &FakeDittoFs) -> Vec<String> {
    fs.calls(Endpoint::Login).into_iter().filter_map(|c| c.user).collect()
}

#[tokio::test(start_paused = true)]
async fn a_missing_account_is_created_with_the_admin_password_and_the_pair_mirrored() {
    let fs = FakeDittoFs::new();
    let store = FakeStore::with_password(OPERATOR_PASSWORD);
    let mut auth = auth(&fs, &store, ADMIN_PASSWORD);
    let token = auth.token().await.expect("provisioned and logged in");

    assert_eq!(logins(&fs), [OPERATOR_USERNAME, ADMIN, OPERATOR_USERNAME], "refused, admin, then the new account");
    let users = fs.state().users.clone();
    assert_eq!(users[OPERATOR_USERNAME], (OPERATOR_PASSWORD.to_owned(), OPERATOR_ROLE.to_owned()));
    assert_eq!(fs.calls(Endpoint::CreateUser)[0].user.as_deref(), Some(ADMIN), "created by the admin");
    assert_eq!(store.contents().mirrors, 1);
    let mirrored = store.contents().stored.as_ref().and_then(|s| s.access_token.clone());
    assert_eq!(mirrored, Some(token), "the pair is mirrored");
    assert!(auth.view().is_some_and(|v| v.authenticated));

    // The token is reused until it must be renewed: no further request.
    let calls = fs.state().calls.len();
    advance(Duration::from_secs(60)).await;
    auth.token().await.unwrap();
    assert_eq!(fs.state().calls.len(), calls);
}

#[tokio::test(start_paused = true)]
async fn refresh_falls_due_at_80_percent_of_the_lifetime() {
    let fs = provisioned();
    fs.state().lifetime = Duration::from_secs(100);
    let store = FakeStore::with_password(OPERATOR_PASSWORD);
    let mut auth = auth(&fs, &store, ADMIN_PASSWORD);
    assert_eq!(auth.refresh_in(), None, "nothing to refresh before the first login");
    let first = auth.token().await.unwrap();
    assert_eq!(auth.refresh_in(), Some(Duration::from_secs(80)));
    advance(Duration::from_secs(79)).await;
    assert_eq!(auth.refresh_in(), Some(Duration::from_secs(1)));
    advance(Duration::from_secs(1)).await;
    assert_eq!(auth.refresh_in(), Some(Duration::ZERO), "due");

    auth.refresh_now().await.unwrap();
    let second = auth.token().await.unwrap();
    assert_ne!(first, second, "a new pair");
    assert_eq!((fs.count(Endpoint::Refresh), fs.count(Endpoint::Login)), (1, 1), "refreshed, not logged in again");
    assert_eq!(auth.refresh_in(), Some(Duration::from_secs(80)), "counted from the new pair");
    assert_eq!(store.contents().mirrors, 2, "every new pair is mirrored");
}

#[tokio::test(start_paused = true)]
async fn an_expired_access_token_is_refreshed_before_use() {
    let fs = provisioned();
    fs.state().lifetime = Duration::from_secs(20);
    let store = FakeStore::with_password(OPERATOR_PASSWORD);
    let mut auth = auth(&fs, &store, ADMIN_PASSWORD);
    let first = auth.token().await.unwrap();
    // Within the last two seconds of its life a token is not handed out any more.
    advance(Duration::from_millis(18_500)).await;
    let second = auth.token().await.unwrap();
    assert_ne!(first, second);
    assert_eq!(fs.count(Endpoint::Refresh), 1);
}

#[tokio::test(start_paused = true)]
async fn a_refused_refresh_falls_back_to_login() {
    let fs = provisioned();
    let store = FakeStore::with_password(OPERATOR_PASSWORD);
    let mut auth = auth(&fs, &store, ADMIN_PASSWORD);
    auth.token().await.unwrap();
    fs.fail_next(Endpoint::Refresh, ApiError::Unauthorized("Invalid or expired refresh token".into()));

    auth.refresh_now().await.expect("logged in again");
    assert_eq!(fs.count(Endpoint::Refresh), 1);
    assert_eq!(logins(&fs), [OPERATOR_USERNAME, OPERATOR_USERNAME]);
    assert_eq!(fs.count(Endpoint::CreateUser), 0, "the account was fine: no provisioning");
    assert!(auth.backoff_until().is_none());
}

#[tokio::test(start_paused = true)]
async fn an_account_lost_with_the_database_is_provisioned_again() {
    let fs = provisioned();
    let store = FakeStore::with_password(OPERATOR_PASSWORD);
    let mut auth = auth(&fs, &store, ADMIN_PASSWORD);
    auth.token().await.unwrap();
    fs.wipe();

    // The refresh re-reads the user: refused, login refused, so the admin creates the account again.
    let token = auth.token_rejected().await.expect("healed without a restart");
    assert_eq!(fs.count(Endpoint::Refresh), 1);
    assert_eq!(logins(&fs), [OPERATOR_USERNAME, OPERATOR_USERNAME, ADMIN, OPERATOR_USERNAME]);
    assert_eq!(fs.count(Endpoint::CreateUser), 1);
    assert!(fs.state().users.contains_key(OPERATOR_USERNAME));
    assert_eq!(store.contents().stored.as_ref().and_then(|s| s.access_token.clone()), Some(token));
}

#[tokio::test(start_paused = true)]
async fn a_changed_operator_password_is_reset_by_the_admin() {
    let fs = FakeDittoFs::new();
    fs.state().users.insert(OPERATOR_USERNAME.into(), ("someone-else-set-this".into(), OPERATOR_ROLE.into()));
    let store = FakeStore::with_password(OPERATOR_PASSWORD);
    let mut auth = auth(&fs, &store, ADMIN_PASSWORD);
    auth.token().await.expect("password reset, then logged in");
    assert_eq!(fs.count(Endpoint::CreateUser), 1, "409: the user exists");
    assert_eq!(fs.calls(Endpoint::ResetPassword)[0].user.as_deref(), Some(ADMIN));
    assert_eq!(fs.state().users[OPERATOR_USERNAME].0, OPERATOR_PASSWORD);
}

#[tokio::test(start_paused = true)]
async fn a_refused_admin_password_backs_off_growing_jittered_and_capped() {
    let fs = FakeDittoFs::new();
    let store = FakeStore::with_password(OPERATOR_PASSWORD);
    let mut auth = auth(&fs, &store, "wrong-admin-password");
    let (min, max) = (Duration::from_secs(2), Duration::from_secs(60));
    let mut delays = Vec::new();
    for attempt in 0..8 {
        let err = auth.token().await.unwrap_err();
        assert!(matches!(err, AuthError::AdminRefused { .. }), "attempt {attempt}: {err}");
        assert_eq!(auth.view().map(|v| v.reason), Some("AuthenticationFailed"));
        let until = auth.backoff_until().expect("backing off");
        delays.push(until - Instant::now());

        // Until then nothing is sent: the error says how long is left, with the cause.
        let calls = fs.state().calls.len();
        advance((until - Instant::now()) / 2).await;
        let waiting = auth.token().await.unwrap_err();
        assert!(
            matches!(&waiting, AuthError::BackingOff(_, cause) if matches!(**cause, AuthError::AdminRefused { .. }))
        );
        assert_eq!(waiting.reachability_reason(), "AdminCredentialsRefused");
        assert_eq!(fs.state().calls.len(), calls, "no request while backing off");
        advance(until - Instant::now()).await;
    }
    for (n, d) in delays.iter().enumerate() {
        let base = min.saturating_mul(1 << n).min(max);
        assert!(*d >= base && *d <= (base * 2).min(max), "delay {n}: {d:?} (base {base:?})");
    }
    assert_eq!(delays[7], max, "capped at auth_backoff_max");
    // Two logins per attempt (operator refused, admin refused), none in between.
    assert_eq!(fs.count(Endpoint::Login), 16);

    // Once the admin password is right again, the next attempt provisions and the back-off is over.
    fs.state().users.get_mut(ADMIN).unwrap().0 = "wrong-admin-password".into();
    auth.token().await.expect("provisioned");
    assert!(auth.backoff_until().is_none());
    assert!(auth.view().is_some_and(|v| v.authenticated));
}

#[tokio::test(start_paused = true)]
async fn an_unreachable_dittofs_is_retried_without_back_off() {
    let fs = provisioned();
    fs.state().down = true;
    let store = FakeStore::with_password(OPERATOR_PASSWORD);
    let mut auth = auth(&fs, &store, ADMIN_PASSWORD);
    let err = auth.token().await.unwrap_err();
    assert_eq!((err.auth_reason(), err.reachability_reason()), ("APIUnreachable", "ConnectionRefused"));
    assert!(auth.backoff_until().is_none(), "the poll schedule retries, not the back-off");
    fs.state().down = false;
    auth.token().await.expect("at once");
}

#[tokio::test(start_paused = true)]
async fn provisioning_without_an_admin_password_or_secret_is_reported() {
    let fs = FakeDittoFs::new();
    let store = FakeStore::with_password(OPERATOR_PASSWORD);
    let err = auth(&fs, &store, "").token().await.unwrap_err();
    assert!(matches!(err, AuthError::NoAdminPassword(_)), "{err}");
    assert_eq!(err.reachability_reason(), "AdminPasswordMissing");
    assert_eq!(logins(&fs), [OPERATOR_USERNAME], "the admin login is not even tried");

    let missing = FakeStore::default();
    let err = auth(&fs, &missing, ADMIN_PASSWORD).token().await.unwrap_err();
    assert_eq!(err.reachability_reason(), "CredentialsSecretUnusable", "{err}");
}
