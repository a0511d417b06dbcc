//! [`Controller`]: leader election around the kube-runtime controller of `DittoServer` and its children.
//!
//! Only the leader runs the watches and reconciles. Losing the Lease stops the controller (in-flight
//! reconciles finish) and makes the instance a candidate again; shutdown releases the Lease.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use backon::ExponentialBuilder;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Service, ServiceAccount};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::Api;
use kube::core::PartialObjectMeta;
use kube::runtime::PredicateConfig;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::utils::ResetTimerBackoff;
use kube::runtime::watcher::ExponentialBackoff;
use kube::runtime::{Controller as KubeController, WatchStreamExt, controller, reflector, watcher};
use kube::{Client, Resource};
use serde::de::DeserializeOwned;
use tokio_util::sync::CancellationToken;

use dittofs_api::constants::CONTROLLER_NAME;
use dittofs_api::labels::{INSTANCE_LABEL, MANAGED_BY_LABEL};
use dittofs_telemetry::Health;

use crate::apply::Applier;
use crate::cache::{Feed, child_caches};
use crate::config::Config;
use crate::desired::service_monitor::ServiceMonitor;
use crate::discovery::{self, Served};
use crate::error::Error;
use crate::events::Events;
use crate::leader::LeaderElector;
use crate::metrics::Metrics;
use crate::raw::{RawDittoServer, trigger_hash};
use crate::reconcile::{Context, error_policy, reconcile};
use crate::synced::{Synced, mark_synced, synced};

/// One controller instance.
#[derive(Clone)]
pub struct Controller {
    client: Client,
    config: Config,
    metrics: Metrics,
    health: Arc<Health>,
    leading: Arc<AtomicBool>,
}

impl std::fmt::Debug for Controller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Controller")
            .field("config", &self.config)
            .field("leading", &self.is_leader())
            .finish_non_exhaustive()
    }
}

impl Controller {
    /// An instance acting through `client`.
    pub fn new(client: Client, config: Config) -> Self {
        Self { client, config, metrics: Metrics::default(), health: Arc::default(), leading: Arc::default() }
    }

    /// Its metrics (register them in a registry to export them).
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Its readiness: a leader is ready once its DittoServer cache has synced, a standby once it
    /// has read the Lease.
    pub fn health(&self) -> Arc<Health> {
        self.health.clone()
    }

    /// Whether this instance leads right now.
    pub fn is_leader(&self) -> bool {
        self.leading.load(Ordering::SeqCst)
    }

    /// Its identity (Lease holder, Events' reporting instance).
    pub fn identity(&self) -> &str {
        &self.config.identity
    }

    /// Runs until `shutdown` is cancelled. With leader election, campaigns first and steps down
    /// (then campaigns again) if the Lease is lost.
    pub async fn run(&self, shutdown: CancellationToken) -> Result<(), Error> {
        let Some(le) = self.config.leader_election.clone() else {
            self.lead(shutdown).await;
            return Ok(());
        };
        let mut elector = LeaderElector::new(self.client.clone(), le, self.config.identity.clone());
        loop {
            let health = self.health.clone();
            if !elector.acquire(&shutdown, || health.set_ready(true)).await {
                return Ok(());
            }
            tracing::info!(identity = %self.config.identity, "leading");
            self.metrics.leader_acquisitions.inc();
            let term = shutdown.child_token();
            let hold = async {
                let graceful = elector.hold(&term).await;
                term.cancel();
                graceful
            };
            let ((), graceful) = tokio::join!(self.lead(term.clone()), hold);
            if shutdown.is_cancelled() {
                elector.release().await;
                return Ok(());
            }
            if !graceful {
                tracing::warn!("lost the leader Lease; stopped reconciling and campaigning again");
            }
        }
    }

