//! The way down: a deleted server loses its Services first, then its pods, and only then its
//! NetworkPolicies.
//!
//! Left to the garbage collector, everything would go at once: the policies could vanish while a pod is
//! still terminating (up to its grace period), and a pod no policy selects accepts every port from the
//! whole cluster. So the server carries [`TEARDOWN_FINALIZER`]: on deletion the controller deletes its
//! Services (no new clients), then its StatefulSet (the pods terminate), waits until no pod of the server
//! is left, and only then releases the baseline policy's [`POLICY_FINALIZER`] and its own; the garbage
//! collector takes the rest. The policy finalizer covers foreground deletion, where the garbage collector
//! deletes the dependents before the owner. A Go operator's finalizer is dropped at the same time (that
//! operator is gone; it would hold the server forever).

use std::time::Duration;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, Preconditions};
use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};
use serde_json::json;

use dittofs_api::constants::{GO_OPERATOR_FINALIZER, POLICY_FINALIZER, TEARDOWN_FINALIZER};
use dittofs_api::labels::{PodSelector, instance_selector};
use dittofs_api::names;

use crate::apply::owned_by;
use crate::error::Error;
use crate::events;
use crate::raw::RawDittoServer;
use crate::reconcile::Context;

/// How often a deleted server looks again while its pods terminate (bounded by their grace period).
pub const PODS_RETRY: Duration = Duration::from_secs(2);

/// How many pods of the server exist (terminating ones included).
pub async fn pods_left(ctx: &Context, ds: &impl Resource) -> Result<usize, Error> {
    let ns = ds.meta().namespace.clone().ok_or(Error::MissingMetadata("namespace"))?;
    let cr = ds.meta().name.clone().unwrap_or_default();
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    let selector =
        PodSelector::from_annotations(ds.meta().annotations.as_ref().unwrap_or(&Default::default())).selector(&cr);
    let list = pods
        .list_metadata(&ListParams::default().labels(&selector))
        .await
        .map_err(|e| Error::kube("list the pods of the server", e))?;
    Ok(list.items.len())
}

/// Adds [`TEARDOWN_FINALIZER`] to a live server that lacks it.
pub async fn ensure_finalizer(ctx: &Context, raw: &RawDittoServer) -> Result<(), Error> {
    let finalizers = raw.finalizers();
    if finalizers.iter().any(|f| f == TEARDOWN_FINALIZER) {
        return Ok(());
    }
    let mut wanted = finalizers.to_vec();
    wanted.push(TEARDOWN_FINALIZER.to_owned());
    set_finalizers(ctx, raw, &wanted).await
}

