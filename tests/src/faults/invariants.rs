//! The invariant checker: a task that every [`CHECK_EVERY`] takes a [`Snapshot`] of the namespace and asks
//! each watched server's DittoFS what runs, and records a [`Violation`] (time, server, detail) whenever
//!
//! - an adapter object (Service, NetworkPolicy or container port) exposes a type or port DittoFS does not
//!   run, or a running adapter lacks one, for longer than [`GRACE`] (see below);
//! - an exposed adapter fails the screen at any moment: a type outside `allowedTypes`, a port outside
//!   1–65535, or the API, metrics or agent port;
//! - a StatefulSet exists without its baseline NetworkPolicy, at any moment;
//! - a static child seen once is missing, or came back under a new uid (deleted and re-created);
//! - a value of a Secret that must never change (JWT key, admin password, operator password) changes.
//!
//! **Grace.** 10 s: the agent's fast path notices a toggle within 1 s, DittoFS's health cache may hide the
//! change for up to 5 s more (the agent then lists again 5.3 s after the cached probe), a port edit is seen
//! at the next full poll (the suite's servers poll every 2 s), and the controller needs well under a second
//! to apply a report. For each mismatched item the clock starts at the latest of: when the checker first
//! saw this mismatch, when the truth last changed, when the last fault cleared. While a fault is active no
//! mismatch is counted at all (the clock has not started); the immediate invariants are checked throughout.
//!
//! **Faults.** The scenarios bracket each fault with [`Checker::fault_begin`] / [`Checker::fault_end`].
//! A failed read (apiserver or DittoFS down) is never a violation: the cycle is skipped and the last known
//! truth and objects are kept. Failed reads outside a fault are counted ([`Checker::read_errors`]).

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use tokio::{sync::watch, task::JoinHandle};

use super::observe::{Adapters, Exposure, Session, Snapshot};
pub use super::watched::{Truth, Watched};

/// How long a mismatch between Kubernetes and DittoFS may last after the truth changed or a fault cleared.
pub const GRACE: Duration = Duration::from_secs(10);
/// The grace after kube-apiserver or etcd was started again: its start-up, then every watch of the
/// controller and the agents re-established. Watches sent while the apiserver starts get no answer at all
/// until the client's deadline (5 s, `dittofs_telemetry::kube_client`), then usually `410 Gone` and a
/// re-list after kube-runtime's backoff: about 10 s on this machine, whatever the operator does.
pub const RESTART_GRACE: Duration = Duration::from_secs(20);
/// The checker's cycle.
pub const CHECK_EVERY: Duration = Duration::from_millis(100);
/// Limit of one cycle's reads: a hung apiserver or DittoFS makes a failed read, not a stuck checker.
const READ_TIMEOUT: Duration = Duration::from_secs(3);

/// One broken invariant.
#[derive(Debug, Clone)]
pub struct Violation {
    pub at: jiff::Timestamp,
    pub server: String,
    pub detail: String,
}

