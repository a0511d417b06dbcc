//! The agent's auth Events on the real apiserver, each caused by what causes it in a cluster: the account
//! provisioned at the first start and again after a database reset (`AuthProvisioned`), a wrong password in
//! the bootstrap Secret (`AdminBootstrapUnauthorized`) or in the user's admin Secret
//! (`AdminCredentialUnauthorized`), DittoFS down while the agent logs in (`AuthAPIUnreachable`), and a
//! disabled `k8s-operator` account (`AuthFailed`). Each failure persists for several attempts and gives one
//! Event. The count is taken behind a barrier: Events are published in order, so once the `AuthProvisioned`
//! of the fix is visible, every Event the failure queued is visible too.

use std::time::Duration;

use dittofs_agent::{AdminPassword, AgentConfig, Metrics, SecretKeyRef, events::REPORTER, metrics::PollKind};
use dittofs_api::{conditions::events as reasons, names};
use dittofs_tests::{
    agent_world::{POD, Rig, SERVER},
    dittofs::{ADMIN_PASSWORD, Options},
    kube_env::{ControlPlane, wait_until},
    objects::events_for,
};
use k8s_openapi::api::events::v1::Event;
use serde_json::json;

/// Long enough for an Event to travel from the agent's queue to a list of the apiserver.
const EVENT_WAIT: Duration = Duration::from_secs(10);
/// How many attempts a failure persists for before its Events are counted.
const ATTEMPTS: u64 = 4;

/// Agent timings that make several attempts quick: a 200 ms back-off (capped at 1 s), a 1 s fast path.
fn quick(mut config: AgentConfig) -> AgentConfig {
    config.timings.auth_backoff_min = Duration::from_millis(200);
    config.timings.auth_backoff_max = Duration::from_secs(1);
    config.timings.ready_interval = Duration::from_secs(1);
    config
}

/// The agent's Events of `reason` on the DittoServer.
async fn agent_events(rig: &Rig, reason: &str) -> anyhow::Result<Vec<Event>> {
    let all = events_for(rig.admin.clone(), &rig.ns, SERVER).await?;
    Ok(all
        .into_iter()
        .filter(|e| e.reason.as_deref() == Some(reason) && e.reporting_controller.as_deref() == Some(REPORTER))
        .collect())
}

/// Waits until there are `n` agent Events of `reason`; returns them.
async fn wait_events(rig: &Rig, reason: &str, n: usize) -> anyhow::Result<Vec<Event>> {
    wait_until(&format!("{n} {reason} Event(s)"), EVENT_WAIT, async || {
        let events = agent_events(rig, reason).await?;
        anyhow::ensure!(events.len() >= n, "{} so far", events.len());
        Ok(events)
    })
    .await
}

/// Checks what `kubectl describe ditto` relies on and shows: the object (by uid), the type, the reporter.
async fn check_event(rig: &Rig, e: &Event, type_: &str, action: &str) -> anyhow::Result<String> {
    let uid = rig.servers.get(SERVER).await?.metadata.uid;
    let regarding = e.regarding.as_ref().expect("regarding");
    assert_eq!(regarding.uid, uid, "the DittoServer's uid: {regarding:?}");
    assert_eq!(regarding.kind.as_deref(), Some("DittoServer"));
    assert_eq!(e.type_.as_deref(), Some(type_));
    assert_eq!(e.action.as_deref(), Some(action));
    assert_eq!(e.reporting_instance.as_deref(), Some(POD), "the pod reports");
    let note = e.note.clone().unwrap_or_default();
    assert!(!note.contains(ADMIN_PASSWORD), "never a password: {note}");
    Ok(note)
}

