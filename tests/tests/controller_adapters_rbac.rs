//! The adapter part under the deployed RBAC (`deploy/rbac/controller-rbac.yaml`), the controller
//! authenticated as its ServiceAccount: listing, creating, updating and deleting adapter Services and
//! NetworkPolicies, the container ports and the pruning of stale agent entries are all allowed.

use std::time::Duration;

use kube::api::{Api, Patch, PatchParams};
use serde_json::json;

use dittofs_api::{DittoServer, conditions};
use dittofs_tests::controller_world::adapters::*;
use dittofs_tests::controller_world::*;
use dittofs_tests::kube_env::ControlPlane;
use dittofs_tests::objects::*;

const CR: &str = "fs";
const WAIT: Duration = Duration::from_secs(10);

#[tokio::test]
#[ignore = "real-server tier: needs the Kubernetes test binaries; run `make test`"]
async fn the_deployed_rbac_allows_every_adapter_write() -> anyhow::Result<()> {
    let cp = ControlPlane::shared();
    cp.with_temp_ns("ctrl-adapter-rbac", async |ns| {
        let admin = ns.client();
        apply_deploy_file(&admin, "crds/dittoservers.yaml").await?;
        install_crd(admin.clone()).await?;
        apply_deploy_file(&admin, "controller/controller.yaml").await?;
        apply_deploy_file(&admin, "rbac/controller-rbac.yaml").await?;
        let sa_client = service_account_client(cp, "dittofs-system", "dittofs-controller", Reads::All).await?;
        let running = start_controller(sa_client, ns.name());

        create_server(ns, &server(CR, json!({"storage": {"metadataSize": "1Gi"}}))?).await?;
        let servers: Api<DittoServer> = ns.api();
        wait_for_condition(&servers, CR, conditions::CONFIG_READY, "True", Duration::from_secs(30)).await?;
        // Reports written as the agents write them (here with admin rights: the agent's own RBAC is
        // tested elsewhere); fs-1's entry is stale and must be pruned.
        report(&servers, CR, "fs-0", vec![serving("nfs", 12049), serving("smb", 1445)]).await?;
        report(&servers, CR, "fs-1", vec![]).await?;
        wait_view(ns, CR, &expected(CR, &[("nfs", 12049), ("smb", 1445)], true), WAIT).await?;
        report(&servers, CR, "fs-0", vec![serving("nfs", 2049)]).await?;
        wait_view(ns, CR, &expected(CR, &[("nfs", 2049)], true), WAIT).await?;
        let off = json!({"spec": {"adapterServices": {"syncContainerPorts": false, "annotations": {"a": "b"}}}});
        servers.patch(CR, &PatchParams::default(), &Patch::Merge(&off)).await?;
        wait_view(ns, CR, &expected(CR, &[("nfs", 2049)], false), WAIT).await?;
        report(&servers, CR, "fs-0", vec![]).await?;
        wait_view(ns, CR, &View::default(), WAIT).await?;
        wait_adapters_ready(&servers, CR, "True", "AdaptersExposed").await?;
        let agents: Vec<String> =
            servers.get(CR).await?.status.unwrap().agents.into_iter().map(|a| a.pod_name).collect();
        assert_eq!(agents, ["fs-0"], "the stale entry was pruned");

        let metrics = running.controller.metrics();
        assert_eq!(metrics.reconcile_count("forbidden"), 0, "the deployed RBAC refused something");
        assert_eq!(metrics.reconcile_count("adapters_failed"), 0, "an adapter write failed");
        running.stop().await
    })
    .await
}