/// What the checker knows about one server.
#[derive(Debug)]
struct Tracked {
    watched: Watched,
    truth: Option<Adapters>,
    truth_changed: Instant,
    /// Mismatched items (e.g. `Service nfs`) → when first seen in the current episode.
    mismatch_since: BTreeMap<String, Instant>,
    /// Items already recorded in their current episode (an item is recorded once per episode).
    recorded: BTreeSet<String>,
    /// Static children seen: (kind, name) → uid.
    uids: BTreeMap<(&'static str, String), String>,
    /// Secret values first seen: (secret, key) → value.
    secret_values: BTreeMap<(String, String), Vec<u8>>,
    session: Option<Session>,
}

#[derive(Debug, Default)]
struct State {
    servers: BTreeMap<String, Tracked>,
    active_faults: usize,
    last_clear: Option<Instant>,
    /// The grace that follows `last_clear` ([`GRACE`] or [`RESTART_GRACE`]).
    clear_grace: Duration,
    violations: Vec<Violation>,
    read_errors: u64,
    /// Start of the last cycle that read everything and found every server matching its truth.
    last_match: Option<Instant>,
}

/// The running checker; see the module docs.
#[derive(Debug)]
pub struct Checker {
    state: Arc<Mutex<State>>,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Checker {
    /// Starts checking namespace `ns` (nothing is watched yet) with an admin client that bypasses the proxy.
    pub fn start(client: kube::Client, ns: &str) -> Checker {
        let state = Arc::new(Mutex::new(State::default()));
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(run(state.clone(), client, ns.to_owned(), stopped));
        Checker { state, stop, task }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("checker state lock")
    }

    /// Starts watching a server (replacing what was known of it under that name).
    pub fn watch(&self, watched: Watched) {
        let tracked = Tracked {
            session: None,
            truth: match &watched.truth {
                Truth::Fixed(a) => Some(a.clone()),
                _ => None,
            },
            truth_changed: Instant::now(),
            mismatch_since: BTreeMap::new(),
            recorded: BTreeSet::new(),
            uids: BTreeMap::new(),
            secret_values: BTreeMap::new(),
            watched,
        };
        self.lock().servers.insert(tracked.watched.name.clone(), tracked);
    }

    /// Changes what a watched server's truth is, keeping what was seen of its objects and Secrets.
    pub fn set_truth(&self, server: &str, truth: Truth) {
        if let Some(t) = self.lock().servers.get_mut(server) {
            // A DittoFS truth is known at its first read; until then nothing matches.
            t.truth = if let Truth::Fixed(a) = &truth { Some(a.clone()) } else { None };
            t.truth_changed = Instant::now();
            t.watched.truth = truth;
        }
    }

    pub fn is_watched(&self, server: &str) -> bool {
        self.lock().servers.contains_key(server)
    }

    /// Stops watching a server (before the test deletes it: its children then go, legitimately).
    pub fn unwatch(&self, server: &str) {
        self.lock().servers.remove(server);
    }

    pub fn fault_begin(&self) {
        self.lock().active_faults += 1;
    }

    /// Ends a fault; returns the moment it cleared, which starts the grace and the convergence clock.
    pub fn fault_end(&self) -> Instant {
        self.fault_end_with(GRACE)
    }

    /// Ends a fault followed by `grace` instead of [`GRACE`] (a control-plane restart: [`RESTART_GRACE`]).
    pub fn fault_end_with(&self, grace: Duration) -> Instant {
        let now = Instant::now();
        let mut state = self.lock();
        state.active_faults = state.active_faults.saturating_sub(1);
        state.last_clear = Some(now);
        state.clear_grace = grace;
        now
    }

    /// Records a violation found by a scenario rather than by the checker (e.g. a controller that exited).
    pub fn record(&self, server: &str, detail: String) {
        eprintln!("faults: VIOLATION ({server}): {detail}");
        self.lock().violations.push(Violation { at: jiff::Timestamp::now(), server: server.into(), detail });
    }

    /// The violations recorded since the last call.
    pub fn take_violations(&self) -> Vec<Violation> {
        std::mem::take(&mut self.lock().violations)
    }

    /// Failed reads outside faults so far.
    pub fn read_errors(&self) -> u64 {
        self.lock().read_errors
    }

    /// Waits until a cycle that started after `since` found every watched server matching its truth;
    /// returns the time from `since` to the start of that cycle. Polled, not pushed: the resolution is a cycle.
    pub async fn wait_converged(&self, since: Instant, timeout: Duration) -> anyhow::Result<Duration> {
        crate::kube_env::wait_until("Kubernetes to match what DittoFS runs", timeout, async || {
            // Copied out first: a guard held in the match would deadlock with `mismatches` below.
            let last_match = self.lock().last_match;
            match last_match {
                Some(at) if at > since => Ok(at - since),
                _ => anyhow::bail!("{}", self.mismatches()),
            }
        })
        .await
    }

    /// The current mismatches, for messages.
    pub fn mismatches(&self) -> String {
        let state = self.lock();
        let items: Vec<String> = state
            .servers
            .values()
            .flat_map(|t| t.mismatch_since.keys().map(move |k| format!("{}: {k}", t.watched.name)))
            .collect();
        if items.is_empty() { "no mismatch seen, or reads failing".into() } else { items.join("; ") }
    }

    /// Stops the task.
    pub async fn stop(self) {
        self.stop.send_replace(true);
        let _ = self.task.await;
    }
}

async fn run(state: Arc<Mutex<State>>, client: kube::Client, ns: String, mut stopped: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(CHECK_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stopped.changed() => return,
        }
        let started = Instant::now();
        let snapshot = tokio::time::timeout(READ_TIMEOUT, Snapshot::read(&client, &ns)).await;
        let snapshot = snapshot.map_err(anyhow::Error::from).and_then(|r| r);
        // Truth reads need the sessions, which live in the state; take them out so no lock spans an await.
        let mut sessions: Vec<(String, String, Option<Session>)> = {
            let mut st = state.lock().expect("checker state lock");
            st.servers
                .values_mut()
                .filter_map(|t| match &t.watched.truth {
                    Truth::DittoFs { url } => Some((t.watched.name.clone(), url.clone(), t.session.take())),
                    _ => None,
                })
                .collect()
        };
        let mut truths = BTreeMap::new();
        for (name, url, session) in &mut sessions {
            let session = session.get_or_insert_with(|| Session::new(url));
            let read = tokio::time::timeout(READ_TIMEOUT, session.running()).await;
            truths.insert(name.clone(), read.map_err(anyhow::Error::from).and_then(|r| r));
        }
        let mut st = state.lock().expect("checker state lock");
        for (name, _, session) in sessions {
            if let Some(t) = st.servers.get_mut(&name) {
                t.session = session;
            }
        }
        st.evaluate(started, snapshot, truths);
    }
}

impl State {
    fn evaluate(
        &mut self,
        started: Instant,
        snapshot: anyhow::Result<Snapshot>,
        mut truths: BTreeMap<String, anyhow::Result<Adapters>>,
    ) {
        let in_fault = self.active_faults > 0;
        let mut complete = true;
        let mut found = Vec::new();
        let snapshot = match snapshot {
            Ok(s) => Some(s),
            Err(e) => {
                complete = false;
                self.read_error(in_fault, &format!("Kubernetes: {e:#}"));
                None
            }
        };
        // A longer grace after the clear is the clear moved later by the difference.
        let clear = self.last_clear.map(|at| at + self.clear_grace.saturating_sub(GRACE));
        let mut errors = Vec::new();
        for t in self.servers.values_mut() {
            let truth_read = match truths.remove(&t.watched.name) {
                Some(Ok(now)) => {
                    if t.truth.as_ref() != Some(&now) {
                        t.truth = Some(now);
                        t.truth_changed = Instant::now();
                    }
                    true
                }
                Some(Err(e)) => {
                    errors.push(format!("DittoFS of {}: {e:#}", t.watched.name));
                    false
                }
                // Not a DittoFS truth: nothing to read.
                None => true,
            };
            let Some(snap) = &snapshot else { continue };
            t.check_immediate(snap, &mut found);
            // Without this cycle's truth nothing is compared: a stale truth must not make a violation.
            complete &= truth_read && t.compare(snap, in_fault, clear, &mut found);
        }
        for e in errors {
            complete = false;
            self.read_error(in_fault, &e);
        }
        for (server, detail) in found {
            eprintln!("faults: VIOLATION ({server}): {detail}");
            self.violations.push(Violation { at: jiff::Timestamp::now(), server, detail });
        }
        if complete {
            self.last_match = Some(started);
        }
    }

