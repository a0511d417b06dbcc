//! Pod Security `restricted`, decided by the real apiserver's admission: in a namespace enforcing it, Pods
//! built from the controller Deployment's template (the Helm chart's default render and deploy/'s kustomize
//! render) and from the StatefulSet template the controller generates for a DittoServer are admitted, and a
//! pod that breaks the profile is refused, so the namespace really enforces it.

use std::time::Duration;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

use dittofs_tests::controller_world::start_controller;
use dittofs_tests::deploy::{find, helm_template, kustomize, pod_from_template, repo_root};
use dittofs_tests::kube_env::{ControlPlane, TempNamespace, wait_until};
use dittofs_tests::objects::{create_server, install_crd, server};

/// Creates `pod` in `ns` (with its ServiceAccount, which the ServiceAccount admission plugin requires).
async fn create_pod(ns: &TempNamespace<'_>, pod: &Value) -> Result<(), kube::Error> {
    if let Some(account) = pod["spec"]["serviceAccountName"].as_str() {
        let sa: ServiceAccount =
            serde_json::from_value(json!({"metadata": {"name": account}})).expect("a ServiceAccount");
        match ns.api::<ServiceAccount>().create(&PostParams::default(), &sa).await {
            Err(kube::Error::Api(s)) if s.code == 409 => {}
            other => drop(other?),
        }
    }
    let pods: Api<DynamicObject> = Api::namespaced_with(
        ns.client(),
        ns.name(),
        &kube::api::ApiResource::erase::<k8s_openapi::api::core::v1::Pod>(&()),
    );
    let obj: DynamicObject = serde_json::from_value(pod.clone()).expect("a Pod object");
    pods.create(&PostParams::default(), &obj).await.map(drop)
}

/// Admitted, or a failure naming the pod and the apiserver's reason.
async fn admitted(ns: &TempNamespace<'_>, what: &str, pod: &Value) -> anyhow::Result<()> {
    create_pod(ns, pod).await.map_err(|e| anyhow::anyhow!("{what}: refused under restricted: {e}"))?;
    eprintln!("{what}: admitted");
    Ok(())
}

#[tokio::test]
#[ignore = "real-server tier: needs the Kubernetes test binaries and helm; run `make test`"]
async fn restricted_admits_the_controller_and_server_pods_and_refuses_a_privileged_one() -> anyhow::Result<()> {
    let cp = ControlPlane::shared();
    cp.with_temp_ns("psa", async |ns| {
        let labels = json!({"metadata": {"labels": {
            "pod-security.kubernetes.io/enforce": "restricted",
            "pod-security.kubernetes.io/enforce-version": "latest",
        }}});
        Api::<Namespace>::all(ns.client()).patch(ns.name(), &PatchParams::default(), &Patch::Merge(labels)).await?;

        // (a) the controller's pod, as Helm renders it by default and as deploy/ renders it.
        let chart = helm_template("psa", ns.name(), &[])?;
        let helm_pod = pod_from_template(find(&chart, "Deployment", "psa-dittofs-operator")?, "controller-helm")?;
        admitted(ns, "the chart's controller pod", &helm_pod).await?;
        let kustomized = kustomize(cp, &repo_root().join("deploy"))?;
        let pod = pod_from_template(find(&kustomized, "Deployment", "dittofs-controller")?, "controller-kustomize")?;
        admitted(ns, "deploy/'s controller pod", &pod).await?;

        // (b) the DittoFS pod from the StatefulSet the controller generates (agent sidecar included).
        install_crd(ns.client()).await?;
        let running = start_controller(ns.client(), ns.name());
        create_server(ns, &server("fs", json!({"storage": {"metadataSize": "1Gi"}, "metrics": {"enabled": true}}))?)
            .await?;
        let statefulsets: Api<StatefulSet> = ns.api();
        let sts = wait_until("the controller's StatefulSet", Duration::from_secs(30), async || {
            Ok(statefulsets.get("fs").await?)
        })
        .await?;
        let sts = serde_json::to_value(&sts)?;
        let pod = pod_from_template(&sts, "dittofs-from-template")?;
        let containers: Vec<&str> =
            pod["spec"]["containers"].as_array().into_iter().flatten().filter_map(|c| c["name"].as_str()).collect();
        assert!(containers.contains(&"agent"), "{containers:?}");
        admitted(ns, "the DittoServer's pod", &pod).await?;
        running.stop().await?;

        // A pod that breaks the profile is refused by Pod Security, not by anything else.
        let mut bad = helm_pod.clone();
        bad["metadata"]["name"] = json!("controller-privileged");
        bad["spec"]["containers"][0]["securityContext"] = json!({"privileged": true, "allowPrivilegeEscalation": true});
        let refused = create_pod(ns, &bad).await;
        match &refused {
            Err(kube::Error::Api(s))
                if s.code == 403 && s.message.contains("violates PodSecurity \"restricted:latest\"") =>
            {
                eprintln!("refused as it should be: {}", s.message);
            }
            other => panic!("a privileged pod must be refused by Pod Security: {other:?}"),
        }
        Ok(())
    })
    .await
}
