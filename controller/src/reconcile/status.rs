//! Status: computed from what the applies returned, written (SSA on the status subresource) only when it changed.

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams};
use kube::{Resource, ResourceExt};
use serde_json::json;

use dittofs_api::conditions::{self as c, events as reasons};
use dittofs_api::crd::unimplemented::unimplemented_message;
use dittofs_api::crd::{DittoServerStatus, Phase};
use dittofs_api::{DittoServer, names, unimplemented_fields};

use crate::apply::apply_params;
use crate::desired::adapters::AdaptersState;
use crate::desired::database::{PerconaObserved, percona_wait};
use crate::desired::service_monitor::Monitor;
use crate::desired::status::{
    ConfigMapState, INVALID_SPEC_REASON, Observed, StatefulSetState, blocked_status, desired_status, needs_write,
};
use crate::error::Error;
use crate::events;
use crate::raw::{InvalidSpec, RawDittoServer};
use crate::reconcile::Context;
use crate::reconcile::children::Applied;
use crate::reconcile::values::Values;

fn config_map_state(cm: &ConfigMap) -> ConfigMapState {
    match cm.data.as_ref().and_then(|d| d.get(names::CONFIG_KEY)) {
        Some(_) => ConfigMapState::Present,
        None => ConfigMapState::NoConfigKey,
    }
}

fn statefulset_state(sts: &StatefulSet) -> StatefulSetState {
    let status = sts.status.clone().unwrap_or_default();
    StatefulSetState {
        generation: sts.metadata.generation.unwrap_or_default(),
        observed_generation: status.observed_generation.unwrap_or_default(),
        ready_replicas: status.ready_replicas.unwrap_or_default(),
        available_replicas: status.available_replicas.unwrap_or_default(),
    }
}

async fn write(ctx: &Context, raw: &RawDittoServer, status: &DittoServerStatus) -> Result<(), Error> {
    let ns = raw.namespace().ok_or(Error::MissingMetadata("namespace"))?;
    let name = raw.name_any();
    let api: Api<RawDittoServer> = Api::namespaced(ctx.client.clone(), &ns);
    let body = json!({
        "apiVersion": DittoServer::api_version(&()),
        "kind": DittoServer::kind(&()),
        "metadata": {"name": name},
        "status": status,
    });
    api.patch_status(&name, &apply_params(), &Patch::Apply(&body))
        .await
        .map_err(|e| Error::kube(format!("apply status of DittoServer {name}"), e))?;
    ctx.metrics.wrote("DittoServerStatus");
    Ok(())
}

/// What the status says about the database.
#[derive(Debug, Default)]
pub struct Database {
    /// The Percona cluster (with `percona.enabled`).
    pub percona: Option<PerconaObserved>,
    /// What is wrong with the `database.postgresSecretRef` Secret.
    pub secret_problem: Option<String>,
    /// Which other referenced Secrets or keys are missing (JWT, LDAP, Kerberos).
    pub other_secrets: Option<String>,
}

/// Computes the status of a reconciled server and writes it if it differs; warns once per
/// generation about fields kept but not implemented, and once per change about a too-short JWT key,
/// a missing Secret or key, a Percona cluster DittoFS waits for, and a ServiceMonitor asked for on a
/// cluster that does not serve the API.
#[allow(clippy::too_many_arguments)]
pub async fn update(
    ctx: &Context,
    raw: &RawDittoServer,
    ds: &DittoServer,
    applied: &Applied,
    statefulset: Option<&StatefulSet>,
    values: &Values,
    adapters: AdaptersState,
    database: &Database,
) -> Result<(), Error> {
    let monitor = applied.monitor;
    let observed = Observed {
        config_map: config_map_state(&applied.config_map),
        statefulset: statefulset.map(statefulset_state),
        config_hash: values.config_hash.clone(),
        jwt_problem: values.jwt_problem.clone(),
        adapters,
        database_secret_problem: database.secret_problem.clone(),
        secrets_problem: database.other_secrets.clone(),
        percona: database.percona.clone(),
        monitor,
    };
    let desired = desired_status(ds, &observed, Timestamp::now());
    announce_database(ctx, raw, ds, database).await;
    if !needs_write(ds.status.as_ref(), &desired) {
        return Ok(());
    }
    let fields = unimplemented_fields(&ds.spec);
    let supported_changed = condition_message(ds.status.as_ref(), c::SPEC_SUPPORTED)
        != condition_message(Some(&desired), c::SPEC_SUPPORTED);
    let new_generation = ds.status.as_ref().and_then(|s| s.observed_generation) != ds.metadata.generation;
    let config_changed =
        condition_message(ds.status.as_ref(), c::CONFIG_READY) != condition_message(Some(&desired), c::CONFIG_READY);
    let metrics_changed =
        condition_message(ds.status.as_ref(), c::METRICS_READY) != condition_message(Some(&desired), c::METRICS_READY);
    write(ctx, raw, &desired).await?;
    match (monitor, condition_message(Some(&desired), c::METRICS_READY)) {
        (Monitor::ApiMissing, Some((_, message))) if metrics_changed => {
            let reason = reasons::SERVICE_MONITOR_API_MISSING;
            ctx.events.warning_on_change(raw, reason, "Apply", message).await;
        }
        (Monitor::ApiMissing, _) => {}
        _ => ctx.events.resolved(raw, reasons::SERVICE_MONITOR_API_MISSING),
    }
    match values.jwt_problem.as_ref() {
        Some(problem) if config_changed => {
            ctx.events.warning_on_change(raw, reasons::JWT_SECRET_TOO_SHORT, "Validate", problem.clone()).await;
        }
        Some(_) => {}
        None => ctx.events.resolved(raw, reasons::JWT_SECRET_TOO_SHORT),
    }
    if !fields.is_empty() && (supported_changed || new_generation) {
        let note = unimplemented_message(&fields);
        ctx.events.warning_per_generation(raw, reasons::UNIMPLEMENTED_FIELDS, "Validate", note).await;
    }
    Ok(())
}

