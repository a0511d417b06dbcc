//! The agent's DittoFS account under attack or decay, on the server with short token lifetimes (10 s
//! access, 20 s refresh), so every renewal path runs within a round: `k8s-operator` deleted, or demoted
//! to `user`, behind the agent's back (a role change shows in a token only when a new one is issued, so the
//! agent meets it at its next refresh, within 8 s); and every token it holds expired at once, as if its
//! clock jumped ahead — the agent is frozen (SIGSTOP) until DittoFS refuses the refresh token it stored,
//! then thawed, or, every other round, killed and started again on that expired pair.

use std::time::Duration;

use dittofs_api::names::{self, OPERATOR_USERNAME};
use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;
use serde_json::json;

use super::{TOK, Tally, bracket, ensure, toggle_and_settle};
use crate::{
    faults::world::{NS, World, signal},
    kube_env::wait_until,
};

/// How long the agent gets to restore its account: a refresh (at 8 s) plus a login and the provision.
const REPAIR_WITHIN: Duration = Duration::from_secs(40);

/// Whether a missing repair of the account is a violation or a fact for the report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Repair {
    /// The agent must restore it (it meets the change at its next refresh, within the bound).
    Required,
    /// Only noted: after a database reset the agent's tokens stay valid (JWTs are not checked against the
    /// users), so it may provision its account only at its next refresh, minutes later, working meanwhile.
    Noted,
}

/// Waits until `k8s-operator` exists in `server`'s DittoFS with role `operator`; if it does not within the
/// bound, records a violation or a note, as `repair` says.
pub(super) async fn wait_operator_role(
    world: &World,
    tally: &mut Tally,
    server: &str,
    when: &str,
    repair: Repair,
) -> anyhow::Result<()> {
    let fs = &world.pod(server)?.pod.fs;
    let limit = if repair == Repair::Required { REPAIR_WITHIN } else { Duration::from_secs(15) };
    let started = std::time::Instant::now();
    let mut last = String::from("not checked");
    let restored = wait_until(&format!("{OPERATOR_USERNAME} to have role operator"), limit, async || {
        let state = async {
            let reply = fs.admin().await?.get(&format!("/api/v1/users/{OPERATOR_USERNAME}")).await?;
            anyhow::ensure!(reply.status == 200, "HTTP {} {}", reply.status, reply.body.trim());
            let role = reply.json()?["role"].as_str().unwrap_or_default().to_owned();
            anyhow::ensure!(role == "operator", "role {role:?}");
            Ok(())
        }
        .await;
        // Kept apart: the wait's own last state may be a check cut short at its deadline.
        if let Err(e) = &state {
            last = format!("{e:#}");
        }
        state
    })
    .await;
    match (restored, repair) {
        (Ok(()), Repair::Noted) => {
            tally.worst("k8s-operator back after the reset in", started.elapsed());
        }
        (Ok(()), Repair::Required) => {}
        (Err(_), Repair::Noted) => tally.note(format!(
            "k8s-operator not back {when} within {limit:?} (its tokens stay valid; re-created at the agent's next refresh)"
        )),
        (Err(_), Repair::Required) => world.checker.record(
            server,
            format!("the agent did not restore its account {when} within {limit:?}; last seen: {last}"),
        ),
    }
    Ok(())
}

/// `k8s-operator` deleted as admin; the fault lasts until the agent has created it again.
pub(super) async fn operator_deleted(world: &mut World, tally: &mut Tally) -> anyhow::Result<()> {
    ensure(world, TOK).await?;
    toggle_and_settle(world, tally, TOK).await?;
    bracket(world, tally, TOK, async |world: &mut World, tally: &mut Tally| {
        let admin = world.pod(TOK)?.pod.fs.admin().await?;
        admin.delete(&format!("/api/v1/users/{OPERATOR_USERNAME}")).await?.expect_status(204)?;
        world.toggle(TOK).await?;
        wait_operator_role(world, tally, TOK, "after it was deleted", Repair::Required).await
    })
    .await
}

/// `k8s-operator` demoted to role `user` as admin; the fault lasts until the agent has set it back.
pub(super) async fn operator_demoted(world: &mut World, tally: &mut Tally) -> anyhow::Result<()> {
    ensure(world, TOK).await?;
    toggle_and_settle(world, tally, TOK).await?;
    bracket(world, tally, TOK, async |world: &mut World, tally: &mut Tally| {
        let admin = world.pod(TOK)?.pod.fs.admin().await?;
        let path = format!("/api/v1/users/{OPERATOR_USERNAME}");
        admin.put(&path, &json!({"role": "user"})).await?.expect_status(200)?;
        world.toggle(TOK).await?;
        wait_operator_role(world, tally, TOK, "after it was demoted", Repair::Required).await
    })
    .await
}

/// The agent frozen with a toggle pending until the refresh token it stored is refused; then thawed (odd
/// rounds) or killed and restarted (even rounds), with every token it has long expired.
pub(super) async fn token_expiry(world: &mut World, tally: &mut Tally, round: u32) -> anyhow::Result<()> {
    ensure(world, TOK).await?;
    toggle_and_settle(world, tally, TOK).await?;
    bracket(world, tally, TOK, async |world: &mut World, _: &mut Tally| {
        let pid = world.pod(TOK)?.pod.agent.pid();
        signal(pid, "STOP")?;
        world.toggle(TOK).await?;
        let expired = refresh_token_refused(world).await;
        if round.is_multiple_of(2) {
            signal(pid, "KILL")?;
            world.restart_agent(TOK)?;
        } else {
            signal(pid, "CONT")?;
        }
        expired
    })
    .await
}

/// Waits until DittoFS refuses the refresh token mirrored in the operator-credentials Secret (it expired).
async fn refresh_token_refused(world: &World) -> anyhow::Result<()> {
    let secrets: Api<Secret> = Api::namespaced(world.client.clone(), NS);
    let api = world.pod(TOK)?.pod.fs.api();
    wait_until("the stored refresh token to expire", Duration::from_secs(60), async || {
        let secret = secrets.get(&names::operator_credentials_secret(TOK)).await?;
        let token = secret.data.and_then(|d| d.get(names::REFRESH_TOKEN_KEY).cloned()).map(|b| b.0);
        let token = String::from_utf8(token.unwrap_or_default())?;
        let reply = api.post("/api/v1/auth/refresh", &json!({"refresh_token": token})).await?;
        anyhow::ensure!(reply.status == 401, "refresh answered HTTP {}", reply.status);
        Ok(())
    })
    .await
}
