//! `deploy/` manifests applied as `kubectl apply --server-side` would.

use std::path::PathBuf;

use kube::api::{Api, DynamicObject, GroupVersionKind, Patch, PatchParams};
use kube::discovery::{Scope, pinned_kind};

/// The repository's `deploy/` directory.
pub fn deploy_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../deploy")
}

/// Server-side applies every document of a multi-document YAML file; returns `Kind/name` of each.
pub async fn apply_file(client: &kube::Client, path: PathBuf) -> anyhow::Result<Vec<String>> {
    let text = std::fs::read_to_string(&path)?;
    let docs: Vec<serde_json::Value> = serde_saphyr::from_multiple(&text)?;
    let mut applied = Vec::new();
    for doc in docs.into_iter().filter(|d| !d.is_null()) {
        let obj: DynamicObject = serde_json::from_value(doc.clone())?;
        let types = obj.types.clone().expect("apiVersion and kind");
        let gvk = GroupVersionKind::try_from(&types)?;
        let (ar, caps) = pinned_kind(client, &gvk).await?;
        let api: Api<DynamicObject> = match (caps.scope, obj.metadata.namespace.as_deref()) {
            (Scope::Namespaced, Some(ns)) => Api::namespaced_with(client.clone(), ns, &ar),
            (Scope::Namespaced, None) => anyhow::bail!("{}: namespaced object without namespace", path.display()),
            (Scope::Cluster, _) => Api::all_with(client.clone(), &ar),
        };
        let name = obj.metadata.name.clone().expect("name");
        api.patch(&name, &PatchParams::apply("kubectl").force(), &Patch::Apply(&doc)).await?;
        applied.push(format!("{}/{name}", types.kind));
    }
    Ok(applied)
}
