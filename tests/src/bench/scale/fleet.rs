//! The scale bench's servers and their agents: the servers' spec, creating N of them at once (bounded), and
//! [`Fleet`], which watches for each server's agent ServiceAccount, Role and RoleBinding (created by the
//! controller) and then starts that server's agent as its pod would start: a simulated one (the load driver)
//! for most, a real pod (DittoFS emulator + the agent binary) for the few in `real`.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::Context as _;
use dittofs_api::{DittoServer, labels, names};
use futures::{StreamExt as _, TryStreamExt as _};
use k8s_openapi::api::{
    apps::v1::StatefulSet,
    core::v1::ServiceAccount,
    rbac::v1::{Role, RoleBinding},
};
use kube::{
    Api, ResourceExt as _,
    api::PostParams,
    core::PartialObjectMeta,
    runtime::{WatchStreamExt as _, watcher},
};
use tokio::sync::mpsc;

use super::{
    CONCURRENCY,
    converge::Ports,
    driver::{Driver, simulated_ports},
    tracker::Tracker,
};
use crate::{
    kube_env::{ControlPlane, wait_until},
    objects::server,
    pod::Pod,
    scenario::{NS, server_spec},
};

/// `spec.adapterDiscovery.pollingInterval` of every server: the agents' full-poll period (the scenario's).
pub const POLLING_INTERVAL: Duration = Duration::from_secs(30);

/// `s0000`, `s0001`, …: sorted as numbered.
pub fn server_names(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("s{i:04}")).collect()
}

/// The servers that get a real pod: the first and the middle one, so real agents run among simulated ones.
pub fn real_servers(names: &[String]) -> Vec<String> {
    let mut real: Vec<String> = [0, names.len() / 2].iter().filter_map(|&i| names.get(i).cloned()).collect();
    real.dedup();
    real
}

/// Creates every server, [`CONCURRENCY`] requests in flight.
pub async fn create_all(client: &kube::Client, names: &[String]) -> anyhow::Result<()> {
    let api: Api<DittoServer> = Api::namespaced(client.clone(), NS);
    futures::stream::iter(names)
        .map(|name| {
            let api = api.clone();
            async move {
                let ds = server(name, server_spec())?;
                api.create(&PostParams::default(), &ds).await.with_context(|| format!("create DittoServer {name}"))
            }
        })
        .buffer_unordered(CONCURRENCY)
        .try_for_each(|_| async { Ok(()) })
        .await
}

/// Which of a server's agent RBAC objects have been seen: its agent can start once all three exist (the
/// RoleBinding is what lets its token in).
#[derive(Debug, Default)]
pub struct RbacSeen {
    seen: BTreeMap<String, u8>,
    handed: BTreeSet<String>,
}

pub const SERVICE_ACCOUNT: u8 = 1;
pub const ROLE: u8 = 2;
pub const ROLE_BINDING: u8 = 4;

impl RbacSeen {
    /// Records one object; true exactly once per server, when its last missing object shows up.
    pub fn saw(&mut self, server: &str, kind: u8) -> bool {
        let bits = self.seen.entry(server.to_owned()).or_default();
        *bits |= kind;
        *bits == SERVICE_ACCOUNT | ROLE | ROLE_BINDING && self.handed.insert(server.to_owned())
    }
}

/// The watches, the driver and the real pods of one control plane's servers.
#[derive(Debug)]
pub struct Fleet {
    pub tracker: Tracker,
    pub driver: Driver,
    router: tokio::task::JoinHandle<()>,
    /// Real servers whose agent may start: their pods start in [`Fleet::wait_all`].
    real_ready: mpsc::UnboundedReceiver<String>,
    pods: Vec<(String, Pod)>,
    cp: Arc<ControlPlane>,
    dir: PathBuf,
    timeout: Duration,
}

impl Fleet {
    /// Starts watching; agents start as their RBAC objects appear (before or after this call).
    pub fn start(cp: &Arc<ControlPlane>, dir: &Path, names: &[String], real: &[String], timeout: Duration) -> Fleet {
        let tracker = Tracker::start(cp.client(), NS, names);
        let state = tracker.state();
        let real: BTreeSet<String> = real.iter().cloned().collect();
        state.send_modify(|s| {
            let simulated = names.iter().filter(|n| !real.contains(*n));
            simulated.for_each(|n| s.expect(n, &simulated_ports(), Instant::now()));
        });
        let driver = Driver::start(cp.clone(), state);
        let (real_tx, real_ready) = mpsc::unbounded_channel();
        let (client, add) = (cp.client(), driver.adder());
        let tracked: BTreeSet<String> = names.iter().cloned().collect();
        let router = tokio::spawn(async move {
            let mut seen = RbacSeen::default();
            let mut ready = rbac_objects(client);
            while let Some(event) = ready.next().await {
                match event {
                    Ok((kind, Some(server))) if tracked.contains(&server) && seen.saw(&server, kind) => {
                        let _ = if real.contains(&server) { real_tx.send(server) } else { add.send(server) };
                    }
                    Ok(_) => {}
                    Err(e) => eprintln!("bench-scale: watch error (retried): {e}"),
                }
            }
        });
        let (cp, dir) = (cp.clone(), dir.to_owned());
        Fleet { tracker, driver, router, real_ready, pods: Vec::new(), cp, dir, timeout }
    }