    /// One leadership term: the watches and reconciles, until `term` is cancelled.
    async fn lead(&self, term: CancellationToken) {
        self.leading.store(true, Ordering::SeqCst);
        self.metrics.leader.set(1);
        let (stores, writers) = child_caches();
        let applier = Applier::new(self.client.clone(), stores, self.metrics.clone());
        let events = Events::new(self.client.clone(), &self.config.identity);
        // Asked before the first reconcile of the term, so none reports a missing API that is there.
        let (api_state, service_monitor_api) = tokio::sync::watch::channel(Served::Unknown);
        discovery::refresh(&self.client, &api_state).await;
        let ctx = Arc::new(Context::new(
            self.client.clone(),
            applier.clone(),
            events,
            self.metrics.clone(),
            self.config.agent_defaults(),
            service_monitor_api.clone(),
            term.clone(),
        ));
        let api_changes = discovery::changes(self.client.clone(), api_state, self.config.api_rediscovery, term.clone());

        // Children map to their server by owner reference *and* by instance label: a child someone
        // orphaned (or took over) must still wake its server, which then reports it as not owned.
        // Not filtered by generation: the agents' status reports must trigger reconciles too; only their
        // heartbeats (a new lastPollTime and nothing else) do not.
        let (store, writer) = reflector::store();
        let (mark, synced) = synced();
        let servers = watcher(self.api::<RawDittoServer>(), watcher::Config::default())
            .inspect_err(|e| watch_failed("DittoServer", e))
            .backoff(watch_backoff())
            .modify(crate::raw::slim)
            .reflect(writer);
        let traces = ctx.traces();
        let servers = mark_synced(servers, mark)
            .applied_objects()
            .predicate_filter(trigger_hash, PredicateConfig::default())
            .inspect_ok(move |raw| traces.arrived(raw));
        let controller = KubeController::for_stream(servers, store.clone())
            .watches_stream(self.children::<StatefulSet>(writers.statefulsets, &applier), servers_of)
            .watches_stream(self.children::<Service>(writers.services, &applier), servers_of)
            .watches_stream(self.children::<ConfigMap>(writers.config_maps, &applier), servers_of)
            .watches_stream(self.children::<NetworkPolicy>(writers.network_policies, &applier), servers_of)
            .watches_stream(self.children::<ServiceAccount>(writers.service_accounts, &applier), servers_of)
            .watches_stream(self.children::<Role>(writers.roles, &applier), servers_of)
            .watches_stream(self.children::<RoleBinding>(writers.role_bindings, &applier), servers_of)
            .watches_stream(self.service_monitors(writers.service_monitors, service_monitor_api), servers_of)
            .with_config(controller::Config::default().concurrency(self.config.max_concurrent_reconciles))
            .reconcile_all_on(once_synced(synced.clone()))
            // The ServiceMonitor API came or went: servers asking for a monitor get it, or the condition.
            .reconcile_all_on(api_changes)
            .trigger_backoff(NoPause)
            .graceful_shutdown_on(term.clone().cancelled_owned());

        let health = self.health.clone();
        let ready = async move {
            if synced.wait().await {
                health.set_ready(true);
                tracing::info!("DittoServer cache synced; ready");
            }
        };
        let run = controller.run(reconcile, error_policy, ctx).for_each(|result| async move {
            if let Err(e) = result {
                tracing::debug!(error = %e, "controller event");
            }
        });
        tokio::select! {
            () = run => {}
            // A term can end before the first sync (lost Lease, shutdown).
            () = async { ready.await; std::future::pending::<()>().await } => {}
        }
        self.metrics.leader.set(0);
        self.leading.store(false, Ordering::SeqCst);
    }

    fn api<K>(&self) -> Api<K>
    where
        K: Resource<DynamicType = (), Scope = NamespaceResourceScope>,
    {
        match &self.config.namespace {
            Some(ns) => Api::namespaced(self.client.clone(), ns),
            None => Api::all(self.client.clone()),
        }
    }

