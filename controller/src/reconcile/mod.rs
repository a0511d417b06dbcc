//! The reconcile pipeline: observe (IO) → settle values (the random source) → desired (pure) → apply (SSA)
//! → status (written only on change).

pub mod adapters;
pub mod children;
pub mod observe;
pub mod status;
pub mod values;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use kube::{Client, ResourceExt};
use serde_json::json;

use dittofs_api::conditions::events as reasons;
use dittofs_api::constants::GO_OPERATOR_FINALIZER;

use crate::apply::Applier;
use crate::error::{Error, backoff};
use crate::events::Events;
use crate::metrics::Metrics;
use crate::raw::RawDittoServer;

/// A safety-net resync: every change is watched, so this only repairs what a lost watch event hid.
pub const RESYNC: Duration = Duration::from_secs(30 * 60);
/// Retry while a referenced Secret is missing (it is not owned, hence not watched).
pub const MISSING_SECRET_RETRY: Duration = Duration::from_secs(30);

/// Shared by every reconcile.
pub struct Context {
    /// The client.
    pub client: Client,
    /// Server-side apply of children.
    pub applier: Applier,
    /// Event publisher.
    pub events: Events,
    /// Metrics.
    pub metrics: Metrics,
    /// Default agent image (`--agent-image`).
    pub agent_image: String,
    /// Consecutive transient failures per server (for the backoff).
    failures: Mutex<HashMap<ObjectRef<RawDittoServer>, u32>>,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context").field("agent_image", &self.agent_image).finish_non_exhaustive()
    }
}

impl Context {
    /// A context for one leadership term.
    pub fn new(client: Client, applier: Applier, events: Events, metrics: Metrics, agent_image: String) -> Self {
        Self { client, applier, events, metrics, agent_image, failures: Mutex::default() }
    }
}

/// Reconciles one server and records the outcome (metrics, failure count, a Warning Event on failure).
pub async fn reconcile(raw: Arc<RawDittoServer>, ctx: Arc<Context>) -> Result<Action, Error> {
    let started = Instant::now();
    let span =
        tracing::info_span!("reconcile", namespace = raw.namespace().unwrap_or_default(), name = %raw.name_any());
    let result = tracing::Instrument::instrument(reconcile_server(&raw, &ctx), span).await;
    let key = ObjectRef::from_obj(raw.as_ref());
    match &result {
        Ok(_) => {
            ctx.metrics.reconciled("ok", started.elapsed());
            ctx.failures.lock().expect("not poisoned").remove(&key);
        }
        Err(e) => {
            ctx.metrics.reconciled(e.metric_label(), started.elapsed());
            tracing::warn!(error = %e, label = e.metric_label(), "reconcile failed");
            if !e.is_permanent() {
                *ctx.failures.lock().expect("not poisoned").entry(key).or_default() += 1;
            }
            // Invalid specs and adapter failures have their own Warning Events already.
            if !matches!(e, Error::InvalidSpec(_) | Error::Adapters { .. }) {
                let note = format!("{} ({})", e, e.metric_label());
                ctx.events.warning(&raw, reasons::RECONCILE_FAILED, "Reconcile", note).await;
            }
        }
    }
    result
}

/// Invalid objects wait for a change; transient failures back off per server.
pub fn error_policy(raw: Arc<RawDittoServer>, error: &Error, ctx: Arc<Context>) -> Action {
    if error.is_permanent() {
        return Action::await_change();
    }
    let failures =
        ctx.failures.lock().expect("not poisoned").get(&ObjectRef::from_obj(raw.as_ref())).copied().unwrap_or(1);
    Action::requeue(backoff(failures))
}

async fn reconcile_server(raw: &RawDittoServer, ctx: &Context) -> Result<Action, Error> {
    if raw.metadata.deletion_timestamp.is_some() {
        // Children go with the garbage collector; only a Go operator's finalizer could hold the server.
        remove_go_finalizer(ctx, raw).await?;
        return Ok(Action::await_change());
    }
    let ds = match raw.parse() {
        Ok(ds) => ds,
        Err(invalid) => {
            status::report_invalid(ctx, raw, &invalid).await;
            return Err(invalid.into());
        }
    };
    if ds.metadata.uid.is_none() {
        return Err(Error::MissingMetadata("uid"));
    }

    let observed = observe::observe(&ctx.client, &ds).await?;
    let values = values::settle(&ds, &observed);
    let applied = children::apply_children(ctx, raw, &ds, &values, observed.statefulset.as_ref()).await?;
    let adapters = adapters::reconcile(ctx, raw, &ds, &applied.statefulset).await;
    let statefulset = adapters.statefulset.as_ref().unwrap_or(&applied.statefulset);
    status::update(ctx, raw, &ds, &applied.config_map, statefulset, &values, adapters.state).await?;
    if let Some(e) = adapters.error {
        return Err(e);
    }

    if observed.missing.is_empty() {
        Ok(Action::requeue(RESYNC))
    } else {
        tracing::warn!(missing = ?observed.missing, "referenced Secrets are missing; the pod cannot start until they exist");
        Ok(Action::requeue(MISSING_SECRET_RETRY))
    }
}

/// Lets a server adopted from the Go operator be deleted: its finalizer would wait forever for that operator.
async fn remove_go_finalizer(ctx: &Context, raw: &RawDittoServer) -> Result<(), Error> {
    let finalizers = raw.finalizers();
    if !finalizers.iter().any(|f| f == GO_OPERATOR_FINALIZER) {
        return Ok(());
    }
    let remaining: Vec<&String> = finalizers.iter().filter(|f| *f != GO_OPERATOR_FINALIZER).collect();
    let ns = raw.namespace().ok_or(Error::MissingMetadata("namespace"))?;
    let api: Api<RawDittoServer> = Api::namespaced(ctx.client.clone(), &ns);
    // The resourceVersion makes this a compare-and-swap: a concurrent finalizer change is not lost.
    let patch = json!({"metadata": {"finalizers": remaining, "resourceVersion": raw.resource_version()}});
    api.patch(&raw.name_any(), &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map_err(|e| Error::kube("remove the Go operator's finalizer", e))?;
    Ok(())
}
