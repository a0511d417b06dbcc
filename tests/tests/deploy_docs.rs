//! docs/install.md's install commands, run as written (`bash -c`, from the repository root, with this
//! machine's kubectl and helm first on PATH), each on an empty apiserver of its own: `kubectl apply -k
//! deploy/` in one command, the file-by-file apply, and the Helm install and uninstall. Also an overlay's
//! `images:` (and deploy/'s own, as `kustomize edit set image` writes them) really changes both images, the
//! agent's env string included.

use std::path::Path;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use k8s_openapi::api::rbac::v1::{ClusterRoleBinding, Role};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, ListParams};
use serde_json::{Value, json};

use dittofs_tests::deploy::{find, kustomize, repo_root};
use dittofs_tests::docs::{commands, run, section};
use dittofs_tests::kube_env::{ControlPlane, ControlPlaneOptions, wait_until};
use dittofs_tests::objects::wait_gone;

/// Each test starts a control plane of its own; one at a time on a small machine.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const CRD: &str = "dittoservers.dittofs.dittofs.com";
const SYSTEM: &str = "dittofs-system";

/// An empty apiserver: not even the namespace the install creates.
async fn empty_control_plane(controller_manager: bool) -> anyhow::Result<ControlPlane> {
    let cp = ControlPlane::start(ControlPlaneOptions { controller_manager, ..Default::default() }).await?;
    assert!(Api::<Namespace>::all(cp.client()).get_opt(SYSTEM).await?.is_none());
    Ok(cp)
}

/// What every install leaves: the CRD served, the namespace enforcing `restricted`, and (with the controller
/// manager) the Deployment's `replicas` pods created, so admitted under `restricted`.
async fn installed(cp: &ControlPlane, selector: &str, replicas: usize) -> anyhow::Result<()> {
    let client = cp.client();
    wait_until("the CRD to be Established", Duration::from_secs(30), async || {
        let crd = Api::<CustomResourceDefinition>::all(client.clone()).get(CRD).await?;
        let conditions = crd.status.and_then(|s| s.conditions).unwrap_or_default();
        anyhow::ensure!(conditions.iter().any(|c| c.type_ == "Established" && c.status == "True"), "{conditions:?}");
        Ok(())
    })
    .await?;
    let ns = Api::<Namespace>::all(client.clone()).get(SYSTEM).await?;
    let labels = ns.metadata.labels.unwrap_or_default();
    assert_eq!(labels.get("pod-security.kubernetes.io/enforce").map(String::as_str), Some("restricted"));
    if cp.runs_controller_manager() {
        let pods: Api<Pod> = Api::namespaced(client, SYSTEM);
        wait_until(&format!("{replicas} controller pods"), Duration::from_secs(60), async || {
            let n = pods.list(&ListParams::default().labels(selector)).await?.items.len();
            anyhow::ensure!(n == replicas, "{n} pods");
            Ok(())
        })
        .await?;
    }
    Ok(())
}

/// The kubectl apply commands of section 2, and the rollout-status line the test cannot run (no kubelet:
/// nothing ever becomes available; `installed` checks the pods were admitted instead).
fn kubectl_commands() -> anyhow::Result<Vec<String>> {
    let all = commands(&section("## 2. ")?);
    let (applies, rest): (Vec<String>, Vec<String>) = all.into_iter().partition(|c| c.starts_with("kubectl apply "));
    assert_eq!(rest, ["kubectl -n dittofs-system rollout status deploy/dittofs-controller"]);
    assert_eq!(applies.len(), 2, "{applies:?}");
    Ok(applies)
}

/// `target` as a path relative to `dir`: kustomize refuses absolute resource paths.
fn relative_to(dir: &Path, target: &Path) -> anyhow::Result<String> {
    let (dir, target) = (dir.canonicalize()?, target.canonicalize()?);
    let ups = dir.components().count() - 1;
    let down = target.strip_prefix("/")?;
    Ok(format!("{}{}", "../".repeat(ups), down.display()))
}

/// A copy of what `deploy/kustomization.yaml` reads, into `dir`.
fn copy_deploy(dir: &Path) -> anyhow::Result<()> {
    let deploy = repo_root().join("deploy");
    for file in ["kustomization.yaml", "kustomizeconfig.yaml"] {
        std::fs::copy(deploy.join(file), dir.join(file))?;
    }
    for sub in ["crds", "controller", "rbac"] {
        std::fs::create_dir(dir.join(sub))?;
        for entry in std::fs::read_dir(deploy.join(sub))? {
            let entry = entry?;
            std::fs::copy(entry.path(), dir.join(sub).join(entry.file_name()))?;
        }
    }
    Ok(())
}

/// The Deployment's controller image and its DITTOFS_AGENT_IMAGE.
fn images(deployment: &Value) -> (Value, Value) {
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    let env = container["env"].as_array().into_iter().flatten().find(|e| e["name"] == "DITTOFS_AGENT_IMAGE");
    (container["image"].clone(), env.map(|e| e["value"].clone()).unwrap_or_default())
}