    /// A metadata-only watch of one child kind, limited to objects this controller labels, feeding that
    /// kind's cache. A change this controller's own apply
    /// made (the watch shows the version the apply answered with) does not reconcile the server again: the
    /// reconcile that wrote it knew the result. Every other change does, deletions included.
    fn children<K>(
        &self,
        feed: Feed<K>,
        applier: &Applier,
    ) -> impl futures::Stream<Item = Result<PartialObjectMeta<K>, watcher::Error>> + Send + 'static
    where
        K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
            + Clone
            + DeserializeOwned
            + std::fmt::Debug
            + Send
            + Sync
            + 'static,
    {
        let reflected = watcher(self.api::<PartialObjectMeta<K>>(), labelled())
            .inspect_err(|e| watch_failed(&K::kind(&()), e))
            .backoff(watch_backoff())
            .modify(crate::cache::slim)
            .reflect(feed.writer);
        let applier = applier.clone();
        let kind = K::kind(&()).into_owned();
        mark_synced(reflected, feed.synced)
            .try_filter(move |event| {
                let own = matches!(event, watcher::Event::Apply(obj) if applier.own_write(&kind, &obj.metadata));
                std::future::ready(!own)
            })
            .touched_objects()
    }

    /// [`Controller::children`] for ServiceMonitors, whose API the cluster may not serve: the watch runs
    /// only while discovery says it does, and starts over (a fresh list) each time the API comes back.
    fn service_monitors(
        &self,
        feed: Feed<ServiceMonitor>,
        served: tokio::sync::watch::Receiver<Served>,
    ) -> impl futures::Stream<Item = Result<PartialObjectMeta<ServiceMonitor>, watcher::Error>> + Send + 'static {
        let api = self.api::<PartialObjectMeta<ServiceMonitor>>();
        let reflected = discovery::while_served(served, move || watcher(api.clone(), labelled()))
            .inspect_err(|e| watch_failed("ServiceMonitor", e))
            .backoff(watch_backoff())
            .modify(crate::cache::slim)
            .reflect(feed.writer);
        mark_synced(reflected, feed.synced).touched_objects()
    }
}

/// The watch configuration of the children: only objects this controller labels.
fn labelled() -> watcher::Config {
    watcher::Config::default().labels(&format!("{MANAGED_BY_LABEL}={CONTROLLER_NAME}"))
}

/// The retry delays of the controller's watches: 250 ms doubling to [`MAX_WATCH_BACKOFF`], with jitter,
/// back to the start after a minute without failure (or at the next event).
///
/// kube-runtime's default (client-go's: 800 ms doubling to 30 s, reset 120 s after the last failure) is
/// kind to a struggling apiserver but slow to see it back. One restart fails a watch several times —
/// connections refused while it is down, watches it does not answer while it starts ([`WATCH_DEADLINE`](dittofs_telemetry::kube_client::WATCH_DEADLINE))
/// — and a quiet watch then waits 25–30 s between attempts: the fault suite saw agent reports ignored for
/// a minute after a restart. The controller has nine watches, whatever the number of servers, so a
/// 5 s ceiling costs an apiserver nothing.
fn watch_backoff() -> ResetTimerBackoff<ExponentialBackoff> {
    let delays = ExponentialBuilder::new()
        .with_min_delay(Duration::from_millis(250))
        .with_max_delay(MAX_WATCH_BACKOFF)
        .with_factor(2.0)
        .with_jitter()
        // Without backon's `std` feature every watch would share one fixed jitter seed.
        .with_jitter_seed(rand::random())
        .without_max_times();
    ResetTimerBackoff::new(ExponentialBackoff::from(delays), Duration::from_secs(60))
}

/// The backoff kube-runtime puts on the merged stream of every watch: none.
///
/// By default kube-runtime pauses *all* watches after an error of *any* of them, with client-go's backoff,
/// reset only by the next event. After an apiserver restart each of the nine watches meets `410 Gone` in
/// turn, so each error lengthened one pause of everything: 3.5, 11, 22, 38, 58 s in the fault suite, during
/// which no agent report reached a reconcile. Each watch already backs off on its own ([`watch_backoff`]);
/// the errors of one must not hold the events of the others.
struct NoPause;

