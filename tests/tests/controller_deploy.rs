//! `deploy/` applied to the real apiserver: the CRD, the controller's RBAC and Deployment are accepted
//! (its pods pass the `restricted` Pod Security level), and a controller holding exactly that RBAC —
//! authenticated as its ServiceAccount — reconciles a server end to end without a single refusal,
//! into a namespace that enforces `restricted` for the DittoFS pod too.

use std::time::Duration;

use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::{Api, ListParams, Patch, PatchParams};
use serde_json::json;

use dittofs_api::{DittoServer, conditions};
use dittofs_controller::{Config, LeaderElectionConfig};
use dittofs_tests::controller_world::*;
use dittofs_tests::kube_env::{ControlPlane, wait_until};
use dittofs_tests::objects::*;

#[tokio::test]
#[ignore = "real-server tier: needs the Kubernetes test binaries; run `make test`"]
async fn deploy_manifests_are_accepted_and_their_rbac_is_enough() -> anyhow::Result<()> {
    let cp = ControlPlane::shared();
    cp.with_temp_ns("ctrl-deploy", async |ns| {
        let admin = ns.client();
        let mut applied = apply_deploy_file(&admin, "crds/dittoservers.yaml").await?;
        install_crd(admin.clone()).await?;
        applied.extend(apply_deploy_file(&admin, "controller/controller.yaml").await?);
        applied.extend(apply_deploy_file(&admin, "rbac/controller-rbac.yaml").await?);
        eprintln!("applied: {applied:?}");

        // The Deployment's pods are admitted under `restricted` (no kubelet: they stay Pending).
        let pods: Api<Pod> = Api::namespaced(admin.clone(), "dittofs-system");
        wait_until("the controller Deployment's two pods", Duration::from_secs(60), async || {
            let n = pods
                .list(&ListParams::default().labels("app.kubernetes.io/name=dittofs-controller"))
                .await?
                .items
                .len();
            anyhow::ensure!(n == 2, "{n} pods");
            Ok(())
        })
        .await?;

        // The test namespace enforces `restricted` too: the DittoFS pod must pass it.
        let namespaces: Api<Namespace> = Api::all(admin.clone());
        namespaces
            .patch(
                ns.name(),
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {"labels": {"pod-security.kubernetes.io/enforce": "restricted"}}})),
            )
            .await?;

        // The controller, as its ServiceAccount, watching every namespace, electing in dittofs-system.
        let sa_client = service_account_client(cp, "dittofs-system", "dittofs-controller", Reads::All).await?;
        let mut config = Config::new(AGENT_IMAGE);
        config.identity = "in-process".into();
        config.leader_election = Some(LeaderElectionConfig::new("dittofs-controller-leader", "dittofs-system"));
        let running = start_with(sa_client, config);

        create_server(ns, &server("fs", json!({"storage": {"metadataSize": "1Gi"}, "metrics": {"enabled": true}}))?)
            .await?;
        let servers: Api<DittoServer> = ns.api();
        wait_for_condition(&servers, "fs", conditions::CONFIG_READY, "True", Duration::from_secs(30)).await?;
        let pods: Api<Pod> = ns.api();
        wait_until("Pod fs-0 admitted under restricted", Duration::from_secs(30), async || {
            Ok(pods.get("fs-0").await?)
        })
        .await?;
        // Metrics off: the Service is deleted (the one delete the controller needs).
        servers
            .patch("fs", &PatchParams::default(), &Patch::Merge(json!({"spec": {"metrics": {"enabled": false}}})))
            .await?;
        let services: Api<k8s_openapi::api::core::v1::Service> = ns.api();
        wait_gone(&services, "fs-metrics", Duration::from_secs(15)).await?;
        // The way down (Services, StatefulSet, waiting for the pods, finalizers) needs nothing more.
        servers.delete("fs", &Default::default()).await?;
        wait_gone(&servers, "fs", Duration::from_secs(60)).await?;
        // Least privilege: the controller reads Secrets by name only, it cannot list or watch them.
        let sa_client = service_account_client(cp, "dittofs-system", "dittofs-controller", Reads::All).await?;
        let secrets: Api<k8s_openapi::api::core::v1::Secret> = Api::all(sa_client);
        let listed = secrets.list(&ListParams::default()).await;
        assert!(matches!(&listed, Err(kube::Error::Api(s)) if s.code == 403), "{listed:?}");
        let metrics = running.controller.metrics();
        assert_eq!(metrics.reconcile_count("forbidden"), 0, "the deployed RBAC refused something");
        assert!(metrics.reconcile_count("ok") > 0);
        assert_eq!(metrics.leader_acquisitions.get(), 1);
        running.stop().await
    })
    .await
}
