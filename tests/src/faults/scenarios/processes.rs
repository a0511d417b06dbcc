//! Processes dying: the controller killed at a random moment after a toggle, the agent killed, DittoFS
//! killed and restarted, DittoFS's database wiped, and — with two controllers — the leader killed while a
//! new server is being created.
//!
//! The random moments are drawn from the run's seeded PRNG and are the only pauses of the suite that are
//! not waits on a condition: they choose *when* a fault strikes, nothing waits for an outcome by the clock.

use std::time::Duration;

use dittofs_api::{DittoServer, conditions};
use kube::api::Api;
use serde_json::json;

use super::{FS, Tally, bracket, ensure, toggle_and_settle};
use crate::{
    faults::world::{NS, World, signal},
    kube_env::{measure_until, wait_until},
};

/// The controller (the only one) SIGKILLed up to 1.5 s after a toggle — before, during or after the
/// reconcile of the agent's report — and started again at once under the same identity, as the kubelet
/// restarts a crashed container in the same pod.
pub(super) async fn controller_kill(world: &mut World, tally: &mut Tally) -> anyhow::Result<()> {
    ensure(world, FS).await?;
    world.toggle(FS).await?;
    tokio::time::sleep(world.rng.up_to(Duration::from_millis(1500))).await;
    world.checker.fault_begin();
    let victim = world.leader().await?;
    let identity = world.controllers[victim].identity.clone();
    let result = async {
        signal(world.controllers[victim].proc.pid(), "KILL")?;
        world.toggle(FS).await?;
        world.controllers[victim] = world.spawn_controller(&identity)?;
        anyhow::Ok(())
    }
    .await;
    let clear = world.checker.fault_end();
    result?;
    tally.after_clear(world, clear).await;
    toggle_and_settle(world, tally, FS).await
}

/// The agent SIGKILLed up to 1 s after a toggle, a toggle while it is dead, then started again (it finds
/// its token pair in the credentials Secret).
pub(super) async fn agent_kill(world: &mut World, tally: &mut Tally) -> anyhow::Result<()> {
    ensure(world, FS).await?;
    world.toggle(FS).await?;
    tokio::time::sleep(world.rng.up_to(Duration::from_secs(1))).await;
    bracket(world, tally, FS, async |world: &mut World, _: &mut Tally| {
        signal(world.pod(FS)?.pod.agent.pid(), "KILL")?;
        world.toggle(FS).await?;
        world.restart_agent(FS)
    })
    .await
}

/// DittoFS SIGKILLed up to 1 s after a toggle; once its agent reports it unreachable it is started again
/// (same database), and toggled once more.
pub(super) async fn dittofs_kill(world: &mut World, tally: &mut Tally) -> anyhow::Result<()> {
    ensure(world, FS).await?;
    world.toggle(FS).await?;
    tokio::time::sleep(world.rng.up_to(Duration::from_secs(1))).await;
    bracket(world, tally, FS, async |world: &mut World, _: &mut Tally| {
        signal(world.dittofs_pid(FS)?, "KILL")?;
        let servers: Api<DittoServer> = Api::namespaced(world.client.clone(), NS);
        // Bounded and not required: a kill right after a toggle may be restarted before the agent looks.
        let _ = wait_until("the agent to report DittoFS unreachable", Duration::from_secs(10), async || {
            let st = servers.get(FS).await?.status.unwrap_or_default();
            let entry = st.agents.iter().find(|a| a.pod_name == format!("{FS}-0"));
            anyhow::ensure!(entry.is_some_and(|a| a.reachability.as_ref().is_some_and(|r| !r.reachable)), "not yet");
            Ok(())
        })
        .await;
        world.pods.get_mut(FS).expect("ensured").pod.fs.restart().await?;
        world.toggle(FS).await.map(drop)
    })
    .await
}

/// DittoFS stopped, its database deleted, started again: users and adapter edits are gone, the adapters
/// are seeded anew (then moved to new free ports by the harness). The agent must provision its account
/// again, with the admin password, and report the new ports.
pub(super) async fn database_reset(world: &mut World, tally: &mut Tally) -> anyhow::Result<()> {
    ensure(world, FS).await?;
    toggle_and_settle(world, tally, FS).await?;
    world.checker.fault_begin();
    let result = world.pods.get_mut(FS).expect("ensured").pod.fs.reset_database().await;
    let clear = world.checker.fault_end();
    result?;
    tally.after_clear(world, clear).await;
    super::accounts::wait_operator_role(world, tally, FS, "after the reset", super::accounts::Repair::Noted).await?;
    toggle_and_settle(world, tally, FS).await
}

/// With a standby running, a new server (generated JWT key, admin and operator passwords: no pod, so
/// nothing may be exposed) is created and the leader SIGKILLed up to 0.8 s later — mid-creation. A
/// replacement controller with a new identity (a new pod) starts at once. The standby (or the replacement)
/// must finish the server with the Secrets first written (the checker follows their values) and leave the
/// static children in place. Convergence here is from the kill to the server reconciled (ConfigReady=True
/// at its generation). The server is deleted at the end of the round.
pub(super) async fn leader_kill(world: &mut World, tally: &mut Tally, round: u32) -> anyhow::Result<()> {
    ensure(world, FS).await?;
    if world.controllers.len() < 2 {
        let standby = world.spawn_controller(&format!("ctl-standby-{round}"))?;
        world.controllers.push(standby);
        world.wait_controllers_ready().await?;
    }
    let name = format!("lead-{round}");
    world.create_server(&name, json!({"storage": {"metadataSize": "1Gi"}}), false).await?;
    tokio::time::sleep(world.rng.up_to(Duration::from_millis(800))).await;
    world.checker.fault_begin();
    let result = async {
        let victim = world.leader().await?;
        signal(world.controllers[victim].proc.pid(), "KILL")?;
        world.controllers[victim] = world.spawn_controller(&format!("ctl-replacement-{round}"))?;
        anyhow::Ok(())
    }
    .await;
    let clear = world.checker.fault_end();
    result?;
    let servers: Api<DittoServer> = Api::namespaced(world.client.clone(), NS);
    let reconciled =
        measure_until(&format!("{name} reconciled after the hand-over"), Duration::from_secs(60), async || {
            crate::objects::wait_for_condition(&servers, &name, conditions::CONFIG_READY, "True", Duration::ZERO).await
        })
        .await;
    match reconciled {
        Ok(_) => tally.converged(clear.elapsed()),
        Err(e) => {
            // What the apiserver holds, for the investigation: who wrote it last, and with which finalizers.
            let held = servers.get(&name).await.map(|ds| {
                let managers: Vec<_> = ds.metadata.managed_fields.iter().flatten().map(|m| m.manager.clone()).collect();
                format!(
                    "rv {:?}, finalizers {:?}, managers {managers:?}",
                    ds.metadata.resource_version, ds.metadata.finalizers
                )
            });
            world.checker.record(&name, format!("not reconciled after the leader was killed: {e:#}; held: {held:?}"))
        }
    }
    // The other servers were not disturbed, and the checker sees the finished server once more before it
    // stops watching it. Two controllers stay for the next rounds (this kind runs last).
    tally.settle(world).await;
    world.delete_server(&name).await
}