impl Iterator for NoPause {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        Some(Duration::ZERO)
    }
}

impl kube::runtime::utils::Backoff for NoPause {
    fn reset(&mut self) {}
}

/// The longest pause between two attempts of a failing watch.
pub const MAX_WATCH_BACKOFF: Duration = Duration::from_secs(5);

/// A failed list or watch leaves that cache (and the reconciles it triggers) behind until a retry works:
/// worth a warning, not a debug line.
fn watch_failed(kind: &str, error: &watcher::Error) {
    tracing::warn!(%kind, %error, "watch failed; retrying with backoff");
}

/// One item as soon as the DittoServer cache has synced: a bulk reconcile of every server at the start of
/// a term. kube-runtime also reconciles each object of the initial list; the bulk trigger is a second
/// chance that costs a few unchanged applies per server at start.
fn once_synced(synced: Synced) -> impl futures::Stream<Item = ()> + Send + 'static {
    futures::stream::once(async move {
        synced.wait().await;
    })
}

/// The servers a child event concerns: its controller owner of our kind, and the server its instance
/// label names (the same one, unless someone changed the object; the cache keeps that label on adapter
/// objects and on children whose owner reference is gone, see [`crate::cache::slim`]).
fn servers_of<K: Resource>(child: PartialObjectMeta<K>) -> Vec<ObjectRef<RawDittoServer>> {
    let meta = child.meta();
    let Some(ns) = meta.namespace.as_deref() else { return Vec::new() };
    let (kind, api_version) = (RawDittoServer::kind(&()), RawDittoServer::api_version(&()));
    let ours = |o: &&OwnerReference| o.controller == Some(true) && o.kind == kind && o.api_version == api_version;
    let by_owner = meta.owner_references.iter().flatten().filter(ours).map(|o| o.name.as_str());
    let by_label = meta.labels.as_ref().and_then(|l| l.get(INSTANCE_LABEL)).map(String::as_str);
    let mut names: Vec<&str> = by_owner.chain(by_label).collect();
    names.sort_unstable();
    names.dedup();
    names.into_iter().map(|name| ObjectRef::new(name).within(ns)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn child(owner: Option<(&str, &str)>, instance: Option<&str>) -> PartialObjectMeta<Service> {
        let owner_references = owner.map(|(kind, name)| {
            vec![OwnerReference {
                api_version: "dittofs.dittofs.com/v1alpha1".into(),
                kind: kind.into(),
                name: name.into(),
                controller: Some(true),
                ..Default::default()
            }]
        });
        let labels = instance.map(|i| [(INSTANCE_LABEL.to_owned(), i.to_owned())].into());
        let metadata = ObjectMeta { namespace: Some("ns".into()), owner_references, labels, ..Default::default() };
        PartialObjectMeta { metadata, ..Default::default() }
    }

    fn names(refs: Vec<ObjectRef<RawDittoServer>>) -> Vec<String> {
        refs.into_iter().map(|r| format!("{}/{}", r.namespace.unwrap_or_default(), r.name)).collect()
    }

    #[test]
    fn a_child_wakes_its_owner_and_the_server_its_label_names() {
        assert_eq!(names(servers_of(child(Some(("DittoServer", "fs")), Some("fs")))), ["ns/fs"]);
        // Orphaned (or taken over): the label still wakes the server, which then sees it is not its own.
        assert_eq!(names(servers_of(child(None, Some("fs")))), ["ns/fs"]);
        assert_eq!(names(servers_of(child(Some(("DittoServer", "a")), Some("b")))), ["ns/a", "ns/b"]);
        // Another kind's controller reference is not a server.
        assert!(servers_of(child(Some(("Deployment", "fs")), None)).is_empty());
    }
}
