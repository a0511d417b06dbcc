//! The agent's DittoFS account and tokens: provisioning with the bootstrap admin password, role separation
//! of the `operator` token, the token pair mirrored into the credentials Secret and reused after a
//! restart, refresh before expiry with short token lifetimes, and an actionable refused admin password.

mod agent_common;

use std::time::Duration;

use agent_common::{Rig, SERVER};
use dittofs_agent::{
    SecretString,
    dittofs::Endpoint,
    metrics::{PollKind, WriteResult},
};
use dittofs_api::names;
use dittofs_tests::{dittofs::Options, kube_env::ControlPlane};
use serde_json::json;

#[tokio::test]
#[ignore = "real-server tier: needs the Kubernetes test binaries and DittoFS; run `make test`"]
async fn the_operator_account_lists_adapters_and_is_refused_every_mutation() -> anyhow::Result<()> {
    ControlPlane::shared()
        .with_temp_ns("agent-roles", async |ns| {
            let mut rig = Rig::new(ns, Options::default(), "30s").await?;
            let metrics = rig.start_agent(rig.config());
            let entry = rig.wait_in_sync(Duration::from_secs(20)).await?;
            let auth = entry.auth.unwrap();
            assert!(auth.authenticated, "{auth:?}");
            assert_eq!(auth.reason, "AuthenticationSucceeded");
            assert_eq!(metrics.auth_steps("provision", "created"), 1);

            // The pair, its expiry and the URL are mirrored into the Secret.
            let access = rig.secret_key(names::ACCESS_TOKEN_KEY).await?.expect("access-token");
            assert!(rig.secret_key(names::REFRESH_TOKEN_KEY).await?.is_some());
            assert_eq!(rig.secret_key(names::SERVER_URL_KEY).await?, Some(rig.fs.url()));
            let expires: jiff::Timestamp = rig.secret_key(names::EXPIRES_AT_KEY).await?.expect("expires-at").parse()?;
            assert!(expires > jiff::Timestamp::now());
            // The controller's keys are untouched.
            assert_eq!(rig.secret_key(names::USERNAME_KEY).await?.as_deref(), Some(names::OPERATOR_USERNAME));

            let op = rig.fs.api().with_token(Some(&access));
            op.get("/api/v1/adapters").await?.expect_status(200)?;
            let mutations = [
                ("PUT", "/api/v1/adapters/nfs", json!({ "enabled": false })),
                ("POST", "/api/v1/adapters", json!({ "type": "nfs" })),
                ("DELETE", "/api/v1/adapters/smb", json!(null)),
                ("GET", "/api/v1/adapters/nfs", json!(null)),
                ("GET", "/api/v1/adapters/nfs/settings", json!(null)),
                ("POST", "/api/v1/users", json!({ "username": "x", "password": "y", "role": "admin" })),
                ("GET", "/api/v1/users", json!(null)),
                ("POST", "/api/v1/users/admin/password", json!({ "new_password": "pwned-pwned" })),
                ("DELETE", "/api/v1/users/admin", json!(null)),
                ("PUT", "/api/v1/users/k8s-operator", json!({ "role": "admin" })),
            ];
            for (method, path, body) in mutations {
                let reply = match method {
                    "PUT" => op.put(path, &body).await?,
                    "POST" => op.post(path, &body).await?,
                    "DELETE" => op.delete(path).await?,
                    _ => op.get(path).await?,
                };
                assert_eq!(reply.status, 403, "{method} {path} as operator: {reply:?}");
            }
            // Nothing changed: the adapters are still both there and on.
            let adapters = rig.fs.adapters().await?;
            assert!(adapters.values().all(|a| a["enabled"] == true), "{adapters:?}");
            Ok(())
        })
        .await
}

#[tokio::test]
#[ignore = "real-server tier: needs the Kubernetes test binaries and DittoFS; run `make test`"]
async fn short_tokens_are_refreshed_before_expiry_without_a_failed_poll() -> anyhow::Result<()> {
    ControlPlane::shared()
        .with_temp_ns("agent-refresh", async |ns| {
            let options = Options { access_ttl: Some("6s".into()), ..Default::default() };
            let mut rig = Rig::new(ns, options, "1s").await?;
            let metrics = rig.start_agent(rig.config());
            rig.wait_in_sync(Duration::from_secs(20)).await?;
            let first_access = rig.secret_key(names::ACCESS_TOKEN_KEY).await?;
            tokio::time::sleep(Duration::from_secs(30)).await;

            let refreshes = metrics.auth_steps("refresh", "ok");
            let lists = metrics.requests(Endpoint::ListAdapters, "ok");
            eprintln!(
                "MEASURED 30s with 6s tokens: {refreshes} refreshes, {lists} lists, {} Secret writes, {} failed polls",
                metrics.secret_writes(WriteResult::Done),
                metrics.failed_full_polls()
            );
            assert!(refreshes >= 5, "a 6s token is refreshed every ~4.8s: {refreshes}");
            assert_eq!(metrics.failed_full_polls(), 0, "no poll failed");
            assert_eq!(metrics.requests(Endpoint::ListAdapters, "unauthorized"), 0, "never sent an expired token");
            assert_eq!(metrics.auth_steps("login", "ok"), 1, "logged in once as k8s-operator, refreshed since");
            assert_eq!(metrics.auth_steps("refresh", "unauthorized"), 0);
            assert!(metrics.secret_writes(WriteResult::Done) >= refreshes, "every new pair is mirrored");
            assert_ne!(rig.secret_key(names::ACCESS_TOKEN_KEY).await?, first_access);
            assert!(metrics.polls(PollKind::Full, "ok") >= 25, "polled every second");
            Ok(())
        })
        .await
}

