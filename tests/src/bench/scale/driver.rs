//! The load driver: a simulated agent for every server without a real pod. Each writes its server's
//! `status.agents` entry with the agent crate's own writer (`dittofs_agent::status::Writer`: the entry
//! from `build_entry`, server-side applied by `KubeStatus` under the field manager `dittofs-agent-<pod>`,
//! rewritten on change or when the heartbeat is due), authenticated as the server's agent ServiceAccount
//! through a TokenRequest token, and it "polls" at the real agent's pace so its heartbeats cost the same.
//! What it does not simulate: the agent's watch of its DittoServer and its DittoFS traffic (neither
//! reaches the controller).

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use anyhow::Context as _;
use dittofs_agent::{
    Metrics,
    auth::AuthView,
    dittofs::OPERATOR_ROLE,
    status::{Observed, ReachView, Writer},
};
use dittofs_api::{
    DittoServer,
    conditions::reasons,
    constants::{DEFAULT_NFS_PORT, DEFAULT_SMB_PORT, NFS, SMB},
    crd::{AdapterServicesSpec, AgentAdapterStatus},
    names,
};
use futures::StreamExt as _;
use jiff::Timestamp;
use kube::Api;
use tokio::{
    sync::{mpsc, watch},
    task::JoinHandle,
    time::{Instant, MissedTickBehavior},
};

use super::{CONCURRENCY, converge::Convergence, converge::Ports, fleet::POLLING_INTERVAL};
use crate::{kube_env::ControlPlane, scenario::NS};

/// Tries of a simulated agent's first write before the bench gives up on it (the real agent retries
/// for ever with a back-off; the bench needs a bound to report a failure).
const FIRST_WRITE_TRIES: u32 = 5;

/// How long a fresh RoleBinding may take to let its ServiceAccount in (as `objects::service_account_client`).
const RBAC_WAIT: Duration = Duration::from_secs(15);
const RBAC_RETRY: Duration = Duration::from_millis(250);

/// What every simulated agent reports: NFS and SMB running on their default ports.
pub fn simulated_ports() -> Ports {
    [(NFS.to_owned(), i32::from(DEFAULT_NFS_PORT)), (SMB.to_owned(), i32::from(DEFAULT_SMB_PORT))].into()
}

/// The agent's heartbeat for the bench's servers (which keep the default `reportMaxAgeSeconds`): a third
/// of it, at least 10 s — the formula of the agent's private `poller::heartbeat_of`.
fn heartbeat() -> Duration {
    let max_age = AdapterServicesSpec::default().report_max_age_seconds;
    Duration::from_secs(u64::try_from(max_age.max(30)).unwrap_or(300) / 3)
}

/// Counters of the driver, read for progress and the report.
#[derive(Debug, Default)]
pub struct Stats {
    /// Simulated agents whose first entry is written.
    pub started: AtomicU64,
    /// Entries rewritten afterwards (heartbeats).
    pub heartbeats: AtomicU64,
    /// Writes the apiserver refused or that failed after the first one.
    pub failed_writes: AtomicU64,
}

/// What every simulated agent shares.
#[derive(Debug)]
struct Shared {
    cp: Arc<ControlPlane>,
    state: Arc<watch::Sender<Convergence>>,
    adapters: Vec<AgentAdapterStatus>,
    reach: ReachView,
    auth: AuthView,
    metrics: Arc<Metrics>,
    heartbeat: Duration,
    stats: Arc<Stats>,
}

/// One simulated agent: the writer of its pod `<server>-0`.
struct SimAgent {
    server: String,
    writer: Writer,
    next_poll: Instant,
}