    /// [`Tracker::wait_all`], starting the real pods meanwhile. In this task: `Pod::start` waits with async
    /// closures, whose futures `tokio::spawn` cannot prove `Send`.
    pub async fn wait_all(&mut self, label: &str, since: Instant) -> anyhow::Result<Duration> {
        let state = self.tracker.state();
        let mut starting = futures::stream::FuturesUnordered::new();
        let mut wait = std::pin::pin!(self.tracker.wait_all(label, since, self.timeout));
        loop {
            tokio::select! {
                done = &mut wait => return done,
                Some(server) = self.real_ready.recv() => {
                    starting.push(start_pod(&self.cp, server, &self.dir, self.timeout));
                }
                Some(started) = starting.next() => {
                    let (server, pod, ports) = started?;
                    state.send_modify(|s| s.expect(&server, &ports, Instant::now()));
                    self.pods.push((server, pod));
                }
            }
        }
    }

    /// The real pods started, with their servers.
    pub fn take_pods(&mut self) -> Vec<(String, Pod)> {
        std::mem::take(&mut self.pods)
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        self.router.abort();
    }
}

/// (kind bit, server) of every agent ServiceAccount, Role and RoleBinding applied in the namespace.
fn rbac_objects(
    client: kube::Client,
) -> impl futures::Stream<Item = Result<(u8, Option<String>), watcher::Error>> + Send + Unpin {
    let config =
        || watcher::Config::default().labels(&format!("{}={}", labels::COMPONENT_LABEL, labels::COMPONENT_AGENT));
    let sas = watcher(Api::<PartialObjectMeta<ServiceAccount>>::namespaced(client.clone(), NS), config())
        .default_backoff()
        .applied_objects()
        .map_ok(|o| (SERVICE_ACCOUNT, instance(&o)));
    let roles = watcher(Api::<PartialObjectMeta<Role>>::namespaced(client.clone(), NS), config())
        .default_backoff()
        .applied_objects()
        .map_ok(|o| (ROLE, instance(&o)));
    let bindings = watcher(Api::<PartialObjectMeta<RoleBinding>>::namespaced(client, NS), config())
        .default_backoff()
        .applied_objects()
        .map_ok(|o| (ROLE_BINDING, instance(&o)));
    futures::stream::select_all([sas.boxed(), roles.boxed(), bindings.boxed()])
}

/// The server an object belongs to (its instance label).
fn instance(object: &impl kube::Resource) -> Option<String> {
    object.labels().get(labels::INSTANCE_LABEL).cloned()
}

/// A real pod for `server` once the controller has rendered its StatefulSet; returns it with the ports its
/// DittoFS serves (the harness moves each instance's adapters to free ports).
async fn start_pod(
    cp: &ControlPlane,
    server: String,
    dir: &Path,
    timeout: Duration,
) -> anyhow::Result<(String, Pod, Ports)> {
    let sts: Api<StatefulSet> = Api::namespaced(cp.client(), NS);
    let name = names::statefulset(&server);
    wait_until(&format!("StatefulSet {name}"), timeout, async || Ok(sts.get(&name).await?)).await?;
    let pod = Pod::start(cp, NS, &server, dir).await.with_context(|| format!("the real pod of {server}"))?;
    let mut ports = Ports::new();
    for kind in ["nfs", "smb"] {
        let port = pod.fs.adapter_port(kind).with_context(|| format!("no {kind} port in the pod of {server}"))?;
        ports.insert(kind.to_owned(), i32::from(port));
    }
    Ok((server, pod, ports))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_agent_starts_once_all_three_rbac_objects_exist_and_only_once() {
        let mut seen = RbacSeen::default();
        assert!(!seen.saw("a", ROLE_BINDING));
        assert!(!seen.saw("a", SERVICE_ACCOUNT));
        assert!(!seen.saw("b", ROLE));
        assert!(seen.saw("a", ROLE));
        assert!(!seen.saw("a", ROLE), "an update of an object that was seen already");
    }

    #[test]
    fn names_are_numbered_and_two_of_them_are_real() {
        let names = server_names(100);
        assert_eq!((names[0].as_str(), names[99].as_str()), ("s0000", "s0099"));
        assert_eq!(real_servers(&names), ["s0000", "s0050"]);
        assert_eq!(real_servers(&server_names(1)), ["s0000"]);
        assert!(server(&names[0], server_spec()).is_ok(), "the spec parses");
    }
}
