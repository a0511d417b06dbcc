//! The loop against the fake DittoFS and a recording status API, on paused tokio time: the fast path and
//! the full polls it triggers, the polling interval, the 80 % refresh, healing after DittoFS lost its
//! database, failed polls that never change the reported adapters, and failed status writes retried with a
//! jittered, growing delay.

use std::{
    collections::BTreeSet,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use dittofs_api::{
    DittoServer,
    crd::{AgentStatus, DittoServerStatus},
    names::OPERATOR_USERNAME,
};
use dittofs_telemetry::Health;
use futures::channel::mpsc;
use kube::runtime::watcher;
use tokio::time::{Instant, sleep};
use tokio_util::sync::CancellationToken;

use super::{ObjectEvents, Poller};
use crate::{
    auth::{Auth, Clock},
    config::{AgentConfig, Timings},
    credentials::fake::FakeStore,
    dittofs::{
        ApiAdapter, ApiError, Endpoint, OPERATOR_ROLE, TlsFailure,
        fake::{ADMIN, ADMIN_PASSWORD, FakeDittoFs, URL},
    },
    metrics::{Metrics, PollKind},
    status::{StatusApi, Writer},
};

const OPERATOR_PASSWORD: &str = "operator-password";

/// The status API: records every applied entry and every attempt; a read returns the object with the last one.
#[derive(Debug, Clone, Default)]
struct FakeStatus {
    entries: Arc<Mutex<Vec<AgentStatus>>>,
    attempts: Arc<Mutex<Vec<Instant>>>,
    /// The apiserver refuses every apply (an outage).
    down: Arc<AtomicBool>,
}

impl StatusApi for FakeStatus {
    async fn apply(&self, entry: &AgentStatus) -> Result<(), kube::Error> {
        self.attempts.lock().unwrap().push(Instant::now());
        if self.down.load(Ordering::SeqCst) {
            return Err(kube::Error::Service("apiserver down".into()));
        }
        self.entries.lock().unwrap().push(entry.clone());
        Ok(())
    }

    async fn get(&self) -> Result<DittoServer, kube::Error> {
        let mut obj = server("30s");
        let agents = self.entries.lock().unwrap().last().cloned().into_iter().collect();
        obj.status = Some(DittoServerStatus { agents, ..DittoServerStatus::default() });
        Ok(obj)
    }
}

fn server(polling_interval: &str) -> DittoServer {
    let spec = serde_json::json!({
        "storage": { "metadataSize": "1Gi" },
        "adapterDiscovery": { "pollingInterval": polling_interval },
    });
    let mut obj = DittoServer::new("fs", serde_json::from_value(spec).unwrap());
    obj.metadata.generation = Some(1);
    obj
}

/// A DittoFS with `k8s-operator` provisioned and the `running` adapter types enabled and running.
fn dittofs(running: &[&str]) -> FakeDittoFs {
    let fs = FakeDittoFs::new();
    fs.state().users.insert(OPERATOR_USERNAME.into(), (OPERATOR_PASSWORD.into(), OPERATOR_ROLE.into()));
    serve(&fs, running);
    fs
}

fn serve(fs: &FakeDittoFs, running: &[&str]) {
    let mut s = fs.state();
    s.ready = running.iter().map(|t| (*t).to_owned()).collect();
    s.adapters = running
        .iter()
        .map(|t| ApiAdapter {
            kind: (*t).into(),
            enabled: true,
            running: true,
            port: 0,
            status: None,
            updated_at: None,
        })
        .collect();
}

type Events = mpsc::UnboundedSender<Result<watcher::Event<DittoServer>, watcher::Error>>;

/// A poller running in its own task, and what it talks to.
struct Rig {
    fs: FakeDittoFs,
    store: FakeStore,
    status: FakeStatus,
    metrics: Arc<Metrics>,
    objects: Events,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
    started: Instant,
}

impl Rig {
    fn start(fs: &FakeDittoFs, polling_interval: &str) -> Rig {
        let store = FakeStore::with_password(OPERATOR_PASSWORD);
        let status = FakeStatus::default();
        let metrics = Arc::new(Metrics::new());
        let config = AgentConfig::new("fs-0", "ns", "fs", URL, ADMIN_PASSWORD.into());
        let auth = Auth::new(&config, fs.clone(), store.clone(), metrics.clone()).with_clock(Clock::tokio());
        let writer = Writer::with_api(status.clone(), "fs-0", metrics.clone());
        let health = Arc::new(Health::default());
        // A period of one second keeps the timelines below in whole seconds; the tests of the period itself
        // set it through the spec.
        let timings = Timings { ready_interval: Duration::from_secs(1), ..Timings::default() };
        let poller = Poller::new(fs.clone(), auth, writer, metrics.clone(), health, timings, "fs".into());
        let (objects, rx) = mpsc::unbounded();
        objects.unbounded_send(Ok(watcher::Event::Apply(server(polling_interval)))).unwrap();
        let events: ObjectEvents = Box::pin(rx);
        let stop = CancellationToken::new();
        let task = tokio::spawn(poller.run(events, stop.clone()));
        Rig { fs: fs.clone(), store, status, metrics, objects, stop, task, started: Instant::now() }
    }

    fn entries(&self) -> Vec<AgentStatus> {
        self.status.entries.lock().unwrap().clone()
    }

    fn last(&self) -> AgentStatus {
        self.entries().pop().expect("an entry was written")
    }

    /// When each call to `endpoint` was made, counted from the start.
    fn times(&self, endpoint: Endpoint) -> Vec<Duration> {
        self.fs.calls(endpoint).iter().map(|c| c.at - self.started).collect()
    }

    async fn stop(self) {
        self.stop.cancel();
        self.task.await.unwrap();
    }
}

fn types(entry: &AgentStatus) -> Vec<&str> {
    entry.adapters.iter().filter(|a| a.running).map(|a| a.r#type.as_str()).collect()
}

fn secs(s: &[u64]) -> Vec<Duration> {
    s.iter().map(|s| Duration::from_secs(*s)).collect()
}

fn gaps(times: &[Duration]) -> Vec<Duration> {
    times.windows(2).map(|w| w[1] - w[0]).collect()
}

#[tokio::test(start_paused = true)]
async fn the_fast_path_samples_every_period_and_a_change_triggers_a_full_poll() {
    let fs = dittofs(&["nfs"]);
    let rig = Rig::start(&fs, "30s");
    sleep(Duration::from_millis(10_500)).await;
    let ready = rig.times(Endpoint::HealthReady);
    assert_eq!(ready.len(), 11, "{ready:?}");
    assert!(gaps(&ready).iter().all(|g| *g == Duration::from_secs(1)), "one sample per second: {ready:?}");
    assert_eq!(rig.times(Endpoint::ListAdapters), secs(&[0]), "nothing changed: no poll before the interval");
    assert_eq!(types(&rig.last()), ["nfs"]);
    assert_eq!(rig.entries().len(), 1, "the fast path alone never writes");

    let changed = Instant::now() - rig.started;
    serve(&fs, &["nfs", "smb"]);
    sleep(Duration::from_secs(1)).await;
    let lists = rig.times(Endpoint::ListAdapters);
    assert_eq!(lists.len(), 2, "{lists:?}");
    assert!(lists[1] - changed <= Duration::from_secs(1), "polled at the next sample: {lists:?}");
    assert_eq!(types(&rig.last()), ["nfs", "smb"]);
    assert_eq!(rig.entries().len(), 2);
    rig.stop().await;
}

#[tokio::test(start_paused = true)]
async fn the_fast_path_period_follows_the_spec_and_falls_back_to_the_agents_own() {
    let fs = dittofs(&["nfs"]);
    let rig = Rig::start(&fs, "30s");
    let mut fast = server("30s");
    fast.spec.adapter_discovery.fast_path_interval = Some("250ms".into());
    rig.objects.unbounded_send(Ok(watcher::Event::Apply(fast))).unwrap();
    sleep(Duration::from_millis(2_100)).await;
    let ready = rig.times(Endpoint::HealthReady);
    assert_eq!(gaps(&ready[1..]), vec![Duration::from_millis(250); ready.len() - 2], "every 250 ms: {ready:?}");

    // A change is listed at the next sample, a quarter of a second later at most.
    let changed = Instant::now() - rig.started;
    serve(&fs, &["nfs", "smb"]);
    sleep(Duration::from_millis(300)).await;
    let lists = rig.times(Endpoint::ListAdapters);
    assert!(lists.len() == 2 && lists[1] - changed <= Duration::from_millis(250), "{lists:?}");

    // Unset again (or a value the CRD would refuse): the agent's own period.
    let mut refused = server("30s");
    refused.spec.adapter_discovery.fast_path_interval = Some("1ms".into());
    rig.objects.unbounded_send(Ok(watcher::Event::Apply(refused))).unwrap();
    let from = rig.times(Endpoint::HealthReady).len();
    sleep(Duration::from_millis(3_100)).await;
    let ready = rig.times(Endpoint::HealthReady);
    assert_eq!(gaps(&ready[from..]), vec![Duration::from_secs(1); ready.len() - from - 1], "{ready:?}");
    rig.stop().await;
}

#[tokio::test(start_paused = true)]
async fn with_listeners_known_dittofs_is_asked_once_a_second_and_at_the_sample_after_a_listener_changes() {
    let fs = dittofs(&["nfs"]);
    fs.state().adapters[0].port = 12049;
    fs.state().listening = Some(BTreeSet::from([8080, 12049]));
    let rig = Rig::start(&fs, "30s");
    let mut fast = server("30s");
    fast.spec.adapter_discovery.fast_path_interval = Some("250ms".into());
    rig.objects.unbounded_send(Ok(watcher::Event::Apply(fast))).unwrap();
    sleep(Duration::from_millis(1_100)).await;
    let from = rig.times(Endpoint::HealthReady).len();
    sleep(Duration::from_secs(4)).await;
    let ready = rig.times(Endpoint::HealthReady);
    assert_eq!(gaps(&ready[from - 1..]), vec![Duration::from_secs(1); ready.len() - from], "{ready:?}");

    // SMB switched on: its listener opens, and the next sample (a quarter of a second later at most) asks
    // DittoFS and lists.
    let changed = Instant::now() - rig.started;
    {
        let mut s = fs.state();
        s.listening = Some(BTreeSet::from([8080, 12049, 12445]));
    }
    serve(&fs, &["nfs", "smb"]);
    sleep(Duration::from_millis(300)).await;
    let lists = rig.times(Endpoint::ListAdapters);
    assert!(lists.len() == 2 && lists[1] - changed <= Duration::from_millis(250), "{lists:?}");
    assert_eq!(types(&rig.last()), ["nfs", "smb"]);
    rig.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_listed_port_that_stops_listening_is_polled_for_at_the_next_sample_and_once() {
    let fs = dittofs(&["nfs"]);
    fs.state().adapters[0].port = 12049;
    fs.state().listening = Some(BTreeSet::from([8080, 12049]));
    let rig = Rig::start(&fs, "30s");
    sleep(Duration::from_millis(3_500)).await;
    assert_eq!(rig.times(Endpoint::ListAdapters), secs(&[0]), "listening as listed: no poll");

    // A PUT of another port: DittoFS closes the old listener and opens the new one before it answers.
    let moved = Instant::now() - rig.started;
    {
        let mut s = fs.state();
        s.adapters[0].port = 13049;
        s.listening = Some(BTreeSet::from([8080, 13049]));
    }
    sleep(Duration::from_secs(3)).await;
    let lists = rig.times(Endpoint::ListAdapters);
    assert!(lists.len() == 2 && lists[1] - moved <= Duration::from_secs(1), "at the next sample: {lists:?}");
    assert_eq!(rig.last().adapters[0].port, 13049);

    // Listed but not listening (the new bind failed, which DittoFS does not report): one poll, not one per
    // sample; and nothing at all while the listeners cannot be read.
    fs.state().listening = Some(BTreeSet::from([8080]));
    sleep(Duration::from_secs(10)).await;
    assert_eq!(rig.times(Endpoint::ListAdapters).len(), 3);
    fs.state().listening = None;
    sleep(Duration::from_secs(10)).await;
    assert_eq!(rig.times(Endpoint::ListAdapters).len(), 3);
    rig.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_healthy_agent_refreshes_its_entry_every_third_of_the_freshness_limit() {
    let fs = dittofs(&["nfs"]);
    // Polls every 10 minutes, but the controller distrusts a report after 60 s: polls every 20 s instead.
    let rig = Rig::start(&fs, "10m");
    let mut obj = server("10m");
    obj.spec.adapter_services.report_max_age_seconds = 60;
    rig.objects.unbounded_send(Ok(watcher::Event::Apply(obj))).unwrap();
    sleep(Duration::from_secs(125)).await;
    let polls = rig.times(Endpoint::ListAdapters);
    assert!(gaps(&polls).iter().all(|g| *g <= Duration::from_secs(20)), "a poll at least every 20 s: {polls:?}");
    let writes: Vec<Duration> = rig.status.attempts.lock().unwrap().iter().map(|t| *t - rig.started).collect();
    assert!(writes.len() >= 6, "the entry is rewritten although nothing changed: {writes:?}");
    assert!(gaps(&writes).iter().all(|g| *g <= Duration::from_secs(20)), "{writes:?}");
    let entries = rig.entries();
    assert!(entries.windows(2).all(|w| types(&w[0]) == types(&w[1])), "only the poll time moves");
}

#[tokio::test(start_paused = true)]
async fn full_polls_follow_the_polling_interval_and_its_changes() {
    let fs = dittofs(&["nfs"]);
    let rig = Rig::start(&fs, "10s");
    sleep(Duration::from_secs(35)).await;
    assert_eq!(rig.times(Endpoint::ListAdapters), secs(&[0, 10, 20, 30]));
    assert_eq!(rig.entries().len(), 1, "unchanged polls write nothing");
    assert_eq!(rig.metrics.status_writes(crate::metrics::WriteResult::Skipped), 3);

    // A shorter interval takes effect at once: the next poll is due one new interval after the last.
    rig.objects.unbounded_send(Ok(watcher::Event::Apply(server("4s")))).unwrap();
    sleep(Duration::from_secs(9)).await;
    assert_eq!(rig.times(Endpoint::ListAdapters), secs(&[0, 10, 20, 30, 35, 39, 43]));
    rig.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_failed_poll_keeps_the_reported_adapters_and_retries_with_growing_gaps() {
    let fs = dittofs(&["nfs", "smb"]);
    let rig = Rig::start(&fs, "10s");
    sleep(Duration::from_millis(500)).await;
    let before = rig.last();
    assert!(before.reachability.as_ref().unwrap().reachable);

    fs.state().down = true;
    sleep(Duration::from_secs(40)).await;
    let failed: Vec<Duration> = rig.times(Endpoint::ListAdapters).into_iter().skip(1).collect();
    assert_eq!(failed[0], Duration::from_secs(1), "the fast path noticed the outage at its next sample");
    let retries = gaps(&failed);
    assert_eq!(retries[0], Duration::from_secs(1), "{failed:?}");
    assert!(retries.windows(2).all(|w| w[0] <= w[1]), "growing: {retries:?}");
    assert!(retries.iter().all(|g| *g <= Duration::from_secs(10)), "capped at the interval: {retries:?}");
    assert_eq!(retries.last(), Some(&Duration::from_secs(10)), "{retries:?}");
    assert_eq!(rig.metrics.polls(PollKind::Full, "refused"), failed.len() as u64);

    let entries = rig.entries();
    assert!(entries.len() >= 2);
    for e in &entries {
        assert_eq!(e.adapters, before.adapters, "a failed poll never changes the adapters");
    }
    let down = rig.last().reachability.unwrap();
    assert_eq!((down.reachable, down.reason.as_str()), (false, "ConnectionRefused"));

    fs.state().down = false;
    sleep(Duration::from_secs(2)).await;
    assert!(rig.last().reachability.unwrap().reachable, "back at the next sample, not the next retry");
    rig.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_tls_failure_is_reported_by_its_reason_and_keeps_the_adapters_like_an_outage() {
    let fs = dittofs(&["nfs", "smb"]);
    let rig = Rig::start(&fs, "10s");
    sleep(Duration::from_millis(500)).await;
    let before = rig.last();
    assert!(before.reachability.as_ref().unwrap().reachable);

    let expired = ApiError::Tls { failure: TlsFailure::Expired, detail: "certificate expired".into() };
    fs.state().broken = Some(expired);
    sleep(Duration::from_secs(5)).await;
    let last = rig.last();
    assert_eq!(last.adapters, before.adapters, "a TLS failure never changes the adapters");
    let reach = last.reachability.unwrap();
    assert_eq!((reach.reachable, reach.reason.as_str()), (false, "TLSExpired"));
    assert!(reach.message.unwrap().contains("certificate expired"));
    assert!(rig.metrics.polls(PollKind::Full, "tls_expired") >= 1);

    fs.state().broken = None;
    sleep(Duration::from_secs(2)).await;
    assert!(rig.last().reachability.unwrap().reachable, "trusted again at the next sample");
    rig.stop().await;
}

#[tokio::test(start_paused = true)]
async fn the_token_is_refreshed_at_80_percent_and_never_sent_expired() {
    let fs = dittofs(&["nfs"]);
    fs.state().lifetime = Duration::from_secs(20);
    let rig = Rig::start(&fs, "5s");
    sleep(Duration::from_secs(70)).await;
    assert_eq!(rig.times(Endpoint::Refresh), secs(&[16, 32, 48, 64]));
    assert_eq!(rig.fs.count(Endpoint::Login), 1, "logged in once, refreshed since");
    assert_eq!(rig.metrics.polls(PollKind::Full, "ok"), 14);
    assert_eq!(rig.metrics.failed_full_polls(), 0, "no poll failed: no expired token was sent");
    assert_eq!(rig.store.contents().mirrors, 5, "every pair is mirrored");
    rig.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_dittofs_back_with_a_fresh_database_is_provisioned_again() {
    let fs = dittofs(&["nfs"]);
    let rig = Rig::start(&fs, "30s");
    sleep(Duration::from_secs(2)).await;
    assert_eq!(fs.count(Endpoint::CreateUser), 0, "already provisioned");

    fs.state().down = true;
    sleep(Duration::from_secs(3)).await;
    fs.wipe();
    fs.state().down = false;
    assert_eq!(Instant::now() - rig.started, Duration::from_secs(5));
    sleep(Duration::from_secs(2)).await;

    // Back: the refresh (which re-reads the user) is refused, so is the login; the admin re-creates it.
    let wiped = rig.started + Duration::from_secs(5);
    let steps: Vec<(Endpoint, Option<String>)> = fs
        .state()
        .calls
        .iter()
        .filter(|c| c.at >= wiped && !matches!(c.endpoint, Endpoint::HealthReady | Endpoint::ListAdapters))
        .map(|c| (c.endpoint, c.user.clone()))
        .collect();
    let op = || Some(OPERATOR_USERNAME.to_owned());
    assert_eq!(
        steps[..5],
        [
            (Endpoint::Refresh, None),
            (Endpoint::Login, op()),
            (Endpoint::Login, Some(ADMIN.to_owned())),
            (Endpoint::CreateUser, Some(ADMIN.to_owned())),
            (Endpoint::Login, op()),
        ]
    );
    assert_eq!(fs.count(Endpoint::CreateUser), 1);
    let entry = rig.last();
    assert!(entry.reachability.as_ref().is_some_and(|r| r.reachable));
    assert!(entry.auth.as_ref().is_some_and(|a| a.authenticated));
    assert_eq!(types(&entry), ["nfs"]);
    rig.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_rejected_token_is_renewed_and_the_list_retried_in_the_same_poll() {
    let fs = dittofs(&["nfs"]);
    let rig = Rig::start(&fs, "10s");
    sleep(Duration::from_secs(1)).await;
    fs.fail_next(Endpoint::ListAdapters, ApiError::Unauthorized("Invalid or expired token".into()));
    sleep(Duration::from_secs(10)).await;
    assert_eq!(rig.times(Endpoint::ListAdapters), secs(&[0, 10, 10]));
    assert_eq!(rig.times(Endpoint::Refresh), secs(&[10]));
    assert_eq!(rig.metrics.polls(PollKind::Full, "ok"), 2);
    assert_eq!(rig.metrics.failed_full_polls(), 0);
    assert!(rig.entries().iter().all(|e| e.reachability.as_ref().is_some_and(|r| r.reachable)));
    rig.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_forbidden_list_of_a_demoted_account_is_repaired_and_listed_in_the_same_poll() {
    let fs = dittofs(&["nfs"]);
    let rig = Rig::start(&fs, "10s");
    sleep(Duration::from_secs(1)).await;
    // Demoted behind the agent's back, and DittoFS refuses the list (as it does a `user` token).
    fs.set_role_of(OPERATOR_USERNAME, "user");
    fs.fail_next(Endpoint::ListAdapters, ApiError::Forbidden("Insufficient permissions".into()));
    sleep(Duration::from_secs(10)).await;
    assert_eq!(rig.times(Endpoint::ListAdapters), secs(&[0, 10, 10]), "listed again at once");
    assert_eq!(rig.times(Endpoint::UpdateUser), secs(&[10]));
    assert_eq!(fs.role_of(OPERATOR_USERNAME).as_deref(), Some(OPERATOR_ROLE));
    assert_eq!(rig.metrics.failed_full_polls(), 0);
    let auth = rig.last().auth.unwrap();
    assert!(auth.authenticated && auth.message.unwrap().contains("\"user\""), "the repair is in the entry");

    // More 403s to the token that fresh login gave are not a role problem: the polls fail (and retry on
    // their schedule) without a login each.
    for _ in 0..2 {
        fs.fail_next(Endpoint::ListAdapters, ApiError::Forbidden("something else".into()));
    }
    let logins = fs.count(Endpoint::Login);
    // The poll due at 20 s, its retry 1 s later, the next 2 s later.
    sleep(Duration::from_secs(13)).await;
    assert_eq!(fs.count(Endpoint::Login), logins, "no login per refusal");
    assert_eq!(rig.metrics.polls(PollKind::Full, "forbidden"), 2);
    let reasons: Vec<_> = rig.entries().iter().filter_map(|e| e.reachability.clone()).map(|r| r.reason).collect();
    assert_eq!(reasons[reasons.len() - 2..], ["Forbidden", "Reachable"], "{reasons:?}");
    rig.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_failed_status_write_is_retried_with_jittered_growing_gaps_until_it_lands() {
    let fs = dittofs(&["nfs"]);
    // A long interval: no full poll comes between the retries.
    let rig = Rig::start(&fs, "10m");
    sleep(Duration::from_millis(500)).await;
    assert_eq!(rig.entries().len(), 1);

    rig.status.down.store(true, Ordering::SeqCst);
    serve(&fs, &["nfs", "smb"]);
    sleep(Duration::from_secs(40)).await;
    let attempts: Vec<Duration> =
        rig.status.attempts.lock().unwrap().iter().skip(1).map(|t| *t - rig.started).collect();
    let retries = gaps(&attempts);
    assert!(retries.len() >= 5, "{attempts:?}");
    for (n, gap) in retries.iter().take(5).enumerate() {
        // The n-th retry waits [0.5 s·2ⁿ, 2 × that], never above 30 s.
        let base = super::MIN_WRITE_RETRY.saturating_mul(1 << n).min(super::MAX_WRITE_RETRY);
        assert!(*gap >= base && *gap <= (base * 2).min(super::MAX_WRITE_RETRY), "retry {n}: {gap:?} ({retries:?})");
    }
    assert!(retries.iter().all(|g| *g <= super::MAX_WRITE_RETRY), "{retries:?}");
    let unjittered = retries.iter().take(5).enumerate().all(|(n, g)| *g == super::MIN_WRITE_RETRY * (1 << n));
    assert!(!unjittered, "jittered: agents failing together must not retry in step: {retries:?}");
    assert_eq!(rig.entries().len(), 1, "nothing landed during the outage");

    rig.status.down.store(false, Ordering::SeqCst);
    sleep(super::MAX_WRITE_RETRY).await;
    assert_eq!(rig.entries().len(), 2, "the pending change lands at the next retry, once");
    assert_eq!(types(&rig.last()), ["nfs", "smb"]);
    rig.stop().await;
}