    /// A failed read is expected during a fault and while the cleared fault settles (an apiserver just
    /// started, a DittoFS just restarted): only the ones outside both are counted.
    fn read_error(&mut self, in_fault: bool, what: &str) {
        let settling = self.last_clear.is_some_and(|at| at.elapsed() < self.clear_grace);
        if !in_fault && !settling {
            self.read_errors += 1;
            tracing::debug!("checker read failed outside a fault: {what}");
        }
    }
}

impl Tracked {
    /// The invariants that hold at every moment, faults or not.
    fn check_immediate(&mut self, snap: &Snapshot, found: &mut Vec<(String, String)>) {
        let name = self.watched.name.clone();
        // An ongoing breach is recorded once, when it starts.
        let mut once = |recorded: &mut BTreeSet<String>, key: String, detail: String| {
            if recorded.insert(key) {
                found.push((name.clone(), detail));
            }
        };
        let exposure = snap.exposure(&name);
        for (what, items) in [("Service", &exposure.services), ("NetworkPolicy", &exposure.policies)] {
            for (kind, port) in items {
                if let Some(why) = self.watched.screen(kind, *port) {
                    let detail = format!("{what} exposes {kind}:{port}: {why}");
                    once(&mut self.recorded, format!("screen {what} {kind}:{port}"), detail);
                }
            }
        }
        for (port_name, port) in &exposure.ports {
            if let Some(why) = self.watched.screen_port(*port) {
                let detail = format!("container port {port_name}:{port}: {why}");
                once(&mut self.recorded, format!("screen port {port_name}:{port}"), detail);
            }
        }
        let sts = dittofs_api::names::statefulset(&name);
        let baseline = dittofs_api::names::baseline_network_policy(&name);
        let has = |kind: &'static str, n: &str| snap.objects.contains_key(&(kind, n.to_owned()));
        if has("StatefulSet", &sts) && !has("NetworkPolicy", &baseline) {
            let detail = format!("StatefulSet {sts} exists without NetworkPolicy {baseline}");
            once(&mut self.recorded, "baseline".into(), detail);
        } else {
            self.recorded.remove("baseline");
        }
        if !self.watched.statics {
            return;
        }
        for (kind, child) in &self.watched.children {
            let key = (*kind, child.clone());
            let gone = format!("gone {kind} {child}");
            match (snap.objects.get(&key), self.uids.get(&key)) {
                (Some(obj), Some(uid)) if &obj.uid != uid => {
                    let detail = format!("{kind} {child} was deleted and re-created (uid {uid} → {})", obj.uid);
                    once(&mut BTreeSet::new(), gone.clone(), detail);
                    self.uids.insert(key, obj.uid.clone());
                }
                (Some(obj), None) => drop(self.uids.insert(key, obj.uid.clone())),
                (None, Some(_)) => once(&mut self.recorded, gone, format!("{kind} {child} disappeared")),
                _ => drop(self.recorded.remove(&gone)),
            }
        }
        for (secret, key) in &self.watched.secrets {
            let Some(value) = snap.secrets.get(secret).and_then(|d| d.get(key)) else { continue };
            let seen = (secret.clone(), key.clone());
            match self.secret_values.get(&seen) {
                Some(first) if first != value => {
                    // Never the values themselves: they would reach the log and the report.
                    once(&mut BTreeSet::new(), String::new(), format!("Secret {secret} key {key} changed value"));
                    self.secret_values.insert(seen, value.clone());
                }
                Some(_) => {}
                None => drop(self.secret_values.insert(seen, value.clone())),
            }
        }
    }

