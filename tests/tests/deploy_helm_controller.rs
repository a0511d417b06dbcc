//! The controller binary run as the chart deploys it: the env of the rendered Deployment's container
//! (field references resolved as the kubelet would, the admin address moved to a free loopback port) and
//! a kubeconfig holding only a token of the chart's ServiceAccount. With the default values (ClusterRole)
//! it reconciles a DittoServer end to end without one refusal; in the namespaced mode (a Role in the one
//! watched namespace) it reconciles there and is confined to it.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Service;
use kube::api::{Api, ListParams, Patch, PatchParams};
use serde_json::{Value, json};

use dittofs_api::{DittoServer, conditions};
use dittofs_tests::deploy::{apply_docs, find, helm_template};
use dittofs_tests::kube_env::{ControlPlane, TempNamespace, wait_until};
use dittofs_tests::objects::{
    Reads, create_server, install_crd, server, service_account_client, wait_for_condition, wait_gone,
};
use dittofs_tests::pod::{Proc, token_kubeconfig};
use dittofs_tests::{free_port, workspace_bin};

/// A cluster-wide controller would also reconcile the other test's servers: one at a time.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The process and the URL of its admin server.
struct Running {
    proc: Proc,
    admin: String,
}

/// The rendered Deployment's controller env as the kubelet would set it for pod `pod` in `namespace`.
/// The admin address moves to a free loopback port, and the OTLP endpoint is dropped: nothing listens
/// here (traces are another test's), and an exporter retrying an unknown host would only slow the stop.
fn controller_env(deployment: &Value, pod: &str, namespace: &str) -> anyhow::Result<(Vec<(String, String)>, u16)> {
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    let port = free_port()?;
    let mut env = Vec::new();
    for var in container["env"].as_array().into_iter().flatten() {
        let name = var["name"].as_str().unwrap_or_default().to_owned();
        let value = match (&var["value"], var["valueFrom"]["fieldRef"]["fieldPath"].as_str()) {
            (Value::String(v), _) => v.clone(),
            (_, Some("metadata.name")) => pod.to_owned(),
            (_, Some("metadata.namespace")) => namespace.to_owned(),
            _ => anyhow::bail!("cannot resolve env {var}"),
        };
        match name.as_str() {
            "ADMIN_ADDR" => env.push((name, format!("127.0.0.1:{port}"))),
            "OTEL_EXPORTER_OTLP_ENDPOINT" => {}
            _ => env.push((name, value)),
        }
    }
    Ok((env, port))
}

/// Starts the controller of the rendered `docs` (applied in `namespace`) as pod `pod`, once it serves /readyz.
async fn start(cp: &ControlPlane, docs: &[Value], namespace: &str, pod: &str, dir: &Path) -> anyhow::Result<Running> {
    let deployment = docs.iter().find(|d| d["kind"] == "Deployment").ok_or_else(|| anyhow::anyhow!("no Deployment"))?;
    let account = deployment["spec"]["template"]["spec"]["serviceAccountName"].as_str().unwrap_or_default();
    let token = cp.service_account_token(namespace, account).await?;
    let kubeconfig = dir.join("controller.kubeconfig");
    token_kubeconfig(cp, &token, namespace, &kubeconfig)?;
    let (env, port) = controller_env(deployment, pod, namespace)?;
    eprintln!("controller env: {env:?}");
    let mut cmd = Command::new(workspace_bin("dittofs-controller")?);
    cmd.env_clear().env("PATH", std::env::var_os("PATH").unwrap_or_default()).env("KUBECONFIG", &kubeconfig);
    cmd.envs(env);
    let mut running =
        Running { proc: Proc::spawn(pod, cmd, dir.join("controller.log"))?, admin: format!("http://127.0.0.1:{port}") };
    let http = reqwest::Client::new();
    let ready = wait_until("the controller's /readyz", Duration::from_secs(30), async || {
        let status = http.get(format!("{}/readyz", running.admin)).send().await?.status();
        anyhow::ensure!(status == 200, "{status}");
        Ok(())
    })
    .await;
    if let Err(e) = ready {
        running.proc.stop();
        anyhow::bail!("{e:#}\n{}", running.proc.log_tail(40));
    }
    Ok(running)
}

