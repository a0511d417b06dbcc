//! What a client sees exposed, from watches instead of polls: the moment the adapter Services,
//! NetworkPolicies and the StatefulSet's ports of the bench's server first match, to the event that made them.
//!
//! Polling every 25 ms (the tests' `converge`) rounds each figure up by half a poll on average and adds three
//! requests per poll to the apiserver being measured; a watch is what a client of the cluster would use.

use std::collections::BTreeMap;
use std::time::Instant;

use dittofs_api::labels;
use futures::StreamExt;
use k8s_openapi::api::{apps::v1::StatefulSet, core::v1::Service, networking::v1::NetworkPolicy};
use kube::runtime::watcher::{self, Event, watcher};
use kube::{Api, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use tokio::sync::watch;

use crate::scenario::{CONVERGE_TIMEOUT, NS, SERVER, Seen, seen_of};

/// The watched objects by kind and name.
#[derive(Default)]
struct Objects {
    services: BTreeMap<String, Service>,
    policies: BTreeMap<String, NetworkPolicy>,
    statefulsets: BTreeMap<String, StatefulSet>,
}

/// One watch event, of any of the three kinds (short-lived, one at a time: its size does not matter).
#[allow(clippy::large_enum_variant)]
enum Change {
    Service(Event<Service>),
    Policy(Event<NetworkPolicy>),
    StatefulSet(Event<StatefulSet>),
}

fn fold<K: Resource + Clone>(map: &mut BTreeMap<String, K>, event: Event<K>) {
    match event {
        Event::Apply(obj) | Event::InitApply(obj) => {
            map.insert(obj.name_any(), obj);
        }
        Event::Delete(obj) => {
            map.remove(&obj.name_any());
        }
        // A relist restarts from scratch: the objects come again as InitApply.
        Event::Init => map.clear(),
        Event::InitDone => {}
    }
}

impl Objects {
    fn apply(&mut self, change: Change) {
        match change {
            Change::Service(e) => fold(&mut self.services, e),
            Change::Policy(e) => fold(&mut self.policies, e),
            Change::StatefulSet(e) => fold(&mut self.statefulsets, e),
        }
    }

    fn seen(&self) -> Seen {
        let svcs: Vec<Service> = self.services.values().cloned().collect();
        let nps: Vec<NetworkPolicy> = self.policies.values().cloned().collect();
        seen_of(&svcs, &nps, self.statefulsets.get(SERVER))
    }
}

fn stream<K>(api: Api<K>, config: watcher::Config) -> impl futures::Stream<Item = Event<K>> + Send
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug + Send + 'static,
{
    watcher(api, config).filter_map(|e| async move { e.ok() })
}

/// The exposure of the bench's server as its watches see it: what, and since when.
#[derive(Debug)]
pub struct Exposure {
    seen: watch::Receiver<(Seen, Instant)>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Exposure {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Exposure {
    /// Starts the three watches (Services and policies by their adapter labels, the StatefulSet by name).
    pub fn watch(client: &kube::Client) -> Exposure {
        let svcs = Api::<Service>::namespaced(client.clone(), NS);
        let nps = Api::<NetworkPolicy>::namespaced(client.clone(), NS);
        let sts = Api::<StatefulSet>::namespaced(client.clone(), NS);
        let by_labels = |selector: String| watcher::Config::default().labels(&selector);
        let changes = futures::stream::select(
            stream(svcs, by_labels(labels::adapter_services_selector(SERVER))).map(Change::Service),
            futures::stream::select(
                stream(nps, by_labels(labels::adapter_network_policies_selector(SERVER))).map(Change::Policy),
                stream(sts, watcher::Config::default().fields(&format!("metadata.name={SERVER}")))
                    .map(Change::StatefulSet),
            ),
        );
        let (tx, seen) = watch::channel((Seen::new(), Instant::now()));
        let task = tokio::spawn(async move {
            let mut objects = Objects::default();
            let mut changes = std::pin::pin!(changes);
            while let Some(change) = changes.next().await {
                let at = Instant::now();
                objects.apply(change);
                let now = objects.seen();
                tx.send_if_modified(|(seen, since)| {
                    let modified = *seen != now;
                    if modified {
                        (*seen, *since) = (now, at);
                    }
                    modified
                });
            }
        });
        Exposure { seen, task }
    }

    /// Waits until exactly `want` (type → port) is exposed; returns when the event that made it so arrived.
    pub async fn matched(&mut self, want: &BTreeMap<String, i32>) -> anyhow::Result<Instant> {
        let expected: Seen = want.iter().map(|(k, p)| (k.clone(), (Some(*p), Some(*p), Some(*p)))).collect();
        let found = tokio::time::timeout(CONVERGE_TIMEOUT, self.seen.wait_for(|(seen, _)| *seen == expected))
            .await
            .map(|state| state.map(|s| s.1));
        match found {
            Ok(Ok(at)) => Ok(at),
            Ok(Err(_)) => anyhow::bail!("the exposure watches ended"),
            Err(_) => anyhow::bail!(
                "Kubernetes did not expose {expected:?} within {CONVERGE_TIMEOUT:?}; it has {:?}",
                self.seen.borrow().0
            ),
        }
    }
}