#[tokio::test]
#[ignore = "real-server tier: needs the Kubernetes test binaries and DittoFS; run `make test`"]
async fn the_account_provisioned_at_start_and_after_a_database_reset_is_one_event_each() -> anyhow::Result<()> {
    ControlPlane::shared()
        .with_temp_ns("agent-ev-provision", async |ns| {
            let mut rig = Rig::new(ns, Options::default(), "1s").await?;
            let metrics = rig.start_agent(quick(rig.config()));
            rig.wait_in_sync(Duration::from_secs(20)).await?;
            let events = wait_events(&rig, reasons::AUTH_PROVISIONED, 1).await?;
            let note = check_event(&rig, &events[0], "Normal", "Provision").await?;
            assert!(note.contains("\"k8s-operator\" (role operator) created"), "{note}");

            // Polls and the logins they need add none: three more lists, still one.
            let polled = |m: &Metrics| m.polls(PollKind::Full, "ok");
            rig.wait_count("three more lists", polled(&metrics) + 3, Duration::from_secs(10), polled).await?;
            assert_eq!(agent_events(&rig, reasons::AUTH_PROVISIONED).await?.len(), 1);

            // A fresh database: the account is created again, and that is news. The agent must see DittoFS
            // go (it re-checks its account when DittoFS comes back), so the database goes once it has.
            let silent = |m: &Metrics| m.polls(PollKind::Ready, "refused");
            let target = silent(&metrics) + 1;
            rig.fs.stop().await?;
            rig.wait_count("the fast path to find DittoFS gone", target, Duration::from_secs(10), silent).await?;
            rig.fs.reset_database().await?;
            rig.wait_in_sync(Duration::from_secs(20)).await?;
            wait_events(&rig, reasons::AUTH_PROVISIONED, 2).await?;
            rig.wait_count("three more lists", polled(&metrics) + 3, Duration::from_secs(10), polled).await?;
            assert_eq!(agent_events(&rig, reasons::AUTH_PROVISIONED).await?.len(), 2);
            assert_eq!(metrics.auth_steps("provision", "created"), 2, "one Event per provisioning");
            Ok(())
        })
        .await
}

/// A wrong admin password in `secret` (as the pod's file), refused `ATTEMPTS` times, then fixed.
async fn refused_admin(
    ns: &dittofs_tests::kube_env::TempNamespace<'_>,
    secret: SecretKeyRef,
    reason: &str,
) -> anyhow::Result<String> {
    let mut rig = Rig::new(ns, Options::default(), "1s").await?;
    let volume = tempfile::tempdir()?;
    let file = volume.path().join("password");
    std::fs::write(&file, "not-the-admin-password")?;
    let mut config = quick(rig.config());
    config.admin_password = AdminPassword::File(file.clone());
    config.admin_secret = Some(secret);
    let metrics = rig.start_agent(config);
    let refused = |m: &Metrics| m.auth_steps("admin_login", "unauthorized");
    rig.wait_count("refused admin logins", ATTEMPTS, Duration::from_secs(30), refused).await?;
    let events = wait_events(&rig, reason, 1).await?;
    let note = check_event(&rig, &events[0], "Warning", "Authenticate").await?;
    assert!(!note.contains("not-the-admin-password"), "never the password: {note}");

    // The fix (the kubelet writes the corrected Secret into the file): provisioned, and the barrier.
    std::fs::write(&file, ADMIN_PASSWORD)?;
    rig.wait_in_sync(Duration::from_secs(20)).await?;
    wait_events(&rig, reasons::AUTH_PROVISIONED, 1).await?;
    let attempts = refused(&metrics);
    assert!(attempts >= ATTEMPTS, "{attempts}");
    assert_eq!(agent_events(&rig, reason).await?.len(), 1, "{attempts} refused attempts, one Event");
    Ok(note)
}

#[tokio::test]
#[ignore = "real-server tier: needs the Kubernetes test binaries and DittoFS; run `make test`"]
async fn a_wrong_bootstrap_password_is_one_admin_bootstrap_unauthorized_event() -> anyhow::Result<()> {
    ControlPlane::shared()
        .with_temp_ns("agent-ev-bootstrap", async |ns| {
            let secret = SecretKeyRef { name: names::admin_bootstrap_secret(SERVER), key: names::PASSWORD_KEY.into() };
            let note = refused_admin(ns, secret, reasons::ADMIN_BOOTSTRAP_UNAUTHORIZED).await?;
            assert!(note.contains(&format!("Secret {}/{SERVER}-admin-bootstrap-credentials", ns.name())), "{note}");
            Ok(())
        })
        .await
}

