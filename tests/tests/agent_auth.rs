//! The agent's DittoFS account and tokens: provisioning with the bootstrap admin password, role separation
//! of the `operator` token, the token pair mirrored into the credentials Secret and reused after a
//! restart, refresh before expiry with short token lifetimes, an actionable refused admin password read
//! again from its file once the Secret is fixed, and an account promoted or demoted behind the agent's
//! back set back to `operator`.

use std::time::Duration;

use anyhow::Context as _;
use base64::Engine as _;
use dittofs_agent::{
    AdminPassword, Metrics,
    dittofs::Endpoint,
    metrics::{PollKind, WriteResult},
};
use dittofs_api::names;
use dittofs_tests::{
    agent_world::{Rig, SERVER},
    dittofs::{ADMIN_PASSWORD, DittoFs, Options},
    kube_env::{ControlPlane, wait_until},
};
use serde_json::json;

/// The access-token lifetime of the refresh test, and how many refreshes it waits for.
const ACCESS_TTL: Duration = Duration::from_secs(6);
const REFRESHES: u64 = 3;
const REFRESH_PATH: &str = "/api/v1/auth/refresh";
const LOGIN_PATH: &str = "/api/v1/auth/login";

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
            let options = Options { access_ttl: Some(format!("{}s", ACCESS_TTL.as_secs())), ..Default::default() };
            let mut rig = Rig::new(ns, options, "1s").await?;
            let metrics = rig.start_agent(rig.config());
            rig.wait_in_sync(Duration::from_secs(20)).await?;
            let first_access = rig.secret_key(names::ACCESS_TOKEN_KEY).await?;
            let (refreshed, polled) = (metrics.auth_steps("refresh", "ok"), metrics.polls(PollKind::Full, "ok"));
            let logged = rig.fs.info_requests_logged_to(REFRESH_PATH);

            // Each refresh comes before the token it replaces expires (at 80 % of 6 s, so every ~4.8 s): each
            // is awaited for at most one token lifetime after the one before.
            for n in 1..=REFRESHES {
                let what = format!("refresh {n} within a token lifetime ({ACCESS_TTL:?}) of the previous one");
                rig.wait_count(&what, refreshed + n, ACCESS_TTL, |m| m.auth_steps("refresh", "ok")).await?;
            }
            // Every one reached DittoFS: one INFO line each, and no other refresh.
            let sent = wait_until("DittoFS to log the refreshes", Duration::from_secs(2), async || {
                let sent = rig.fs.info_requests_logged_to(REFRESH_PATH) - logged;
                anyhow::ensure!(sent as u64 >= REFRESHES, "{sent} refresh lines");
                Ok(sent as u64)
            })
            .await?;
            let polls = metrics.polls(PollKind::Full, "ok") - polled;
            eprintln!(
                "MEASURED {REFRESHES} refreshes of 6s tokens: {polls} lists meanwhile, {} Secret writes, {} failed polls",
                metrics.secret_writes(WriteResult::Done),
                metrics.failed_full_polls()
            );
            assert_eq!(sent, metrics.auth_steps("refresh", "ok") - refreshed, "DittoFS saw exactly the agent's refreshes");
            assert_eq!(metrics.failed_full_polls(), 0, "no poll failed");
            assert_eq!(metrics.requests(Endpoint::ListAdapters, "unauthorized"), 0, "never sent an expired token");
            assert_eq!(metrics.auth_steps("login", "ok"), 1, "logged in once as k8s-operator, refreshed since");
            assert_eq!(metrics.auth_steps("refresh", "unauthorized"), 0);
            assert!(metrics.secret_writes(WriteResult::Done) >= REFRESHES, "every new pair is mirrored");
            assert_ne!(rig.secret_key(names::ACCESS_TOKEN_KEY).await?, first_access);
            // Polled every second throughout: ~4.8 lists per refresh period (the first one is shorter).
            assert!(polls >= 3 * REFRESHES, "{polls} lists during {REFRESHES} refresh periods at a 1s interval");
            Ok(())
        })
        .await
}