    /// Compares the exposure with the truth under the grace rule; true when everything matches.
    fn compare(
        &mut self,
        snap: &Snapshot,
        in_fault: bool,
        clear: Option<Instant>,
        found: &mut Vec<(String, String)>,
    ) -> bool {
        if matches!(self.watched.truth, Truth::Unknown) {
            // No truth to compare with (untrusted reports): only the screen applies.
            self.mismatch_since.clear();
            return true;
        }
        let Some(truth) = &self.truth else { return false };
        let items = mismatches(truth, &snap.exposure(&self.watched.name));
        let now = Instant::now();
        self.mismatch_since.retain(|k, _| items.contains_key(k));
        self.recorded.retain(|k| !k.starts_with("truth ") || items.contains_key(&k["truth ".len()..]));
        for (key, detail) in &items {
            let since = *self.mismatch_since.entry(key.clone()).or_insert(now);
            let anchor = [Some(since), Some(self.truth_changed), clear].into_iter().flatten().max().unwrap_or(since);
            if !in_fault && now.duration_since(anchor) > GRACE && self.recorded.insert(format!("truth {key}")) {
                let held = now.duration_since(since).as_secs_f64();
                found.push((self.watched.name.clone(), format!("{detail} for {held:.1} s (grace {GRACE:?})")));
            }
        }
        items.is_empty()
    }
}

/// Each item of the exposure that differs from the truth, keyed `<object> <type>`, with a description.
fn mismatches(truth: &Adapters, exposure: &Exposure) -> BTreeMap<String, String> {
    let want_ports: Adapters = truth.iter().map(|(k, p)| (dittofs_api::names::adapter_port_name(k), *p)).collect();
    let mut out = BTreeMap::new();
    for (what, want, have) in [
        ("Service", truth, &exposure.services),
        ("NetworkPolicy", truth, &exposure.policies),
        ("container port", &want_ports, &exposure.ports),
    ] {
        for kind in want.keys().chain(have.keys()).collect::<BTreeSet<_>>() {
            match (want.get(kind), have.get(kind)) {
                (Some(w), Some(h)) if w == h => {}
                (w, h) => {
                    let show = |p: Option<&i32>| p.map_or("nothing".to_owned(), |p| format!("port {p}"));
                    out.insert(
                        format!("{what} {kind}"),
                        format!("{what} {kind}: Kubernetes has {}, DittoFS runs {}", show(h), show(w)),
                    );
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests;