/// A merge patch of the whole list with the read resourceVersion: a compare-and-swap, so a concurrent
/// change of the finalizers is not lost (the next reconcile retries from the new list).
async fn set_finalizers(ctx: &Context, raw: &RawDittoServer, finalizers: &[String]) -> Result<(), Error> {
    let ns = raw.namespace().ok_or(Error::MissingMetadata("namespace"))?;
    let api: Api<RawDittoServer> = Api::namespaced(ctx.client.clone(), &ns);
    let patch = json!({"metadata": {"finalizers": finalizers, "resourceVersion": raw.resource_version()}});
    api.patch(&raw.name_any(), &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map_err(|e| Error::kube("update the finalizers of the DittoServer", e))?;
    ctx.metrics.wrote("DittoServer");
    Ok(())
}

/// One step of the way down of a deleted server; requeued until its pods are gone.
pub async fn run(ctx: &Context, raw: &RawDittoServer) -> Result<Action, Error> {
    super::status::mark_deleting(ctx, raw).await;
    let ours = raw.finalizers().iter().any(|f| f == TEARDOWN_FINALIZER);
    let go = raw.finalizers().iter().any(|f| f == GO_OPERATOR_FINALIZER);
    if !ours && !go {
        return Ok(Action::await_change());
    }
    let ns = raw.namespace().ok_or(Error::MissingMetadata("namespace"))?;
    let uid = raw.uid().ok_or(Error::MissingMetadata("uid"))?;
    let cr = raw.name_any();
    if ours {
        delete_owned::<Service>(ctx, raw, &ns, &uid, ListParams::default().labels(&instance_selector(&cr))).await?;
        let sts = ListParams::default().fields(&format!("metadata.name={}", names::statefulset(&cr)));
        delete_owned::<StatefulSet>(ctx, raw, &ns, &uid, sts).await?;
        let left = pods_left(ctx, raw).await?;
        if left > 0 {
            tracing::info!(pods = left, "deleted; the NetworkPolicies stay until the pods have terminated");
            return Ok(Action::requeue(PODS_RETRY));
        }
        release_policy(ctx, &ns, &uid, &names::baseline_network_policy(&cr)).await?;
    }
    // The Go operator's cleanup that still matters: its database cluster stays unless asked otherwise.
    super::percona::before_finalizer_goes(ctx, raw).await?;
    let remaining: Vec<String> =
        raw.finalizers().iter().filter(|f| *f != TEARDOWN_FINALIZER && *f != GO_OPERATOR_FINALIZER).cloned().collect();
    set_finalizers(ctx, raw, &remaining).await?;
    tracing::info!("no pod left; finalizers removed, the garbage collector takes the remaining children");
    Ok(Action::await_change())
}

/// Deletes the objects of kind `K` matching `params` that this server owns (never another's).
async fn delete_owned<K>(
    ctx: &Context,
    raw: &RawDittoServer,
    ns: &str,
    uid: &str,
    params: ListParams,
) -> Result<(), Error>
where
    K: crate::cache::Child,
{
    let kind = K::kind(&()).into_owned();
    let api: Api<K> = Api::namespaced(ctx.client.clone(), ns);
    let list = api.list_metadata(&params).await.map_err(|e| Error::kube(format!("list {kind}s to delete"), e))?;
    for obj in list.items.iter().filter(|o| owned_by(&o.metadata, uid) && o.metadata.deletion_timestamp.is_none()) {
        let name = obj.name_any();
        let delete = DeleteParams {
            preconditions: Some(Preconditions { uid: obj.uid(), resource_version: None }),
            ..DeleteParams::background()
        };
        match api.delete(&name, &delete).await {
            Ok(_) => {
                ctx.metrics.wrote(&kind);
                let note = format!("Deleted {kind} {name}: the DittoServer is being deleted");
                ctx.events.normal(raw, events::DELETED, "Delete", note).await;
            }
            Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {}
            Err(e) => return Err(Error::kube(format!("delete {kind} {name}"), e)),
        }
    }
    Ok(())
}

/// Removes [`POLICY_FINALIZER`] from the baseline policy (a JSON patch that tests the entry it removes).
async fn release_policy(ctx: &Context, ns: &str, uid: &str, name: &str) -> Result<(), Error> {
    let api: Api<NetworkPolicy> = Api::namespaced(ctx.client.clone(), ns);
    let Some(np) = api.get_metadata_opt(name).await.map_err(|e| Error::kube(format!("get NetworkPolicy {name}"), e))?
    else {
        return Ok(());
    };
    let Some(index) = np.finalizers().iter().position(|f| f == POLICY_FINALIZER) else { return Ok(()) };
    if !owned_by(&np.metadata, uid) {
        return Ok(());
    }
    let ops = json!([
        {"op": "test", "path": format!("/metadata/finalizers/{index}"), "value": POLICY_FINALIZER},
        {"op": "remove", "path": format!("/metadata/finalizers/{index}")},
    ]);
    let patch: json_patch::Patch =
        serde_json::from_value(ops).map_err(|source| Error::Serialize { what: "finalizer patch", source })?;
    match api.patch(name, &PatchParams::default(), &Patch::Json::<()>(patch)).await {
        Ok(_) => {
            ctx.metrics.wrote("NetworkPolicy");
            Ok(())
        }
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(Error::kube(format!("remove the finalizer of NetworkPolicy {name}"), e)),
    }
}
