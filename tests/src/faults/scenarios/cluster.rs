//! Faults of the Kubernetes side: kube-apiserver or etcd killed and restarted (the fault clears when the
//! process is started again; its start-up counts in the convergence), and the apiserver slow or unreachable
//! behind the proxy. Each keeps the fault on until the agent has failed to publish a toggle made
//! during it (bounded: a slow path may not fail at all), so the fault is felt, not just scheduled.

use std::time::Duration;

use super::{FS, Tally, ensure, toggle_and_settle};
use crate::faults::{invariants::RESTART_GRACE, proxy::Mode, world::World};

/// How long a fault waits for the agent to feel it.
const FELT_WITHIN: Duration = Duration::from_secs(15);
/// Per-chunk delay of the slow apiserver: a watch event or a request answer takes a quarter second more
/// each way, many times what a loopback apiserver needs.
const SLOW: Duration = Duration::from_millis(250);
const FAILED_WRITES: &str = "dittofs_agent_status_writes_total{result=\"failed\"}";

/// `server` (`kube-apiserver` or `etcd`) killed, a toggle made while it is down, then started again.
pub(super) async fn restart(world: &mut World, tally: &mut Tally, server: &str) -> anyhow::Result<()> {
    ensure(world, FS).await?;
    toggle_and_settle(world, tally, FS).await?;
    let failed = world.agent_counter(FS, FAILED_WRITES).await;
    world.checker.fault_begin();
    let result = async {
        world.cp.kill(server)?;
        world.toggle(FS).await?;
        world.until_agent_write_fails(FS, failed, FELT_WITHIN).await;
        world.cp.start_again(server)
    }
    .await;
    // Cleared when the server is started again: its start-up is part of the recovery measured.
    let clear = world.checker.fault_end_with(RESTART_GRACE);
    result?;
    world.cp.wait_ready(Duration::from_secs(60)).await?;
    tally.after_clear(world, clear).await;
    toggle_and_settle(world, tally, FS).await
}

/// Every chunk through the proxy delayed; a toggle during it, which must converge while still slow.
pub(super) async fn slow(world: &mut World, tally: &mut Tally) -> anyhow::Result<()> {
    ensure(world, FS).await?;
    toggle_and_settle(world, tally, FS).await?;
    world.checker.fault_begin();
    world.proxy.set(Mode::Delay(SLOW));
    let result = async {
        let toggled = std::time::Instant::now();
        world.toggle(FS).await?;
        world.converge(toggled).await
    }
    .await;
    world.proxy.set(Mode::Pass);
    let clear = world.checker.fault_end();
    match result {
        Ok(took) => tally.worst("converged while slow in", took),
        Err(e) => world.checker.record("*", format!("no convergence while the apiserver was slow: {e:#}")),
    }
    tally.after_clear(world, clear).await;
    toggle_and_settle(world, tally, FS).await
}

/// Every connection through the proxy cut and new ones refused, until the agent failed a write.
pub(super) async fn dropping(world: &mut World, tally: &mut Tally) -> anyhow::Result<()> {
    ensure(world, FS).await?;
    toggle_and_settle(world, tally, FS).await?;
    let failed = world.agent_counter(FS, FAILED_WRITES).await;
    world.checker.fault_begin();
    world.proxy.set(Mode::Drop);
    let result = async {
        world.toggle(FS).await?;
        world.until_agent_write_fails(FS, failed, FELT_WITHIN).await;
        anyhow::Ok(())
    }
    .await;
    world.proxy.set(Mode::Pass);
    let clear = world.checker.fault_end();
    result?;
    tally.after_clear(world, clear).await;
    toggle_and_settle(world, tally, FS).await
}
