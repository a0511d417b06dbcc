//! The watches behind the scale bench's convergence figures: one client watches the adapter Services and
//! the DittoServers, every event updates the shared [`Convergence`], and waiters are woken by each update
//! (a `tokio::sync::watch` channel) instead of polling the apiserver.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use dittofs_api::{DittoServer, labels};
use futures::StreamExt as _;
use k8s_openapi::api::core::v1::Service;
use kube::{
    Api,
    runtime::{WatchStreamExt as _, watcher},
};
use tokio::sync::watch;

use super::converge::{Convergence, Seen};

/// The watches, feeding a [`Convergence`] that waiters (and the agents, for generations and expectations)
/// share through a `tokio::sync::watch` channel.
#[derive(Debug)]
pub struct Tracker {
    state: Arc<watch::Sender<Convergence>>,
    task: tokio::task::JoinHandle<()>,
}

impl Tracker {
    /// Starts watching the adapter Services and DittoServers of `ns`, waiting for `servers`.
    pub fn start(client: kube::Client, ns: &str, servers: &[String]) -> Tracker {
        let mut initial = Convergence::default();
        servers.iter().for_each(|s| initial.track(s));
        let state = Arc::new(watch::Sender::new(initial));
        let adapter_services = format!("{}={}", labels::ADAPTER_SERVICE_LABEL, labels::LABEL_TRUE);
        let svcs = watcher(
            Api::<Service>::namespaced(client.clone(), ns),
            watcher::Config::default().labels(&adapter_services),
        )
        .default_backoff()
        .map(|e| e.map(|event| Seen::Service(Box::new(event))))
        .boxed();
        let dss = watcher(Api::<DittoServer>::namespaced(client, ns), watcher::Config::default())
            .default_backoff()
            .map(|e| e.map(|event| Seen::Server(Box::new(event))))
            .boxed();
        let feed = state.clone();
        let task = tokio::spawn(async move {
            let mut events = futures::stream::select(svcs, dss);
            while let Some(event) = events.next().await {
                match event {
                    Ok(seen) => feed.send_modify(|s| s.on(seen, Instant::now())),
                    // The watcher lists again after its back-off; the relist settles the state.
                    Err(e) => eprintln!("bench-scale: watch error (retried): {e}"),
                }
            }
        });
        Tracker { state, task }
    }

    /// The shared state, for the agents to read generations and record expectations and failures.
    pub fn state(&self) -> Arc<watch::Sender<Convergence>> {
        self.state.clone()
    }

    /// Waits (event by event) until `f` gives a value, a fatal error was recorded, or `timeout` passes.
    pub async fn wait_for<T>(
        &self,
        what: &str,
        timeout: Duration,
        f: impl Fn(&Convergence) -> Option<T>,
    ) -> anyhow::Result<T> {
        let mut rx = self.state.subscribe();
        let waited = tokio::time::timeout(timeout, rx.wait_for(|s| s.failed().is_some() || f(s).is_some())).await;
        let state = match waited {
            Ok(Ok(state)) => state,
            Ok(Err(_)) => anyhow::bail!("the watches stopped while waiting for {what}"),
            Err(_) => {
                let s = self.state.borrow();
                let example = s.example_unconverged().unwrap_or_default();
                anyhow::bail!("timed out after {timeout:?} waiting for {what}; e.g. {example}")
            }
        };
        if let Some(why) = state.failed() {
            anyhow::bail!("while waiting for {what}: {why}");
        }
        f(&state).ok_or_else(|| anyhow::anyhow!("{what}: the state changed while it was read"))
    }

    /// Waits until every tracked server has converged; returns the time from `since` until the last one
    /// did. Prints progress at every tenth; on timeout, names how many did not converge and one of them.
    pub async fn wait_all(&self, label: &str, since: Instant, timeout: Duration) -> anyhow::Result<Duration> {
        let total = self.state.borrow().tracked_count();
        let step = (total / 10).max(1);
        let deadline = since + timeout;
        let mut next = step.min(total);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let what = format!("{label}: {next} of {total} servers converged");
            let waited = self.wait_for(&what, left, |s| (s.converged_count() >= next).then_some(())).await;
            let done = self.state.borrow().converged_count();
            if let Err(e) = waited {
                anyhow::bail!("{label}: {} of {total} servers did not converge: {e:#}", total - done);
            }
            eprintln!("bench-scale: {label}: {done}/{total} converged after {:.1} s", since.elapsed().as_secs_f64());
            if let Some(at) = self.state.borrow().all_converged_at() {
                return Ok(at.saturating_duration_since(since));
            }
            next = ((done / step + 1) * step).min(total);
        }
    }
}

impl Drop for Tracker {
    fn drop(&mut self) {
        self.task.abort();
    }
}