impl SimAgent {
    /// A client of the server's agent ServiceAccount, once RBAC lets it read its server (as the real
    /// agent's first list does: the authorizer learns of a fresh binding through an informer), and the
    /// agent's writer on it. Retried in a plain loop: `objects::service_account_client` and `wait_until`
    /// take async closures, whose futures `tokio::spawn` cannot prove `Send`.
    async fn connect(shared: &Shared, server: String) -> anyhow::Result<SimAgent> {
        let sa = names::agent_service_account(&server);
        let client = shared.cp.service_account_client(NS, &sa).await?;
        let api: Api<DittoServer> = Api::namespaced(client.clone(), NS);
        let deadline = Instant::now() + RBAC_WAIT;
        while let Err(e) = api.get(&server).await {
            if Instant::now() >= deadline {
                return Err(e).with_context(|| format!("RBAC to let {sa} read DittoServer {server}"));
            }
            tokio::time::sleep(RBAC_RETRY).await;
        }
        let writer = Writer::new(client, NS, &server, &names::pod(&server, 0), shared.metrics.clone());
        Ok(SimAgent { server, writer, next_poll: Instant::now() })
    }

    /// One full poll: the entry with a fresh `lastPollTime`, written when it changed or the heartbeat is
    /// due (the writer decides, as in the agent); the next poll after the agent's period.
    async fn poll(&mut self, shared: &Shared) -> Result<bool, kube::Error> {
        // What the agent's watch of its DittoServer would have told it.
        let generation = shared.state.borrow().generation(&self.server);
        let obs = Observed {
            adapters: Some(&shared.adapters),
            reachability: Some(&shared.reach),
            auth: Some(&shared.auth),
            generation,
            last_poll: Some(Timestamp::now()),
            polled_at: Some(Instant::now()),
            traceparent: None,
            snapshot_policies: &[],
        };
        // The agent's full polls run every pollingInterval, and at least every heartbeat.
        self.next_poll = Instant::now() + POLLING_INTERVAL.min(shared.heartbeat);
        self.writer.write_if_changed(&obs, shared.heartbeat).await
    }
}

/// The simulated agents: started as [`Driver::adder`] hands them servers, [`CONCURRENCY`] at a time, then
/// polled on their schedule, [`CONCURRENCY`] writes in flight.
#[derive(Debug)]
pub struct Driver {
    add: mpsc::UnboundedSender<String>,
    stats: Arc<Stats>,
    tasks: [JoinHandle<()>; 2],
}

impl Driver {
    pub fn start(cp: Arc<ControlPlane>, state: Arc<watch::Sender<Convergence>>) -> Driver {
        let adapters = simulated_ports()
            .into_iter()
            .map(|(kind, port)| AgentAdapterStatus {
                r#type: kind,
                port,
                enabled: true,
                running: true,
                health: Some("healthy".to_owned()),
                message: None,
            })
            .collect();
        let stats = Arc::new(Stats::default());
        let shared = Arc::new(Shared {
            cp,
            state,
            adapters,
            // The agent's views after a successful login and list (`Auth::succeeded` and the poller build
            // them; neither is public, so the same values are written out here).
            reach: ReachView { reachable: true, reason: "Reachable", message: None },
            auth: AuthView {
                authenticated: true,
                reason: reasons::AUTHENTICATION_SUCCEEDED,
                message: format!("logged in to DittoFS as {:?} (role {OPERATOR_ROLE})", names::OPERATOR_USERNAME),
            },
            metrics: Arc::new(Metrics::new()),
            heartbeat: heartbeat(),
            stats: stats.clone(),
        });
        let (add, added) = mpsc::unbounded_channel::<String>();
        let (started_tx, started_rx) = mpsc::unbounded_channel::<SimAgent>();
        let starter = tokio::spawn(start_agents(shared.clone(), added, started_tx));
        let poller = tokio::spawn(poll_agents(shared, started_rx));
        Driver { add, stats, tasks: [starter, poller] }
    }

    /// Where to send a server whose agent may start (its ServiceAccount, Role and RoleBinding exist).
    pub fn adder(&self) -> mpsc::UnboundedSender<String> {
        self.add.clone()
    }

    /// (agents started, heartbeat writes, failed writes) so far.
    pub fn stats(&self) -> (u64, u64, u64) {
        let s = &self.stats;
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        (get(&s.started), get(&s.heartbeats), get(&s.failed_writes))
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        self.tasks.iter().for_each(JoinHandle::abort);
    }
}

