//! One function per fault kind. Each runs its rounds in the shared [`World`], toggles adapters through
//! DittoFS's admin API before, during and after its fault, brackets the fault for the checker, measures
//! the convergence from the moment the fault cleared, and checks after every round that each controller
//! process still runs and answers `/readyz`. Counts are per kind ([`Kind::full_rounds`] for `make faults`,
//! [`Kind::bounded_rounds`] for `make test`).

mod accounts;
mod cluster;
mod hostile;
mod processes;
mod random_spec;

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::{
    invariants::Violation,
    world::{ADMIN_SECRET, JWT_SECRET, World, exited},
};

/// The fault kinds, in the order a run goes through them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    ApiserverRestart,
    EtcdRestart,
    ControllerKill,
    AgentKill,
    DittoFsKill,
    DatabaseReset,
    OperatorDeleted,
    OperatorDemoted,
    TokenExpiry,
    SlowApiserver,
    DroppingApiserver,
    HostileStatus,
    RandomSpecs,
    LeaderKill,
}

impl Kind {
    pub const ALL: [Kind; 14] = [
        Kind::ApiserverRestart,
        Kind::EtcdRestart,
        Kind::ControllerKill,
        Kind::AgentKill,
        Kind::DittoFsKill,
        Kind::DatabaseReset,
        Kind::OperatorDeleted,
        Kind::OperatorDemoted,
        Kind::TokenExpiry,
        Kind::SlowApiserver,
        Kind::DroppingApiserver,
        Kind::HostileStatus,
        Kind::RandomSpecs,
        // Last: it leaves a different controller identity leading.
        Kind::LeaderKill,
    ];

    pub fn title(self) -> &'static str {
        match self {
            Kind::ApiserverRestart => "kube-apiserver killed and restarted",
            Kind::EtcdRestart => "etcd killed and restarted",
            Kind::ControllerKill => "controller SIGKILL during toggles",
            Kind::AgentKill => "agent SIGKILL",
            Kind::DittoFsKill => "DittoFS SIGKILL and restart",
            Kind::DatabaseReset => "DittoFS database reset",
            Kind::OperatorDeleted => "k8s-operator user deleted",
            Kind::OperatorDemoted => "k8s-operator user demoted to user",
            Kind::TokenExpiry => "tokens expired (agent frozen past the refresh lifetime)",
            Kind::SlowApiserver => "slow apiserver (proxy delays every chunk 250 ms)",
            Kind::DroppingApiserver => "dropping apiserver (proxy cuts and refuses connections)",
            Kind::HostileStatus => "hostile status writes with the agent's token",
            Kind::RandomSpecs => "random DittoServer specs",
            Kind::LeaderKill => "two controllers, leader killed while a server is created",
        }
    }

    /// Rounds of `make faults` (times `$FAULTS_ROUNDS`).
    pub fn full_rounds(self) -> u32 {
        match self {
            Kind::ControllerKill | Kind::AgentKill => 10,
            Kind::HostileStatus | Kind::RandomSpecs => 6,
            _ => 5,
        }
    }

    /// Rounds of the bounded part in `make test`: one, two where a round is cheap.
    pub fn bounded_rounds(self) -> u32 {
        match self {
            Kind::ControllerKill | Kind::AgentKill | Kind::HostileStatus | Kind::RandomSpecs => 2,
            _ => 1,
        }
    }
}

