//! The server's PerconaPGCluster (`<cr>-postgres`): read, created once when missing (never updated, as in
//! Go), and on deletion the Go operator's rule: kept with its data unless `percona.deleteWithServer`. The cluster carries the server's owner reference (the Go operator set
//! it), so the garbage collector would delete it with the server: the reference is removed first, before the
//! finalizer goes. The Go operator did this in its finalizer's cleanup; a server taken over from it must not
//! lose its database because that finalizer is now ours.

use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams};
use kube::{Resource, ResourceExt};
use serde_json::{Value, json};

use dittofs_api::DittoServer;

use crate::desired::database::{self, PerconaObserved};
use crate::error::Error;
use crate::events;
use crate::raw::RawDittoServer;
use crate::reconcile::Context;

/// Normal: the PerconaPGCluster was kept (orphaned) on deletion.
pub const PERCONA_ORPHANED: &str = "PerconaOrphaned";
/// Warning: the PerconaPGCluster goes with the server (`deleteWithServer`).
pub const PERCONA_DELETED: &str = "PerconaDeleted";

/// `pgv2.percona.com/v2` `PerconaPGCluster`.
fn resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("pgv2.percona.com", "v2", "PerconaPGCluster"),
        "perconapgclusters",
    )
}

/// The cluster `name`, if it exists. A 404 is also what a missing API (no Percona operator) answers:
/// [`ensure_cluster`] tells the two apart when it tries to create it.
pub async fn get_cluster(client: &kube::Client, ns: &str, name: &str) -> Result<Option<DynamicObject>, Error> {
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &resource());
    match api.get_opt(name).await {
        Ok(cluster) => Ok(cluster),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(None),
        Err(e) => Err(Error::kube(format!("get PerconaPGCluster {name}"), e)),
    }
}

/// Creates the cluster when `observed` says it is missing, and says what there is now. A plain create, not
/// an apply: the cluster is never updated afterwards, so a user's edits to it stay (as in Go).
pub async fn ensure_cluster(
    ctx: &Context,
    raw: &RawDittoServer,
    ds: &DittoServer,
    observed: PerconaObserved,
) -> Result<PerconaObserved, Error> {
    let (PerconaObserved::NoCluster, Some(body)) = (&observed, database::perconapgcluster(ds)) else {
        return Ok(observed);
    };
    let ns = ds.namespace().ok_or(Error::MissingMetadata("namespace"))?;
    let name = database::cluster_name(&ds.name_any());
    let api: Api<DynamicObject> = Api::namespaced_with(ctx.client.clone(), &ns, &resource());
    let cluster: DynamicObject =
        serde_json::from_value(body).map_err(|source| Error::Serialize { what: "PerconaPGCluster", source })?;
    match api.create(&PostParams::default(), &cluster).await {
        Ok(created) => {
            ctx.metrics.wrote("PerconaPGCluster");
            let note = format!("Created PerconaPGCluster {name}");
            ctx.events.normal_about(raw, created.object_ref(&resource()), events::CREATED, "Apply", note).await;
            Ok(PerconaObserved::Cluster { state: String::new(), missing_keys: None })
        }
        // Nothing serves the kind: Percona's operator is not installed.
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(PerconaObserved::NoApi),
        // Created meanwhile (by an earlier reconcile whose cache lagged): look again next time.
        Err(kube::Error::Api(s)) if s.code == 409 => {
            Ok(PerconaObserved::Cluster { state: String::new(), missing_keys: None })
        }
        Err(e) => Err(Error::kube(format!("create PerconaPGCluster {name}"), e)),
    }
}

/// What `spec.percona` asks for on deletion: `None` when Percona is off.
pub fn keep_on_delete(spec: &Value) -> Option<bool> {
    let percona = spec.get("percona")?;
    (percona.get("enabled") == Some(&Value::Bool(true)))
        .then(|| percona.get("deleteWithServer") != Some(&Value::Bool(true)))
}

/// Removes the server's owner reference from its PerconaPGCluster when the spec keeps it; an error keeps the
/// finalizer (retried), so the database is never lost to a failed request. A missing cluster or API is fine.
pub async fn before_finalizer_goes(ctx: &Context, raw: &RawDittoServer) -> Result<(), Error> {
    let Some(keep) = keep_on_delete(&raw.spec_value()) else { return Ok(()) };
    let (Some(ns), Some(uid), cr) = (raw.namespace(), raw.uid(), raw.name_any()) else { return Ok(()) };
    let name = database::cluster_name(&cr);
    let api: Api<DynamicObject> = Api::namespaced_with(ctx.client.clone(), &ns, &resource());
    let cluster = match api.get_opt(&name).await {
        Ok(Some(cluster)) => cluster,
        Ok(None) => return Ok(()),
        // No such API: Percona's operator is not installed, so there is no cluster to keep.
        Err(kube::Error::Api(s)) if s.code == 404 => return Ok(()),
        Err(e) => return Err(Error::kube(format!("get PerconaPGCluster {name}"), e)),
    };
    let owners = cluster.metadata.owner_references.clone().unwrap_or_default();
    let Some(index) = owners.iter().position(|o| o.uid == uid) else { return Ok(()) };
    if !keep {
        let note =
            format!("PerconaPGCluster {name} and its data are deleted with the server (percona.deleteWithServer)");
        ctx.events.warning(raw, PERCONA_DELETED, "Delete", note).await;
        return Ok(());
    }
    let ops = json!([
        {"op": "test", "path": format!("/metadata/ownerReferences/{index}/uid"), "value": uid},
        {"op": "remove", "path": format!("/metadata/ownerReferences/{index}")},
    ]);
    let patch: json_patch::Patch =
        serde_json::from_value(ops).map_err(|source| Error::Serialize { what: "owner reference patch", source })?;
    api.patch(&name, &PatchParams::default(), &Patch::Json::<()>(patch))
        .await
        .map_err(|e| Error::kube(format!("keep PerconaPGCluster {name} (remove the server's owner reference)"), e))?;
    ctx.metrics.wrote("PerconaPGCluster");
    let note = format!("Kept PerconaPGCluster {name} and its data (percona.deleteWithServer is false)");
    ctx.events.normal(raw, PERCONA_ORPHANED, "Delete", note).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cluster_is_kept_unless_delete_with_server() {
        assert_eq!(keep_on_delete(&json!({})), None);
        assert_eq!(keep_on_delete(&json!({"percona": {"enabled": false}})), None);
        assert_eq!(keep_on_delete(&json!({"percona": {"enabled": true}})), Some(true));
        assert_eq!(keep_on_delete(&json!({"percona": {"enabled": true, "deleteWithServer": false}})), Some(true));
        assert_eq!(keep_on_delete(&json!({"percona": {"enabled": true, "deleteWithServer": true}})), Some(false));
    }
}