#[tokio::test]
#[ignore = "real-server tier: needs the Kubernetes test binaries and DittoFS; run `make test`"]
async fn a_wrong_password_in_the_users_admin_secret_is_one_admin_credential_unauthorized_event() -> anyhow::Result<()> {
    ControlPlane::shared()
        .with_temp_ns("agent-ev-usercred", async |ns| {
            let secret = SecretKeyRef { name: "my-dittofs-admin".into(), key: "admin-pw".into() };
            let note = refused_admin(ns, secret, reasons::ADMIN_CREDENTIAL_UNAUTHORIZED).await?;
            let named = format!("Secret {}/my-dittofs-admin key \"admin-pw\"", ns.name());
            assert!(note.contains(&named), "the note names the Secret and key: {note}");
            assert!(!note.contains("dfsctl"), "{note}");
            Ok(())
        })
        .await
}

#[tokio::test]
#[ignore = "real-server tier: needs the Kubernetes test binaries and DittoFS; run `make test`"]
async fn dittofs_down_while_the_agent_logs_in_is_one_auth_api_unreachable_event() -> anyhow::Result<()> {
    ControlPlane::shared()
        .with_temp_ns("agent-ev-down", async |ns| {
            let mut rig = Rig::new(ns, Options::default(), "1s").await?;
            rig.fs.stop().await?;
            let metrics = rig.start_agent(quick(rig.config()));
            let refused = |m: &Metrics| m.auth_steps("login", "refused");
            rig.wait_count("refused logins", ATTEMPTS, Duration::from_secs(30), refused).await?;
            let events = wait_events(&rig, reasons::AUTH_API_UNREACHABLE, 1).await?;
            let note = check_event(&rig, &events[0], "Warning", "Authenticate").await?;
            assert!(note.starts_with("DittoFS API is unreachable: connection refused"), "{note}");
            let entry = rig.entry().await?.expect("an entry");
            assert_eq!(entry.auth.map(|a| a.reason).as_deref(), Some("APIUnreachable"));

            rig.fs.start_again().await?;
            rig.wait_in_sync(Duration::from_secs(20)).await?;
            wait_events(&rig, reasons::AUTH_PROVISIONED, 1).await?;
            let attempts = refused(&metrics);
            assert_eq!(agent_events(&rig, reasons::AUTH_API_UNREACHABLE).await?.len(), 1, "{attempts} refused logins");
            Ok(())
        })
        .await
}

#[tokio::test]
#[ignore = "real-server tier: needs the Kubernetes test binaries and DittoFS; run `make test`"]
async fn a_disabled_operator_account_is_one_auth_failed_event() -> anyhow::Result<()> {
    ControlPlane::shared()
        .with_temp_ns("agent-ev-disabled", async |ns| {
            let mut rig = Rig::new(ns, Options::default(), "1s").await?;
            // Someone disabled the account in DittoFS: every login of it is refused with 403, and nothing the
            // agent may do (it never enables accounts) changes that.
            let admin = rig.fs.admin().await?;
            let user = names::OPERATOR_USERNAME;
            let body = json!({"username": user, "password": rig.operator_password().await?, "role": "operator"});
            admin.post("/api/v1/users", &body).await?.expect_status(201)?;
            admin.put(&format!("/api/v1/users/{user}"), &json!({"enabled": false})).await?.expect_status(200)?;
            let metrics = rig.start_agent(quick(rig.config()));
            let refused = |m: &Metrics| m.auth_steps("login", "forbidden");
            rig.wait_count("refused logins", ATTEMPTS, Duration::from_secs(30), refused).await?;
            let events = wait_events(&rig, reasons::AUTH_FAILED, 1).await?;
            let note = check_event(&rig, &events[0], "Warning", "Authenticate").await?;
            assert!(note.contains("k8s-operator") && note.contains("403"), "{note}");
            let entry = rig.entry().await?.expect("an entry");
            assert_eq!(entry.auth.map(|a| a.reason).as_deref(), Some("AuthenticationFailed"));

            // The fix: the account deleted, so the agent creates it afresh (and the barrier).
            admin.delete(&format!("/api/v1/users/{user}")).await?.expect_status(204)?;
            rig.wait_in_sync(Duration::from_secs(20)).await?;
            wait_events(&rig, reasons::AUTH_PROVISIONED, 1).await?;
            let attempts = refused(&metrics);
            assert!(attempts >= ATTEMPTS, "{attempts}");
            assert_eq!(agent_events(&rig, reasons::AUTH_FAILED).await?.len(), 1, "{attempts} refused logins");
            Ok(())
        })
        .await
}
