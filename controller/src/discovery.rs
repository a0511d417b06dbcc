//! Whether the cluster serves the prometheus-operator's ServiceMonitor API, which the controller uses only
//! when it is there.
//!
//! Asked of the apiserver's discovery (`GET /apis/monitoring.coreos.com/v1`) once before a leadership term
//! starts reconciling, so no reconcile of the term guesses, then every [`Config::api_rediscovery`]
//! (5 minutes by default): a request per period, never one per reconcile. While the API is served, a
//! metadata watch of the controller's ServiceMonitors feeds their cache (the same as every other child);
//! while it is not, there is no watch to fail. A change either way reconciles every server, so one that asks
//! for a monitor gets it within a period of the prometheus-operator's CRDs being installed, without a
//! restart of the controller.
//!
//! [`Config::api_rediscovery`]: crate::Config::api_rediscovery

use std::time::Duration;

use futures::{Stream, StreamExt};
use kube::Client;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// `monitoring.coreos.com/v1`, the group version of ServiceMonitor.
pub const SERVICE_MONITOR_GROUP_VERSION: &str = "monitoring.coreos.com/v1";
/// The resource name of ServiceMonitor in that group version.
const SERVICE_MONITOR_RESOURCE: &str = "servicemonitors";
/// How soon to ask again after discovery itself failed (the answer is still unknown).
const RETRY_UNKNOWN: Duration = Duration::from_secs(5);

/// What the controller knows of an optional API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Served {
    /// Discovery has not answered yet (the apiserver failed the request).
    Unknown,
    /// The apiserver serves it.
    Yes,
    /// The apiserver does not serve it (its CRD is not installed).
    No,
}

/// Whether the apiserver serves ServiceMonitors: a 404 for the group version means not; any other
/// failure is an error (the answer stays what it was).
pub async fn service_monitors_served(client: &Client) -> Result<bool, kube::Error> {
    match client.list_api_group_resources(SERVICE_MONITOR_GROUP_VERSION).await {
        Ok(list) => Ok(list.resources.iter().any(|r| r.name == SERVICE_MONITOR_RESOURCE)),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(false),
        Err(e) => Err(e),
    }
}

/// Asks once and records the answer in `state`; true if it changed.
pub async fn refresh(client: &Client, state: &watch::Sender<Served>) -> bool {
    match service_monitors_served(client).await {
        Ok(served) => {
            let served = if served { Served::Yes } else { Served::No };
            let changed = state.send_if_modified(|s| std::mem::replace(s, served) != served);
            if changed {
                tracing::info!(api = SERVICE_MONITOR_GROUP_VERSION, ?served, "ServiceMonitor API");
            }
            changed
        }
        Err(error) => {
            tracing::warn!(%error, api = SERVICE_MONITOR_GROUP_VERSION, "could not ask whether ServiceMonitors are served");
            false
        }
    }
}

/// One item each time the answer changes, asking every `every` (sooner while it is unknown) until `term`
/// is cancelled: the trigger of a reconcile of every server.
pub fn changes(
    client: Client,
    state: watch::Sender<Served>,
    every: Duration,
    term: CancellationToken,
) -> impl Stream<Item = ()> + Send + 'static {
    futures::stream::unfold((client, state, term), move |(client, state, term)| async move {
        loop {
            let wait = if *state.borrow() == Served::Unknown { RETRY_UNKNOWN.min(every) } else { every };
            tokio::select! {
                () = term.cancelled() => return None,
                () = tokio::time::sleep(wait) => {}
            }
            if refresh(&client, &state).await {
                return Some(((), (client, state, term)));
            }
        }
    })
}

/// The items of the stream `open` makes, while `served` says the API is served: opened again each time
/// it comes back (a watch of an API that went away would only fail), nothing while it is not. Ends when
/// the sender is dropped.
pub fn while_served<S, F>(served: watch::Receiver<Served>, open: F) -> impl Stream<Item = S::Item> + Send + 'static
where
    S: Stream + Send + 'static,
    S::Item: Send,
    F: Fn() -> S + Send + 'static,
{
    futures::stream::unfold((served, open), |(mut served, open)| async move {
        // A closed channel keeps its last value: without this check a last `Yes` would open and close
        // periods forever.
        served.has_changed().ok()?;
        served.wait_for(|s| *s == Served::Yes).await.ok()?;
        let mut gone = served.clone();
        let until_gone = async move {
            let _ = gone.wait_for(|s| *s != Served::Yes).await;
        };
        let period = open().take_until(until_gone);
        Some((period, (served, open)))
    })
    .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_inner_stream_runs_only_while_the_api_is_served() {
        let (tx, rx) = watch::channel(Served::Unknown);
        let opened = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let count = opened.clone();
        // Each period: its number, then nothing until the period ends.
        let open = move || {
            let n = count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            futures::stream::once(async move { n }).chain(futures::stream::pending())
        };
        let mut items = Box::pin(while_served(rx, open));
        let next = |items: &mut std::pin::Pin<Box<_>>| {
            futures::FutureExt::now_or_never(futures::StreamExt::next(items)).flatten()
        };
        assert_eq!(next(&mut items), None, "nothing while unknown");
        tx.send_replace(Served::No);
        assert_eq!(next(&mut items), None, "nothing while not served");
        tx.send_replace(Served::Yes);
        assert_eq!(items.next().await, Some(0));
        tx.send_replace(Served::No);
        assert_eq!(next(&mut items), None, "the period ended");
        tx.send_replace(Served::Yes);
        assert_eq!(items.next().await, Some(1), "a new period opens the stream again");
        drop(tx);
        assert_eq!(items.next().await, None, "ends with the sender");
    }
}