#[tokio::test]
#[ignore = "real-server tier: needs the Kubernetes test binaries and DittoFS; run `make test`"]
async fn a_restarted_agent_reuses_the_stored_pair_instead_of_logging_in() -> anyhow::Result<()> {
    ControlPlane::shared()
        .with_temp_ns("agent-reuse", async |ns| {
            let (mut rig, _) = Rig::in_sync(ns, Options::default(), "30s").await?;
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
            // As in a pod: a file of the Secret volume, here holding a stale password.
            let volume = tempfile::tempdir()?;
            let file = volume.path().join("password");
            std::fs::write(&file, "not-the-admin-password")?;
            let mut config = rig.config();
            config.admin_password = AdminPassword::File(file.clone());
            // The fast path's samples are this test's clock: one a second keeps its counts in seconds.
            config.timings.ready_interval = Duration::from_secs(1);
            // The harness's own admin logins (moving the adapters to free ports) are not the agent's.
            let logins_before = rig.fs.info_requests_logged_to(LOGIN_PATH) as u64;
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
            assert!(message.contains(&file.display().to_string()), "the file is named: {message}");
            assert!(!message.contains("not-the-admin-password"), "the password is never shown");
            let entry = rig.entry().await?.unwrap();
            let reach = entry.reachability.unwrap();
            assert_eq!((reach.reachable, reach.reason.as_str()), (false, "AdminCredentialsRefused"));
            assert!(entry.adapters.is_empty(), "nothing is claimed before a successful list");

            // Back-off: 2–4 s, then 4–8 s (doubling, jittered) — not one admin login per 2 s poll. The fast path
            // (every second) is the clock: the count of its polls at each refused attempt gives the gaps.
            let attempts = |m: &Metrics| m.auth_steps("admin_login", "unauthorized");
            let mut at = Vec::new();
            for n in 1..=3 {
                rig.wait_count(&format!("admin login attempt {n}"), n, Duration::from_secs(15), attempts).await?;
                at.push(metrics.polls(PollKind::Ready, "ok"));
            }
            let (first_gap, second_gap) = (at[1] - at[0], at[2] - at[1]);
            eprintln!("MEASURED fast-path polls between refused admin logins: {first_gap}, then {second_gap}");
            // ±1 for the sampling: a 2 s poll without back-off would give 2 and 2.
            assert!(second_gap >= 3 && first_gap + second_gap >= 5, "no back-off: {first_gap}, {second_gap}");
            // Each attempt is the operator's login (refused: no such user yet) and the admin's, nothing more.
            let logins = wait_until("DittoFS to log the logins", Duration::from_secs(2), async || {
                let logins = rig.fs.info_requests_logged_to(LOGIN_PATH) as u64 - logins_before;
                anyhow::ensure!(logins >= 2 * attempts(&metrics), "{logins} login lines");
                Ok(logins)
            })
            .await?;
            assert_eq!(logins, 2 * attempts(&metrics), "two logins per attempt, no other");

            // The fix: the right password in the Secret, which the kubelet writes into the file. The same agent
            // reads it at its next attempt (at most one back-off, 8–16 s, away) and heals without a restart.
            std::fs::write(&file, ADMIN_PASSWORD)?;
            let entry = rig.wait_in_sync(Duration::from_secs(40)).await?;
            assert!(entry.auth.unwrap().authenticated);
            assert_eq!(metrics.auth_steps("provision", "created"), 1);
            Ok(())
        })
        .await
}

/// The role of an account as DittoFS has it (read as admin).
async fn role_of(fs: &DittoFs, user: &str) -> anyhow::Result<String> {
    let admin = fs.admin().await?;
    let user = admin.get(&format!("/api/v1/users/{user}")).await?.expect_status(200)?.json()?;
    Ok(user["role"].as_str().unwrap_or_default().to_owned())
}

/// The `role` claim of a JWT (the token the agent mirrored into its Secret).
fn role_claim(jwt: &str) -> anyhow::Result<String> {
    let payload = jwt.split('.').nth(1).context("not a JWT")?;
    let claims: serde_json::Value =
        serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload)?)?;
    Ok(claims["role"].as_str().unwrap_or_default().to_owned())
}

#[tokio::test]
#[ignore = "real-server tier: needs the Kubernetes test binaries and DittoFS; run `make test`"]
async fn an_account_promoted_or_demoted_behind_the_agents_back_is_set_back_to_operator() -> anyhow::Result<()> {
    ControlPlane::shared()
        .with_temp_ns("agent-role", async |ns| {
            // Short tokens: DittoFS shows a role change only in the next login or refresh answer.
            let options = Options { access_ttl: Some(format!("{}s", ACCESS_TTL.as_secs())), ..Default::default() };
            let (rig, _) = Rig::in_sync(ns, options, "2s").await?;
            let user = names::OPERATOR_USERNAME;
            assert_eq!(role_of(&rig.fs, user).await?, "operator");
            let mut smb_enabled = true;
            for (n, role) in [(1, "admin"), (2, "user")] {
                let admin = rig.fs.admin().await?;
                admin.put(&format!("/api/v1/users/{user}"), &json!({ "role": role })).await?.expect_status(200)?;
                assert_eq!(role_of(&rig.fs, user).await?, role, "changed behind the agent's back");

                // At the next refresh (80 % of 6 s) the agent sees it and sets it back.
                let what = format!("the account, made {role}, to be operator again");
                wait_until(&what, 4 * ACCESS_TTL, async || {
                    rig.assert_agent_running();
                    let now = role_of(&rig.fs, user).await?;
                    anyhow::ensure!(now == "operator", "role {now}");
                    Ok(())
                })
                .await?;
                rig.wait_count("role repairs", n, ACCESS_TTL, |m| m.auth_steps("role_repair", "ok")).await?;

                // It still reports the adapters: a change in DittoFS reaches its entry.
                smb_enabled = !smb_enabled;
                rig.put_adapter("smb", json!({ "enabled": smb_enabled })).await?;
                let entry = rig.wait_in_sync(Duration::from_secs(15)).await?;
                let auth = entry.auth.context("no auth")?;
                let message = auth.message.unwrap_or_default();
                assert!(auth.authenticated, "{message}");
                assert!(message.contains(&format!("its role was \"{role}\"")), "the repair is reported: {message}");
                // The token it holds (mirrored into its Secret) is an operator's, never the changed role's.
                let access = rig.secret_key(names::ACCESS_TOKEN_KEY).await?.context("no access token")?;
                assert_eq!(role_claim(&access)?, "operator");
            }
            let metrics = rig.metrics();
            assert_eq!(metrics.failed_full_polls(), 0, "no poll failed: the old token worked until the repair");
            assert_eq!(metrics.auth_steps("role_repair", "ok"), 2);
            assert_eq!(metrics.requests(Endpoint::UpdateUser, "ok"), 2, "one role change per repair");
            Ok(())
        })
        .await
}