#[tokio::test]
#[ignore = "real-server tier: needs the Kubernetes test binaries; run `make test`"]
async fn kubectl_apply_k_works_in_one_command_and_images_overlays_change_both_images() -> anyhow::Result<()> {
    let _one = ONE_AT_A_TIME.lock().await;
    let applies = kubectl_commands()?;
    let one_command = applies.iter().find(|c| c.contains(" -k ")).expect("a kubectl apply -k command");
    let cp = empty_control_plane(true).await?;
    run(&cp, one_command)?;
    installed(&cp, "app.kubernetes.io/name=dittofs-controller", 2).await?;
    let client = cp.client();
    Api::<Role>::namespaced(client.clone(), SYSTEM).get("dittofs-controller-leader-election").await?;
    Api::<ClusterRoleBinding>::all(client.clone()).get("dittofs-controller").await?;

    // An overlay of deploy/ with its own `images:` (what `kustomize edit set image` writes).
    let overlay = tempfile::tempdir()?;
    let kustomization = json!({
        "apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
        "resources": [relative_to(overlay.path(), &repo_root().join("deploy"))?],
        "images": [
            {"name": "ghcr.io/dittofs/dittofs-controller", "newName": "registry.example/ops/controller", "newTag": "7.7.7"},
            {"name": "ghcr.io/dittofs/dittofs-agent", "newName": "registry.example/ops/agent",
             "digest": "sha256:89abcdef0123456789abcdef0123456789abcdef0123456789abcdef01234567"},
        ],
    });
    std::fs::write(overlay.path().join("kustomization.yaml"), serde_json::to_string_pretty(&kustomization)?)?;
    let base = kustomize(&cp, &repo_root().join("deploy"))?;
    let mut rendered = kustomize(&cp, overlay.path())?;
    let (controller, agent) = (
        "registry.example/ops/controller:7.7.7",
        "registry.example/ops/agent@sha256:89abcdef0123456789abcdef0123456789abcdef0123456789abcdef01234567",
    );
    let deployment = find(&rendered, "Deployment", "dittofs-controller")?;
    assert_eq!(
        images(find(&base, "Deployment", "dittofs-controller")?),
        (json!("ghcr.io/dittofs/dittofs-controller:0.1.0"), json!("ghcr.io/dittofs/dittofs-agent:0.1.0"))
    );
    assert_eq!(images(deployment), (json!(controller), json!(agent)));
    // …and nothing else: put the base's images back and the renders are identical.
    for doc in rendered.iter_mut().filter(|d| d["kind"] == "Deployment") {
        let container = &mut doc["spec"]["template"]["spec"]["containers"][0];
        container["image"] = json!("ghcr.io/dittofs/dittofs-controller:0.1.0");
        for var in container["env"].as_array_mut().into_iter().flatten().filter(|e| e["name"] == "DITTOFS_AGENT_IMAGE")
        {
            var["value"] = json!("ghcr.io/dittofs/dittofs-agent:0.1.0");
        }
    }
    assert!(rendered == base, "the overlay changed more than the two images");

    // `kustomize edit set image` in deploy/ itself rewrites its own `images:` entries: the same two changes.
    let edited = tempfile::tempdir()?;
    copy_deploy(edited.path())?;
    let path = edited.path().join("kustomization.yaml");
    let mut own: Value = serde_saphyr::from_str(&std::fs::read_to_string(&path)?)?;
    own["images"] = kustomization["images"].clone();
    std::fs::write(&path, serde_json::to_string_pretty(&own)?)?;
    assert_eq!(
        images(find(&kustomize(&cp, edited.path())?, "Deployment", "dittofs-controller")?),
        (json!(controller), json!(agent))
    );

    // Applied, the apiserver holds the new images.
    run(&cp, &format!("kubectl apply -k {}", overlay.path().display()))?;
    let stored = Api::<Deployment>::namespaced(client, SYSTEM).get("dittofs-controller").await?;
    assert_eq!(images(&serde_json::to_value(&stored)?), (json!(controller), json!(agent)));
    Ok(())
}

#[tokio::test]
#[ignore = "real-server tier: needs the Kubernetes test binaries; run `make test`"]
async fn the_file_by_file_apply_works_on_an_empty_apiserver() -> anyhow::Result<()> {
    let _one = ONE_AT_A_TIME.lock().await;
    let applies = kubectl_commands()?;
    let by_file = applies.iter().find(|c| !c.contains(" -k ")).expect("a file-by-file kubectl apply");
    // No controller manager: the order of the files is what is under test, not the pods.
    let cp = empty_control_plane(false).await?;
    run(&cp, by_file)?;
    installed(&cp, "", 0).await?;
    Api::<Deployment>::namespaced(cp.client(), SYSTEM).get("dittofs-controller").await?;
    Api::<Role>::namespaced(cp.client(), SYSTEM).get("dittofs-controller-leader-election").await?;
    Ok(())
}

#[tokio::test]
#[ignore = "real-server tier: needs the Kubernetes test binaries and helm; run `make test`"]
async fn the_documented_helm_install_and_uninstall_work_and_keep_the_crd() -> anyhow::Result<()> {
    let _one = ONE_AT_A_TIME.lock().await;
    let helm = section("## 2'. ")?;
    let install = commands(&helm);
    assert_eq!(install.len(), 3, "{install:?}");
    assert!(install[2].starts_with("helm install "), "{install:?}");
    let uninstall = helm.split('`').find(|s| s.starts_with("helm uninstall ")).expect("a helm uninstall command");

    let cp = empty_control_plane(true).await?;
    for command in &install {
        run(&cp, command)?;
    }
    installed(&cp, "app.kubernetes.io/instance=dittofs-operator,app.kubernetes.io/component=controller", 2).await?;
    let deployments: Api<Deployment> = Api::namespaced(cp.client(), SYSTEM);
    let deployment = serde_json::to_value(deployments.get("dittofs-operator").await?)?;
    assert_eq!(
        images(&deployment),
        (json!("REGISTRY/dittofs-controller:0.1.0"), json!("REGISTRY/dittofs-agent:0.1.0"))
    );

    run(&cp, uninstall)?;
    wait_gone(&deployments, "dittofs-operator", Duration::from_secs(30)).await?;
    let crd = Api::<CustomResourceDefinition>::all(cp.client()).get_opt(CRD).await?;
    assert!(crd.is_some_and(|c| c.metadata.deletion_timestamp.is_none()), "helm uninstall must keep the CRD");
    Ok(())
}