/// Connects each server's agent and writes its first entry; a failure is fatal to the phase.
async fn start_agents(
    shared: Arc<Shared>,
    added: mpsc::UnboundedReceiver<String>,
    started: mpsc::UnboundedSender<SimAgent>,
) {
    let servers = futures::stream::unfold(added, |mut rx| async move { rx.recv().await.map(|s| (s, rx)) });
    let starts = servers.map(|server| start_one(shared.clone(), server)).buffer_unordered(CONCURRENCY);
    let mut starts = std::pin::pin!(starts);
    while let Some(result) = starts.next().await {
        match result {
            Ok(agent) => {
                shared.stats.started.fetch_add(1, Ordering::Relaxed);
                let _ = started.send(agent);
            }
            Err(e) => shared.state.send_modify(|s| s.fail(format!("simulated agent: {e:#}"))),
        }
    }
}

async fn start_one(shared: Arc<Shared>, server: String) -> anyhow::Result<SimAgent> {
    let mut agent = SimAgent::connect(&shared, server.clone()).await?;
    // A fresh binding can still be refused for a moment (the authorizer learns of it through an
    // informer): retried with the agent's 1 s doubling back-off.
    let mut delay = Duration::from_secs(1);
    for _ in 1..FIRST_WRITE_TRIES {
        match agent.poll(&shared).await {
            Ok(_) => return Ok(agent),
            Err(e) => eprintln!("bench-scale: first status write of {server} failed, retried in {delay:?}: {e}"),
        }
        tokio::time::sleep(delay).await;
        delay *= 2;
    }
    agent.poll(&shared).await.with_context(|| format!("first status write of {server}"))?;
    Ok(agent)
}

/// Polls each started agent when its next poll is due (checked every second).
async fn poll_agents(shared: Arc<Shared>, mut started: mpsc::UnboundedReceiver<SimAgent>) {
    let mut agents: Vec<SimAgent> = Vec::new();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            agent = started.recv() => match agent {
                Some(agent) => agents.push(agent),
                None => return,
            },
            _ = tick.tick() => {
                let now = Instant::now();
                let (due, waiting): (Vec<SimAgent>, Vec<SimAgent>) =
                    agents.into_iter().partition(|a| a.next_poll <= now);
                agents = waiting;
                let polled = futures::stream::iter(due).map(|a| poll_one(&shared, a)).buffer_unordered(CONCURRENCY);
                agents.extend(polled.collect::<Vec<_>>().await);
            }
        }
    }
}

async fn poll_one(shared: &Shared, mut agent: SimAgent) -> SimAgent {
    match agent.poll(shared).await {
        Ok(wrote) => {
            if wrote {
                shared.stats.heartbeats.fetch_add(1, Ordering::Relaxed);
            }
        }
        // TokenRequest tokens live an hour: a new one, as the kubelet rotates a pod's. The new writer has
        // not written yet, so its next poll writes the whole entry (as an agent restart would).
        Err(kube::Error::Api(status)) if status.code == 401 => {
            match SimAgent::connect(shared, agent.server.clone()).await {
                Ok(fresh) => agent = fresh,
                Err(e) => count_failure(shared, &agent.server, &format!("{e:#}")),
            }
        }
        Err(e) => count_failure(shared, &agent.server, &e.to_string()),
    }
    agent
}

/// Counts a failed write; the first few are printed (the count goes into the report).
fn count_failure(shared: &Shared, server: &str, why: &str) {
    if shared.stats.failed_writes.fetch_add(1, Ordering::Relaxed) < 10 {
        eprintln!("bench-scale: status write of {server} failed (retried at its next poll): {why}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn simulated_agents_report_nfs_and_smb_on_their_defaults_and_beat_like_the_agent() {
        assert_eq!(simulated_ports(), Ports::from([("nfs".to_owned(), 12049), ("smb".to_owned(), 12445)]));
        assert_eq!(heartbeat(), Duration::from_secs(100), "a third of the default 300 s");
    }
}
