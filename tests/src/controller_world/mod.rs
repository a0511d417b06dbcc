//! The controller_* tests' world: the controller in-process on its own task (watching only the test's
//! namespace), a server it has reconciled once, and the wait for the controller to go quiet. Agent reports
//! and the adapter objects are in [`adapters`].

pub mod adapters;

use std::time::{Duration, Instant};

use dittofs_api::{DittoServer, conditions};
use dittofs_controller::{CancellationToken, Config, Controller, LeaderElectionConfig};
use k8s_openapi::api::coordination::v1::Lease;
use kube::api::Api;
use serde_json::Value;
use tokio::task::JoinHandle;

use crate::{
    kube_env::{TempNamespace, wait_until},
    objects::{create_server, install_crd, server, wait_for_condition},
};

/// Agent image the tests' controllers inject.
pub const AGENT_IMAGE: &str = "registry.invalid/dittofs-agent:test";

/// The Lease the elected controllers of [`elected`] hold, its duration and how often its holder renews it.
pub const LEASE: &str = "dittofs-controller-leader";
pub const LEASE_DURATION: Duration = Duration::from_secs(4);
pub const RENEW_EVERY: Duration = Duration::from_millis(500);

/// A controller running in-process on its own task.
#[derive(Debug)]
pub struct Running {
    pub controller: Controller,
    pub token: CancellationToken,
    pub task: JoinHandle<Result<(), dittofs_controller::Error>>,
}

impl Running {
    /// Graceful stop: cancel and wait.
    pub async fn stop(self) -> anyhow::Result<()> {
        self.token.cancel();
        self.task.await??;
        Ok(())
    }

    /// Waits until the controller has not reconciled for `quiet` (kube-controller-manager's status updates of
    /// the StatefulSet and the controller's own writes trigger a few reconciles first); returns its count.
    pub async fn settle(&self, quiet: Duration) -> anyhow::Result<u64> {
        let metrics = self.controller.metrics();
        let (mut last, mut since) = (metrics.total_reconciles(), Instant::now());
        wait_until(&format!("the controller to reconcile nothing for {quiet:?}"), Duration::from_secs(60), async || {
            let now = metrics.total_reconciles();
            if now != last {
                (last, since) = (now, Instant::now());
            }
            anyhow::ensure!(since.elapsed() >= quiet, "{now} reconciles, the last {:?} ago", since.elapsed());
            Ok(now)
        })
        .await
    }

    /// Waits until more than `count` reconciles ended with `result` (`None`: with any result).
    pub async fn wait_reconciles(&self, what: &str, result: Option<&str>, count: u64) -> anyhow::Result<()> {
        let metrics = self.controller.metrics();
        wait_until(what, Duration::from_secs(20), async || {
            let now = result.map_or_else(|| metrics.total_reconciles(), |r| metrics.reconcile_count(r));
            anyhow::ensure!(now > count, "{now} reconciles ({})", result.unwrap_or("any result"));
            Ok(())
        })
        .await
    }
}

/// Starts a controller watching only `ns` (so parallel tests never reconcile each other's servers).
pub fn start_controller(client: kube::Client, ns: &str) -> Running {
    let mut config = Config::new(AGENT_IMAGE);
    config.namespace = Some(ns.to_owned());
    start_with(client, config)
}

/// A controller for `ns` named `identity` that takes part in the election of Lease `ns/LEASE`. Its holder
/// renews it every [`RENEW_EVERY`]: a clock of the controller's own ([`wait_renewals`]).
pub fn elected(ns: &str, identity: &str) -> Config {
    let mut config = Config::new(AGENT_IMAGE);
    config.namespace = Some(ns.to_owned());
    config.identity = identity.to_owned();
    config.leader_election = Some(LeaderElectionConfig {
        lease_name: LEASE.into(),
        lease_namespace: ns.to_owned(),
        lease_duration: LEASE_DURATION,
        renew_deadline: Duration::from_secs(3),
        retry_period: RENEW_EVERY,
    });
    config
}

/// Waits until the holder of Lease `ns/LEASE` has renewed it `count` times (new `renewTime`s observed).
pub async fn wait_renewals(ns: &TempNamespace<'_>, count: usize) -> anyhow::Result<()> {
    let leases: Api<Lease> = ns.api();
    let renewed = async || -> anyhow::Result<_> { Ok(leases.get(LEASE).await?.spec.and_then(|s| s.renew_time)) };
    let mut seen = vec![renewed().await?];
    let timeout = RENEW_EVERY * 4 * u32::try_from(count)?;
    wait_until(&format!("{count} renewals of Lease {LEASE}"), timeout, async || {
        let now = renewed().await?;
        if seen.last() != Some(&now) {
            seen.push(now);
        }
        anyhow::ensure!(seen.len() > count, "{} renewals", seen.len() - 1);
        Ok(())
    })
    .await
}

/// Starts a controller with `config`.
pub fn start_with(client: kube::Client, config: Config) -> Running {
    crate::agent_world::init_logs();
    let controller = Controller::new(client, config);
    let token = CancellationToken::new();
    let task = tokio::spawn({
        let (controller, token) = (controller.clone(), token.clone());
        async move { controller.run(token).await }
    });
    Running { controller, token, task }
}

/// The CRD, a controller for `ns` and server `name` with `spec`, once the controller reports its config ready.
pub async fn started(ns: &TempNamespace<'_>, name: &str, spec: Value) -> anyhow::Result<(Running, Api<DittoServer>)> {
    install_crd(ns.client()).await?;
    let running = start_controller(ns.client(), ns.name());
    create_server(ns, &server(name, spec)?).await?;
    let servers: Api<DittoServer> = ns.api();
    wait_for_condition(&servers, name, conditions::CONFIG_READY, "True", Duration::from_secs(30)).await?;
    Ok((running, servers))
}