/// What one kind gave.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub kind: Kind,
    /// Rounds completed.
    pub rounds: u32,
    pub violations: Vec<Violation>,
    /// Worst time from a fault clearing to Kubernetes matching DittoFS.
    pub worst: Option<Duration>,
    /// Counts summed over the rounds (e.g. hostile writes the apiserver refused), in first-seen order.
    pub counts: Vec<(&'static str, u64)>,
    /// Durations, the worst over the rounds (e.g. convergence while the apiserver is slow).
    pub maxima: Vec<(&'static str, Duration)>,
    /// Other facts, each once.
    pub notes: Vec<String>,
    /// The harness itself failed (not an invariant): the kind did not run to the end.
    pub error: Option<String>,
}

/// An outcome being filled in by a scenario.
#[derive(Debug)]
pub(crate) struct Tally {
    outcome: Outcome,
}

impl Tally {
    fn converged(&mut self, took: Duration) {
        self.outcome.worst = Some(self.outcome.worst.map_or(took, |w| w.max(took)));
    }

    fn note(&mut self, note: String) {
        if !self.outcome.notes.contains(&note) {
            self.outcome.notes.push(note);
        }
    }

    fn count(&mut self, what: &'static str, n: u64) {
        match self.outcome.counts.iter_mut().find(|(w, _)| *w == what) {
            Some((_, total)) => *total += n,
            None => self.outcome.counts.push((what, n)),
        }
    }

    fn worst(&mut self, what: &'static str, took: Duration) {
        match self.outcome.maxima.iter_mut().find(|(w, _)| *w == what) {
            Some((_, worst)) => *worst = (*worst).max(took),
            None => self.outcome.maxima.push((what, took)),
        }
    }

    /// Measures the convergence after a fault cleared at `clear`; a failure to converge is a violation.
    async fn after_clear(&mut self, world: &World, clear: Instant) {
        match world.converge(clear).await {
            Ok(took) => self.converged(took),
            Err(e) => world.checker.record("*", format!("no convergence after the fault cleared: {e:#}")),
        }
    }

    /// Waits for convergence outside a fault (before one, after a toggle); not a figure of the table.
    async fn settle(&mut self, world: &World) {
        if let Err(e) = world.converge(Instant::now()).await {
            world.checker.record("*", format!("no convergence after a toggle: {e:#}"));
        }
    }
}

/// Runs `rounds` rounds of `kind`.
pub async fn run(world: &mut World, kind: Kind, rounds: u32) -> Outcome {
    let outcome = Outcome {
        kind,
        rounds: 0,
        violations: vec![],
        worst: None,
        counts: vec![],
        maxima: vec![],
        notes: vec![],
        error: None,
    };
    let mut tally = Tally { outcome };
    let result = async {
        for round in 1..=rounds {
            match kind {
                Kind::ApiserverRestart => cluster::restart(world, &mut tally, "kube-apiserver").await?,
                Kind::EtcdRestart => cluster::restart(world, &mut tally, "etcd").await?,
                Kind::SlowApiserver => cluster::slow(world, &mut tally).await?,
                Kind::DroppingApiserver => cluster::dropping(world, &mut tally).await?,
                Kind::ControllerKill => processes::controller_kill(world, &mut tally).await?,
                Kind::AgentKill => processes::agent_kill(world, &mut tally).await?,
                Kind::DittoFsKill => processes::dittofs_kill(world, &mut tally).await?,
                Kind::DatabaseReset => processes::database_reset(world, &mut tally).await?,
                Kind::LeaderKill => processes::leader_kill(world, &mut tally, round).await?,
                Kind::OperatorDeleted => accounts::operator_deleted(world, &mut tally).await?,
                Kind::OperatorDemoted => accounts::operator_demoted(world, &mut tally).await?,
                Kind::TokenExpiry => accounts::token_expiry(world, &mut tally, round).await?,
                Kind::HostileStatus => hostile::status_writes(world, &mut tally).await?,
                Kind::RandomSpecs => hostile::random_specs(world, &mut tally).await?,
            }
            check_controllers(world).await?;
            tally.outcome.rounds = round;
            eprintln!("faults:   {} round {round}/{rounds} done", kind.title());
        }
        anyhow::Ok(())
    }
    .await;
    if let Err(e) = result {
        tally.outcome.error = Some(format!("{e:#}"));
    }
    // Whatever the grace still had to judge is judged before the violations are handed over. A world left
    // apart is healed, so the next kind starts from a converged world and does not inherit this failure.
    if world.converge(Instant::now()).await.is_err() {
        world.checker.record("*", format!("no convergence at the end of the kind: {}", world.checker.mismatches()));
        let healed = async {
            world.heal().await?;
            world.converge(Instant::now()).await
        };
        match healed.await {
            Ok(_) => tally.note("world healed afterwards (account role reset, agents restarted)".into()),
            Err(e) => {
                let error = tally.outcome.error.take().map_or(String::new(), |e| format!("{e}; "));
                tally.outcome.error = Some(format!("{error}the world could not be healed: {e:#}"));
            }
        }
    }
    tally.outcome.violations = world.checker.take_violations();
    tally.outcome
}

/// The servers the scenarios use, created with their pods on first use.
pub const FS: &str = "fs";
/// Short token lifetimes (10 s access, 20 s refresh), for the account and token kinds.
pub const TOK: &str = "tok";
/// No pod: its status is written by the hostile writer only.
pub const HOSTILE: &str = "hostile";

fn spec_of(name: &str) -> Value {
    let admin = json!({"passwordSecretRef": {"name": ADMIN_SECRET, "key": "password"}});
    let mut spec = json!({
        "storage": {"metadataSize": "1Gi"},
        "identity": {"admin": admin},
        // Port edits are seen at the next full poll only; 2 s keeps them well inside the grace.
        "adapterDiscovery": {"pollingInterval": "2s"},
    });
    if name == TOK {
        spec["identity"]["jwt"] = json!({
            "secretRef": {"name": JWT_SECRET, "key": "jwt-secret"},
            "accessTokenDuration": "10s",
            "refreshTokenDuration": "20s",
        });
    }
    spec
}

/// Makes sure server `name` exists (with its pod, except [`HOSTILE`]) and Kubernetes matches it.
pub(crate) async fn ensure(world: &mut World, name: &str) -> anyhow::Result<()> {
    if name == HOSTILE && world.checker.is_watched(name) || world.pods.contains_key(name) {
        return Ok(());
    }
    world.create_server(name, spec_of(name), name != HOSTILE).await?;
    if name == HOSTILE {
        // No pod waits for its StatefulSet: wait for the reconcile that creates the agent's ServiceAccount.
        let servers: kube::Api<dittofs_api::DittoServer> =
            kube::Api::namespaced(world.client.clone(), super::world::NS);
        let ready = dittofs_api::conditions::CONFIG_READY;
        crate::objects::wait_for_condition(&servers, name, ready, "True", Duration::from_secs(30)).await?;
    }
    world.converge(Instant::now()).await?;
    Ok(())
}

/// Every controller process must still run (else: a violation, and it is started again as the kubelet
/// would) and answer `/readyz`.
async fn check_controllers(world: &mut World) -> anyhow::Result<()> {
    for i in 0..world.controllers.len() {
        if exited(world.controllers[i].proc.pid()) {
            let identity = world.controllers[i].identity.clone();
            let tail = world.controllers[i].proc.log_tail(20);
            world.checker.record("*", format!("controller {identity} exited; its log ends:\n{tail}"));
            world.controllers[i] = world.spawn_controller(&identity)?;
        }
    }
    if let Err(e) = world.wait_controllers_ready().await {
        world.checker.record("*", format!("a controller is not ready: {e:#}"));
    }
    Ok(())
}

/// A toggle of `server` followed by convergence: the state a fault starts from is one Kubernetes had
/// caught up with, and a toggle just before the fault is still in flight when it strikes.
/// The usual round after the set-up: `fault` runs between the checker's `fault_begin` and `fault_end` (its
/// error ends the round, once the fault is over for the checker), the convergence is measured from the
/// clear, and a toggle of `server` must be followed too.
async fn bracket(
    world: &mut World,
    tally: &mut Tally,
    server: &str,
    fault: impl AsyncFnOnce(&mut World, &mut Tally) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    world.checker.fault_begin();
    let result = fault(world, tally).await;
    let clear = world.checker.fault_end();
    result?;
    tally.after_clear(world, clear).await;
    toggle_and_settle(world, tally, server).await
}

async fn toggle_and_settle(world: &mut World, tally: &mut Tally, server: &str) -> anyhow::Result<()> {
    world.toggle(server).await?;
    tally.settle(world).await;
    Ok(())
}
