//! Apply (SSA): every child in dependency order; what a reconcile created is named in one Normal `Created`
//! Event at its end ([`crate::events::Events::announce_created`]).
//!
//! Order: the baseline NetworkPolicy first, on its own ([`apply_baseline`]), so the pods are isolated
//! from birth and a failure anywhere else never leaves them without it; then Secrets and ConfigMap and
//! the agent's RBAC before the StatefulSet, so the pod the StatefulSet controller creates finds
//! everything it mounts, and the static Services; the ServiceMonitor after the metrics Service it selects
//! ([`super::service_monitor`]). The StatefulSet waits while its database is not usable.
//!
//! A child whose body and object are as the last apply left them is not sent again
//! ([`crate::apply::Applier::unchanged`]): an agent's report reconciles the server, and only the adapter step
//! has work then.

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use kube::ResourceExt;

use dittofs_api::{DittoServer, names};

use crate::apply::Outcome;
use crate::desired;
use crate::desired::service_monitor::Monitor;
use crate::error::Error;
use crate::events::{self, Events};
use crate::raw::RawDittoServer;
use crate::reconcile::Context;
use crate::reconcile::observe::Observed;
use crate::reconcile::secrets::{self, Existing};
use crate::reconcile::values::Values;

/// What the status needs from the applies.
#[derive(Debug)]
pub struct Applied {
    /// The ConfigMap as stored after the apply.
    pub config_map: ConfigMap,
    /// The StatefulSet as stored after the apply; the live one (if any) when it waits for the database.
    pub statefulset: Option<StatefulSet>,
    /// What became of the ServiceMonitor.
    pub monitor: Monitor,
}

async fn apply_one<K: crate::cache::Child>(ctx: &Context, raw: &RawDittoServer, obj: &K) -> Result<K, Error> {
    let (applied, outcome) = ctx.applier.apply(obj).await?;
    if outcome == Outcome::Created {
        ctx.events.created(raw, format!("{} {}", K::kind(&()), applied.name_any()));
    }
    Ok(applied)
}

/// [`apply_one`] unless the applier knows it would change nothing.
pub(crate) async fn ensure_one<K: crate::cache::Child>(
    ctx: &Context,
    raw: &RawDittoServer,
    obj: &K,
) -> Result<(), Error> {
    if !ctx.applier.unchanged(obj, None) {
        apply_one(ctx, raw, obj).await?;
    }
    Ok(())
}

/// The baseline NetworkPolicy, applied before anything else and whatever else fails.
pub async fn apply_baseline(ctx: &Context, raw: &RawDittoServer, ds: &DittoServer) -> Result<(), Error> {
    ensure_one(ctx, raw, &desired::network_policy::baseline_network_policy(ds)).await
}

/// Applies every other child of `ds` from what was `observed` and the `values` settled from it; the
/// StatefulSet is neither created nor changed while `database_waits` (see `super::database_wait`).
pub async fn apply_children(
    ctx: &Context,
    raw: &RawDittoServer,
    ds: &DittoServer,
    observed: &Observed,
    values: &Values,
    database_waits: bool,
) -> Result<Applied, Error> {
    let cr = ds.name_any();
    let ns = ds.namespace().ok_or(Error::MissingMetadata("namespace"))?;
    let uid = ds.metadata.uid.as_deref().ok_or(Error::MissingMetadata("uid"))?;
    let existing = |secret: &k8s_openapi::api::core::v1::Secret| {
        observed.managed.get(&secret.name_any()).copied().unwrap_or(Existing::Absent)
    };
    let mut generated = Vec::new();
    if let Some(jwt) = &values.jwt {
        generated.push(desired::secrets::jwt_secret(ds, jwt.expose()));
    }
    if let Some(password) = &values.admin_password {
        generated.push(desired::secrets::admin_bootstrap_secret(ds, password.expose()));
    }
    generated.push(desired::secrets::operator_credentials_secret(ds, values.operator_password.expose()));
    for secret in &generated {
        secrets::ensure(ctx, raw, secret, existing(secret)).await?;
    }

    let config_map = desired::config::config_map(ds, &values.config);
    // Unchanged, the stored ConfigMap is this body in every field the status reads (its data).
    let config_map =
        if ctx.applier.unchanged(&config_map, None) { config_map } else { apply_one(ctx, raw, &config_map).await? };

    let (service_account, role, role_binding) = desired::rbac::agent_rbac(ds);
    ensure_one(ctx, raw, &service_account).await?;
    ensure_one(ctx, raw, &role).await?;
    ensure_one(ctx, raw, &role_binding).await?;

    ensure_one(ctx, raw, &desired::services::headless_service(ds)).await?;
    ensure_one(ctx, raw, &desired::services::api_service(ds)).await?;
    match desired::services::metrics_service(ds) {
        Some(svc) => ensure_one(ctx, raw, &svc).await?,
        // Garbage collection only follows the server's deletion: a Service of metrics turned off must go now.
        None => {
            let name = names::metrics_service(&cr);
            if ctx.applier.delete_if_present::<Service>(&ns, &name, uid).await? {
                let note = format!("Deleted Service {name}: metrics are disabled");
                ctx.events.normal(raw, events::DELETED, "Delete", note).await;
            }
        }
    }
    let monitor = super::service_monitor::reconcile(ctx, raw, ds).await?;
    let live = observed.statefulset.as_ref();
    if database_waits {
        // What runs keeps running as it is; nothing new starts without its database.
        return Ok(Applied { config_map, statefulset: live.cloned(), monitor });
    }
    let sts = desired::statefulset::statefulset_for(ds, &ctx.agent, &values.config_hash, live);
    // The status reads the StatefulSet's own status, so an unchanged one is the live object just read.
    let statefulset = match live {
        Some(live) if ctx.applier.unchanged(&sts, Some(live)) => live.clone(),
        _ => apply_one(ctx, raw, &sts).await?,
    };
    warn_on_ignored_storage_change(&ctx.events, raw, ds, live, &statefulset).await;
    Ok(Applied { config_map, statefulset: Some(statefulset), monitor })
}

/// Kubernetes refuses to change volume claim templates: the live ones were kept, say so (once per generation).
async fn warn_on_ignored_storage_change(
    events: &Events,
    raw: &RawDittoServer,
    ds: &DittoServer,
    live: Option<&StatefulSet>,
    applied: &StatefulSet,
) {
    let Some(live) = live else { return };
    let wanted = desired::statefulset::volume_claim_templates(ds);
    let kept = applied.spec.as_ref().and_then(|s| s.volume_claim_templates.clone()).unwrap_or_default();
    let first_time_for_generation = ds.status.as_ref().and_then(|s| s.observed_generation) != ds.metadata.generation;
    if live.spec.is_some() && !desired::statefulset::same_claims(&kept, &wanted) && first_time_for_generation {
        let note = "spec.storage changed after the StatefulSet was created; Kubernetes does not allow \
                    changing its volume claim templates, so the existing volumes are kept as they are"
            .to_owned();
        events.warning_per_generation(raw, events::STORAGE_CHANGE_IGNORED, "Apply", note).await;
    }
}
