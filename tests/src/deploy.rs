//! The install artefacts of `deploy/` as the `deploy_*` tests use them: helm (built by
//! `scripts/testenv/helm.sh`) run on the chart, kustomize renders through the control plane's kubectl,
//! multi-document YAML server-side applied, and a Pod built from a workload's pod template.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::Context as _;
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use serde_json::{Value, json};

use crate::kube_env::{ControlPlane, wait_until};

/// Names a helm binary to use instead of the one `scripts/testenv/helm.sh` builds.
pub const HELM_BIN_ENV: &str = "DITTOFS_HELM_BIN";

/// The repository's root directory.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ has a parent").to_owned()
}

/// `deploy/helm/dittofs-operator`.
pub fn chart_dir() -> PathBuf {
    repo_root().join("deploy/helm/dittofs-operator")
}

/// `$DITTOFS_HELM_BIN`, else the helm of the testenv cache; fails with how to build it.
pub fn helm_bin() -> anyhow::Result<PathBuf> {
    crate::process::cached_tool("helm", HELM_BIN_ENV, "about 5 min")
}

/// Points helm's cache, config and data directories into `dir`, so no test touches `$HOME`.
pub fn helm_home_env(cmd: &mut Command, dir: &Path) {
    for (var, sub) in [("HELM_CACHE_HOME", "cache"), ("HELM_CONFIG_HOME", "config"), ("HELM_DATA_HOME", "data")] {
        cmd.env(var, dir.join(sub));
    }
}

/// Runs helm in the repository root with `args`; stdout, or an error holding stderr.
pub fn helm(args: &[&str]) -> anyhow::Result<String> {
    let home = tempfile::tempdir()?;
    let mut cmd = Command::new(helm_bin()?);
    helm_home_env(&mut cmd, home.path());
    let out = cmd.current_dir(repo_root()).args(args).output().context("run helm")?;
    anyhow::ensure!(out.status.success(), "helm {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    Ok(String::from_utf8(out.stdout)?)
}

/// `helm template <release> deploy/helm/dittofs-operator --namespace <namespace> <extra…>`, parsed.
pub fn helm_template(release: &str, namespace: &str, extra: &[&str]) -> anyhow::Result<Vec<Value>> {
    let chart = chart_dir().display().to_string();
    let args = [&["template", release, chart.as_str(), "--namespace", namespace], extra].concat();
    parse_docs(&helm(&args)?)
}

/// `kubectl kustomize <dir>` with the control plane's kubectl (its built-in kustomize), parsed.
pub fn kustomize(cp: &ControlPlane, dir: &Path) -> anyhow::Result<Vec<Value>> {
    parse_docs(&cp.kubectl(&["kustomize", &dir.display().to_string()])?)
}

/// The non-empty documents of a multi-document YAML text.
pub fn parse_docs(text: &str) -> anyhow::Result<Vec<Value>> {
    let docs: Vec<Value> = serde_saphyr::from_multiple(text)?;
    Ok(docs.into_iter().filter(|d| !d.is_null()).collect())
}

/// The document of `kind` named `name`.
pub fn find<'a>(docs: &'a [Value], kind: &str, name: &str) -> anyhow::Result<&'a Value> {
    docs.iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .with_context(|| format!("no {kind}/{name} among {:?}", kinds(docs)))
}

/// `Kind/name` of every document, in order.
pub fn kinds(docs: &[Value]) -> Vec<String> {
    docs.iter().map(|d| format!("{}/{}", d["kind"].as_str().unwrap_or("?"), d["metadata"]["name"])).collect()
}

/// Server-side applies every document (as `kubectl apply --server-side` would) with field manager
/// `manager`; returns `Kind/name` of each. A kind whose CRD was applied a moment ago may not be discovered
/// yet: each document is retried until its kind is served.
pub async fn apply_docs(client: &kube::Client, docs: &[Value], manager: &str) -> anyhow::Result<Vec<String>> {
    use kube::discovery::{Scope, pinned_kind};
    let mut applied = Vec::new();
    for doc in docs {
        let obj: DynamicObject = serde_json::from_value(doc.clone())?;
        let types = obj.types.clone().context("a document without apiVersion and kind")?;
        let gvk = kube::api::GroupVersionKind::try_from(&types)?;
        let name = obj.metadata.name.clone().context("a document without a name")?;
        let what = format!("{}/{name}", types.kind);
        wait_until(&format!("{what} to be applied"), Duration::from_secs(20), async || {
            let (ar, caps) = pinned_kind(client, &gvk).await?;
            let api: Api<DynamicObject> = match (caps.scope, obj.metadata.namespace.as_deref()) {
                (Scope::Namespaced, Some(ns)) => Api::namespaced_with(client.clone(), ns, &ar),
                // Not retryable, but surfaces as the wait's last state.
                (Scope::Namespaced, None) => anyhow::bail!("namespaced {what} without a namespace"),
                (Scope::Cluster, _) => Api::all_with(client.clone(), &ar),
            };
            api.patch(&name, &PatchParams::apply(manager).force(), &Patch::Apply(doc)).await?;
            Ok(())
        })
        .await?;
        applied.push(what);
    }
    Ok(applied)
}

/// A Pod named `name` from the pod template of a Deployment or StatefulSet document, as its controller
/// would create it. For a StatefulSet the volumes of its `volumeClaimTemplates` are added as the
/// StatefulSet controller adds them (claim `<template>-<statefulset>-0`).
pub fn pod_from_template(workload: &Value, name: &str) -> anyhow::Result<Value> {
    let template = &workload["spec"]["template"];
    let mut spec = template["spec"].clone();
    anyhow::ensure!(spec.is_object(), "{} has no pod template", workload["metadata"]["name"]);
    let sts = workload["metadata"]["name"].as_str().unwrap_or_default();
    for claim in workload["spec"]["volumeClaimTemplates"].as_array().into_iter().flatten() {
        let claim_name = claim["metadata"]["name"].as_str().context("volumeClaimTemplate without a name")?;
        let volume =
            json!({"name": claim_name, "persistentVolumeClaim": {"claimName": format!("{claim_name}-{sts}-0")}});
        let volumes = spec["volumes"].as_array_mut();
        match volumes {
            Some(volumes) if volumes.iter().any(|v| v["name"] == claim_name) => {}
            Some(volumes) => volumes.push(volume),
            None => spec["volumes"] = json!([volume]),
        }
    }
    Ok(json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": template["metadata"]["labels"].clone()},
        "spec": spec,
    }))
}