impl Running {
    /// A counter of the controller's /metrics (0 when the series does not exist yet).
    async fn counter(&self, series: &str) -> anyhow::Result<f64> {
        let text = reqwest::get(format!("{}/metrics", self.admin)).await?.text().await?;
        Ok(text.lines().find_map(|l| l.strip_prefix(series)?.trim().parse().ok()).unwrap_or(0.0))
    }

    /// No request was refused by RBAC and some reconciles succeeded; then SIGTERM, and a clean exit.
    ///
    /// RBAC refusals are read from the log ("… is forbidden: User … cannot …"), not from the `forbidden`
    /// reconcile counter: on the shared control plane a cluster-wide controller also meets other tests'
    /// servers, whose namespaces may be terminating, a 403 of admission rather than of RBAC.
    async fn finish(mut self) -> anyhow::Result<()> {
        let ok = self.counter("dittofs_controller_reconciles_total{result=\"ok\"}").await?;
        let status = self.proc.terminate(Duration::from_secs(15));
        let log = self.proc.log_text();
        let refused: Vec<&str> = log.lines().filter(|l| l.contains("is forbidden: User")).collect();
        if !refused.is_empty() || status.as_ref().map_or(true, |s| !s.success()) {
            eprintln!("{}", self.proc.log_tail(60));
        }
        assert!(refused.is_empty(), "the chart's RBAC refused requests: {refused:?}");
        assert!(ok > 0.0, "no reconcile succeeded");
        assert!(status?.success(), "the controller did not stop cleanly on SIGTERM");
        Ok(())
    }
}

/// Server `fs` in `ns` up (its agent image checked) and down again: every verb the controller uses.
async fn server_round_trip(ns: &TempNamespace<'_>, agent_image: &str) -> anyhow::Result<()> {
    create_server(ns, &server("fs", json!({"storage": {"metadataSize": "1Gi"}, "metrics": {"enabled": true}}))?)
        .await?;
    let servers: Api<DittoServer> = ns.api();
    wait_for_condition(&servers, "fs", conditions::CONFIG_READY, "True", Duration::from_secs(30)).await?;
    let sts = Api::<StatefulSet>::namespaced(ns.client(), ns.name()).get("fs").await?;
    let pod = sts.spec.and_then(|s| s.template.spec).unwrap_or_default();
    let agent = pod.containers.iter().find(|c| c.name == dittofs_api::names::AGENT_CONTAINER);
    assert_eq!(agent.and_then(|c| c.image.as_deref()), Some(agent_image), "the chart's agent image is injected");

    servers
        .patch("fs", &PatchParams::default(), &Patch::Merge(json!({"spec": {"metrics": {"enabled": false}}})))
        .await?;
    let services: Api<Service> = ns.api();
    wait_gone(&services, "fs-metrics", Duration::from_secs(15)).await?;
    servers.delete("fs", &Default::default()).await?;
    wait_gone(&servers, "fs", Duration::from_secs(60)).await
}

/// The Lease `namespace/name` is held by `holder`.
async fn wait_leader(ns: &TempNamespace<'_>, name: &str, holder: &str) -> anyhow::Result<()> {
    let leases: Api<Lease> = ns.api();
    wait_until(&format!("Lease {name} held by {holder}"), Duration::from_secs(20), async || {
        let now = leases.get(name).await?.spec.and_then(|s| s.holder_identity);
        anyhow::ensure!(now.as_deref() == Some(holder), "holder {now:?}");
        Ok(())
    })
    .await
}

