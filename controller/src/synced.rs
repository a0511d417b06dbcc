//! Cache readiness that any number of tasks can wait for at once.
//!
//! kube-runtime's `Store::wait_until_ready` is backed by one `futures` oneshot receiver, and a oneshot
//! keeps the waker of the *last* future that polled it. When several reconciles wait for the same cache
//! at the start of a leadership term, only the last one is woken when the cache fills; the others wait
//! forever, each holding its server's reconcile slot, so no later event of that server is handled either.
//! The fault suite caught it as a new leader that never finished a server (one hand-over in ten: the
//! caches were still listing when the first reconciles reached them). Here a `tokio::sync::watch` flag,
//! set from the watch stream itself once the reflector has applied the initial list, wakes every waiter.
//! Only kube-runtime's own runner still waits on the DittoServer store, alone.

use futures::{Stream, TryStreamExt};
use kube::runtime::watcher;
use tokio::sync::watch;

/// Whether a cache has received its initial list; cheap to clone, any number of waiters.
#[derive(Debug, Clone)]
pub struct Synced(watch::Receiver<bool>);

/// The marking side of a [`Synced`], consumed by [`mark_synced`].
#[derive(Debug)]
pub struct MarkSynced(watch::Sender<bool>);

/// A flag not synced yet, and the side that marks it.
pub fn synced() -> (MarkSynced, Synced) {
    let (tx, rx) = watch::channel(false);
    (MarkSynced(tx), Synced(rx))
}

impl Synced {
    /// Waits until the cache has its initial list: true, or false if its watch ended before that (the
    /// term is over).
    pub async fn wait(&self) -> bool {
        self.0.clone().wait_for(|synced| *synced).await.is_ok()
    }

    /// Whether the cache has its initial list now.
    pub fn is_synced(&self) -> bool {
        *self.0.borrow()
    }
}

/// Passes a reflected watch stream on unchanged, marking the flag at its first `InitDone`. Place it
/// after `reflect(writer)`: the reflector has then put the whole list into the store.
pub fn mark_synced<K, S>(stream: S, mark: MarkSynced) -> impl Stream<Item = Result<watcher::Event<K>, watcher::Error>>
where
    S: Stream<Item = Result<watcher::Event<K>, watcher::Error>>,
{
    stream.inspect_ok(move |event| {
        if matches!(event, watcher::Event::InitDone) {
            mark.0.send_replace(true);
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;
    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::runtime::{WatchStreamExt, reflector};
    use std::time::Duration;

    /// Two reconciles waiting at once, as at a term's start.
    async fn both_woken(wait: impl Fn() -> tokio::task::JoinHandle<()>, init: impl FnOnce()) -> bool {
        let (first, second) = (wait(), wait());
        // Let both register before the cache fills.
        tokio::time::sleep(Duration::from_millis(50)).await;
        init();
        let both = async { first.await.and(second.await) };
        tokio::time::timeout(Duration::from_secs(2), both).await.is_ok()
    }

    fn init_done() -> futures::stream::Iter<std::vec::IntoIter<Result<watcher::Event<ConfigMap>, watcher::Error>>> {
        futures::stream::iter(vec![Ok(watcher::Event::Init), Ok(watcher::Event::InitDone)])
    }

    #[tokio::test]
    async fn every_waiter_is_woken() {
        let (mark, synced) = synced();
        let (store, writer) = reflector::store::<ConfigMap>();
        let waiter = || {
            let synced = synced.clone();
            tokio::spawn(async move { assert!(synced.wait().await) })
        };
        let fed = mark_synced(init_done().reflect(writer), mark);
        let woken = both_woken(waiter, || drop(tokio::spawn(fed.for_each(|_| async {})))).await;
        assert!(woken, "a waiter was never woken");
        assert!(synced.is_synced());
        assert!(store.state().is_empty(), "the list (empty here) is in the store");
    }

    #[tokio::test]
    async fn a_watch_that_ends_before_its_list_releases_the_waiters() {
        let (mark, synced) = synced();
        drop(mark);
        assert!(!synced.wait().await);
    }

    /// Why this module exists: kube-runtime's readiness wakes only the last of two waiting tasks. When this
    /// starts failing, kube-runtime fixed it, and `Synced` can go.
    #[tokio::test]
    async fn kube_runtime_store_readiness_loses_a_waiter() {
        let (store, writer) = reflector::store::<ConfigMap>();
        let waiter = || {
            let store = store.clone();
            tokio::spawn(async move { store.wait_until_ready().await.expect("writer kept") })
        };
        let fed = init_done().reflect(writer);
        let woken = both_woken(waiter, || drop(tokio::spawn(fed.for_each(|_| async {})))).await;
        assert!(!woken, "kube-runtime now wakes every waiter of Store::wait_until_ready");
    }
}