/// One Warning per change of what the database waits for (the events' own memory dedups repeats; a
/// restart of the controller announces the current state once more), and forgets it once resolved.
async fn announce_database(ctx: &Context, raw: &RawDittoServer, ds: &DittoServer, database: &Database) {
    match &database.secret_problem {
        Some(problem) => {
            let note = format!("{problem}; the StatefulSet is not created or changed until it exists");
            ctx.events.warning_on_change(raw, reasons::DATABASE_SECRET_MISSING, "Validate", note).await;
        }
        None => ctx.events.resolved(raw, reasons::DATABASE_SECRET_MISSING),
    }
    match &database.other_secrets {
        Some(problem) => {
            let note = format!("{problem}; the StatefulSet is not created or changed until it exists");
            ctx.events.warning_on_change(raw, reasons::SECRET_MISSING, "Validate", note).await;
        }
        None => ctx.events.resolved(raw, reasons::SECRET_MISSING),
    }
    match database.percona.as_ref().and_then(|p| percona_wait(ds, p)) {
        Some((_, message)) => {
            ctx.events.warning_on_change(raw, reasons::PERCONA_NOT_READY, "Reconcile", message).await;
        }
        None => ctx.events.resolved(raw, reasons::PERCONA_NOT_READY),
    }
}

fn condition_message(status: Option<&DittoServerStatus>, type_: &str) -> Option<(String, String)> {
    status?.conditions.iter().find(|c| c.type_ == type_).map(|c| (c.status.clone(), c.message.clone()))
}

/// A deleted server shows `phase: Deleting`, written once, and gets one Normal `Deleting` Event per deletion
/// (as the Go operator's, minus its Event on every pass). Best-effort: the way down goes on whatever happens.
/// A merge patch of the one field: the controller's status apply needs a spec that parses, and the rest of
/// the status (conditions, the agents' entries) stays as it was.
pub async fn mark_deleting(ctx: &Context, raw: &RawDittoServer) {
    let phase = raw.status_part("phase");
    if phase.as_ref().and_then(|p| p.as_str()) == Some(Phase::Deleting.as_str()) {
        return;
    }
    let (Some(ns), name) = (raw.namespace(), raw.name_any()) else {
        return;
    };
    let api: Api<RawDittoServer> = Api::namespaced(ctx.client.clone(), &ns);
    let body = json!({"status": {"phase": Phase::Deleting.as_str()}});
    match api.patch_status(&name, &PatchParams::default(), &Patch::Merge(&body)).await {
        Ok(_) => {
            ctx.metrics.wrote("DittoServerStatus");
            let note = "DittoServer is being deleted: its Services go first, then its pods, then its NetworkPolicies";
            ctx.events.normal_once(raw, reasons::DELETING, "Delete", note.to_owned()).await;
        }
        // Gone already: nothing left to show.
        Err(kube::Error::Api(s)) if s.code == 404 => {}
        Err(e) => tracing::warn!(error = %e, "could not set the phase of the deleted server to Deleting"),
    }
}

/// A stored spec that does not parse: Ready=False naming the field and a Warning, once per generation.
/// Best-effort: the reconcile fails with the parse error whatever happens here.
pub async fn report_invalid(ctx: &Context, raw: &RawDittoServer, invalid: &InvalidSpec) {
    report_blocked(ctx, raw, INVALID_SPEC_REASON, events::INVALID_SPEC, invalid.to_string()).await;
}

/// A server that cannot be reconciled: Ready=False with `reason` and `message`, and a Warning Event with
/// `event_reason` when that changes the stored status (so once per cause, not once per retry).
/// Best-effort: the reconcile fails with its error whatever happens here.
pub async fn report_blocked(ctx: &Context, raw: &RawDittoServer, reason: &str, event_reason: &str, message: String) {
    let current = raw.typed_status();
    let generation = raw.metadata.generation.unwrap_or_default();
    let status = blocked_status(current.as_ref(), generation, reason, &message, Timestamp::now());
    if !needs_write(current.as_ref(), &status) {
        return;
    }
    ctx.events.warning(raw, event_reason, "Validate", message).await;
    // Not server-side apply: it needs the live object to match the schema, which an invalid one does not.
    // A merge patch of the two fields touches nothing else (the agents' entries stay).
    let body = json!({"status": {"observedGeneration": status.observed_generation, "conditions": status.conditions}});
    let (Some(ns), name) = (raw.namespace(), raw.name_any()) else {
        return;
    };
    let api: Api<RawDittoServer> = Api::namespaced(ctx.client.clone(), &ns);
    match api.patch_status(&name, &PatchParams::default(), &Patch::Merge(&body)).await {
        Ok(_) => ctx.metrics.wrote("DittoServerStatus"),
        Err(e) => tracing::warn!(error = %e, "could not report in the status why the server is blocked"),
    }
}