#[tokio::test]
#[ignore = "real-server tier: needs the Kubernetes test binaries, helm and the built controller; run `make test`"]
async fn the_default_chart_rbac_runs_the_controller_cluster_wide() -> anyhow::Result<()> {
    let _one = ONE_AT_A_TIME.lock().await;
    let cp = ControlPlane::shared();
    cp.with_temp_ns("helm-run", async |ns| {
        let docs = helm_template("run", ns.name(), &[])?;
        apply_docs(&ns.client(), &docs, "helm-run-test").await?;
        // The authorizer learns of the new ClusterRoleBinding through an informer: wait until it applies.
        service_account_client(cp, ns.name(), "run-dittofs-operator", Reads::All).await?;
        let dir = tempfile::tempdir()?;
        let running = start(cp, &docs, ns.name(), "run-dittofs-operator-0", dir.path()).await?;
        wait_leader(ns, "run-dittofs-operator-leader", "run-dittofs-operator-0").await?;
        let servers = TempNamespace::create(cp, "helm-run-servers").await?;
        server_round_trip(&servers, "ghcr.io/dittofs/dittofs-agent:0.1.0").await?;
        servers.delete().await?;
        running.finish().await
    })
    .await
}

#[tokio::test]
#[ignore = "real-server tier: needs the Kubernetes test binaries, helm and the built controller; run `make test`"]
async fn the_namespaced_chart_confines_the_controller_to_its_namespace() -> anyhow::Result<()> {
    let _one = ONE_AT_A_TIME.lock().await;
    let cp = ControlPlane::shared();
    cp.with_temp_ns("helm-nsd", async |ns| {
        let (watched, other) =
            (TempNamespace::create(cp, "helm-nsd-watched").await?, TempNamespace::create(cp, "helm-nsd-other").await?);
        let set = format!(
            "watchNamespaces[0]={},metrics.serviceMonitor.enabled=false,metrics.agentPodMonitor.enabled=false",
            watched.name()
        );
        let docs = helm_template(
            "nsd",
            ns.name(),
            &["-f", "deploy/helm/dittofs-operator/ci/namespaced-values.yaml", "--set", &set],
        )?;
        assert!(find(&docs, "Role", "dfs-ns").is_ok());
        install_crd(ns.client()).await?;
        apply_docs(&ns.client(), &docs, "helm-nsd-test").await?;
        let sa = cp.service_account_client(ns.name(), "dfs-ns-controller").await?;
        let in_watched: Api<DittoServer> = Api::namespaced(sa.clone(), watched.name());
        wait_until("the Role to let the controller list DittoServers", Duration::from_secs(15), async || {
            Ok(in_watched.list(&ListParams::default().limit(1)).await.map(drop)?)
        })
        .await?;
        // Confined: nothing cluster-wide, nothing in another namespace.
        let forbidden = |r: Result<_, kube::Error>| matches!(r, Err(kube::Error::Api(s)) if s.code == 403);
        assert!(forbidden(Api::<DittoServer>::all(sa.clone()).list(&ListParams::default()).await));
        assert!(forbidden(Api::<DittoServer>::namespaced(sa.clone(), other.name()).list(&ListParams::default()).await));

        // A server in the other namespace first: a controller seeing it would reconcile it alongside.
        create_server(&other, &server("elsewhere", json!({"storage": {"metadataSize": "1Gi"}}))?).await?;
        let dir = tempfile::tempdir()?;
        let running = start(cp, &docs, ns.name(), "dfs-ns-0", dir.path()).await?;
        wait_leader(ns, "dfs-ns-lease", "dfs-ns-0").await?;
        server_round_trip(&watched, "registry.example/dittofs/agent:1.2.3-test").await?;
        let elsewhere = Api::<DittoServer>::namespaced(other.client(), other.name()).get("elsewhere").await?;
        assert!(elsewhere.status.is_none(), "the server of another namespace was reconciled: {:?}", elsewhere.status);
        assert!(Api::<StatefulSet>::namespaced(other.client(), other.name()).get_opt("elsewhere").await?.is_none());
        watched.delete().await?;
        other.delete().await?;
        running.finish().await
    })
    .await
}