#[tokio::test]
#[ignore = "real-server tier: needs the Kubernetes test binaries and DittoFS; run `make test`"]
async fn a_restarted_agent_reuses_the_stored_pair_instead_of_logging_in() -> anyhow::Result<()> {
    ControlPlane::shared()
        .with_temp_ns("agent-reuse", async |ns| {
            let mut rig = Rig::new(ns, Options::default(), "30s").await?;
            rig.start_agent(rig.config());
            rig.wait_in_sync(Duration::from_secs(20)).await?;
            let stored = rig.secret_key(names::ACCESS_TOKEN_KEY).await?;
            let first = rig.stop_agent().await?;
            assert_eq!(first.requests(Endpoint::Login, "ok"), 2, "admin + operator");

            let logged_before = rig.fs.info_requests_logged();
            let again = rig.start_agent(rig.config());
            // Make the restarted agent write: a change in DittoFS.
            rig.put_adapter("smb", json!({ "enabled": false })).await?;
            rig.wait_in_sync(Duration::from_secs(10)).await?;
            assert_eq!(again.auth_steps("reuse", "ok"), 1);
            assert_eq!(again.requests(Endpoint::Login, "ok"), 0, "no login after a restart");
            assert_eq!(again.requests(Endpoint::Refresh, "ok"), 0);
            assert_eq!(rig.secret_key(names::ACCESS_TOKEN_KEY).await?, stored, "same pair");
            let logged = rig.fs.info_requests_logged() - logged_before;
            eprintln!(
                "MEASURED restart: {logged} INFO lines in DittoFS until in sync (incl. the test's own PUT and checks)"
            );
            Ok(())
        })
        .await
}

#[tokio::test]
#[ignore = "real-server tier: needs the Kubernetes test binaries and DittoFS; run `make test`"]
async fn a_refused_admin_password_names_the_secret_and_backs_off() -> anyhow::Result<()> {
    ControlPlane::shared()
        .with_temp_ns("agent-badadmin", async |ns| {
            let mut rig = Rig::new(ns, Options::default(), "2s").await?;
            let mut config = rig.config();
            config.admin_password = SecretString::new("not-the-admin-password");
            let metrics = rig.start_agent(config);
            let (auth, _) = rig
                .wait_entry("a refused admin password", Duration::from_secs(15), |e| {
                    let auth = e.auth.clone().ok_or_else(|| anyhow::anyhow!("no auth"))?;
                    anyhow::ensure!(!auth.authenticated, "authenticated");
                    Ok(auth)
                })
                .await?;
            let message = auth.message.unwrap_or_default();
            eprintln!("auth message: {message}");
            assert_eq!(auth.reason, "AuthenticationFailed");
            let secret = names::admin_bootstrap_secret(SERVER);
            assert!(message.contains(&secret) && message.contains("\"password\""), "{message}");
            assert!(!message.contains("not-the-admin-password"), "the password is never shown");
            let entry = rig.entry().await?.unwrap();
            let reach = entry.reachability.unwrap();
            assert_eq!((reach.reachable, reach.reason.as_str()), (false, "AdminCredentialsRefused"));
            assert!(entry.adapters.is_empty(), "nothing is claimed before a successful list");

            // Back-off: 2 s, 4 s, 8 s, … — not one admin login per 2 s poll.
            tokio::time::sleep(Duration::from_secs(12)).await;
            let attempts = metrics.auth_steps("admin_login", "unauthorized");
            assert!((2..=4).contains(&attempts), "{attempts} admin logins in ~14 s");

            // The fix: the right password (here: a new agent with it) heals.
            rig.stop_agent().await?;
            rig.start_agent(rig.config());
            let entry = rig.wait_in_sync(Duration::from_secs(20)).await?;
            assert!(entry.auth.unwrap().authenticated);
            Ok(())
        })
        .await
}
