//! The walkthrough: a DittoServer, its pod as local processes, and adapter toggles through DittoFS's API,
//! each followed until Kubernetes matches (Service, NetworkPolicy and container port per running adapter).

use std::{collections::BTreeMap, path::Path, process::Command, time::{Duration, Instant}};

use anyhow::Context as _;
use dittofs_api::{DittoServer, labels, names};
use k8s_openapi::{
    ByteString,
    api::{
        apps::v1::StatefulSet,
        core::v1::{Namespace, Secret, Service},
        networking::v1::NetworkPolicy,
    },
    apimachinery::pkg::util::intstr::IntOrString,
};
use kube::{Api, api::{ListParams, PostParams}};
use serde_json::json;

use super::{CHECK_EVERY, Progress};
use crate::{
    dittofs::ADMIN_PASSWORD,
    kube_env::ControlPlane,
    pod::{Pod, install_crd, start_controller},
};

const NS: &str = "demo";
const SERVER: &str = "files";
const CONVERGE_TIMEOUT: Duration = Duration::from_secs(20);

/// Adapter type → (Service port, NetworkPolicy port, container port) as Kubernetes has them.
type Seen = BTreeMap<String, (Option<i32>, Option<i32>, Option<i32>)>;

async fn seen(client: &kube::Client) -> anyhow::Result<Seen> {
    let mut out = Seen::new();
    let by_type = |labels: &Option<BTreeMap<String, String>>| {
        labels.as_ref().and_then(|l| l.get(labels::ADAPTER_TYPE_LABEL).cloned()).unwrap_or_default()
    };
    let svcs = Api::<Service>::namespaced(client.clone(), NS)
        .list(&ListParams::default().labels(&labels::adapter_services_selector(SERVER)))
        .await?;
    for svc in svcs {
        let port = svc.spec.and_then(|s| s.ports).and_then(|p| p.first().map(|p| p.port));
        out.entry(by_type(&svc.metadata.labels)).or_default().0 = port;
    }
    let nps = Api::<NetworkPolicy>::namespaced(client.clone(), NS)
        .list(&ListParams::default().labels(&labels::adapter_network_policies_selector(SERVER)))
        .await?;
    for np in nps {
        let port = np.spec.and_then(|s| s.ingress).and_then(|i| i.first().and_then(|r| r.ports.clone()));
        let port = port.and_then(|p| p.first().and_then(|p| p.port.clone()));
        out.entry(by_type(&np.metadata.labels)).or_default().1 = match port {
            Some(IntOrString::Int(p)) => Some(p),
            _ => None,
        };
    }
    let sts = Api::<StatefulSet>::namespaced(client.clone(), NS).get(SERVER).await?;
    let containers = sts.spec.and_then(|s| s.template.spec).map(|p| p.containers).unwrap_or_default();
    for port in containers.iter().filter(|c| c.name == "dittofs").flat_map(|c| c.ports.clone().unwrap_or_default()) {
        let name = port.name.unwrap_or_default();
        if let Some(kind) = name.strip_prefix(names::ADAPTER_PORT_PREFIX) {
            out.entry(kind.to_string()).or_default().2 = Some(port.container_port);
        }
    }
    Ok(out)
}

/// Waits until exactly `want` (type → port) is exposed; returns how long that took.
async fn converge(client: &kube::Client, want: &BTreeMap<String, i32>) -> anyhow::Result<Duration> {
    let start = Instant::now();
    let expected: Seen = want.iter().map(|(k, p)| (k.clone(), (Some(*p), Some(*p), Some(*p)))).collect();
    loop {
        let now = seen(client).await?;
        if now == expected {
            return Ok(start.elapsed());
        }
        if start.elapsed() > CONVERGE_TIMEOUT {
            anyhow::bail!("not converged after {CONVERGE_TIMEOUT:?}: want {expected:?}, Kubernetes has {now:?}");
        }
        tokio::time::sleep(CHECK_EVERY).await;
    }
}

fn kubectl(cp: &ControlPlane, args: &[&str]) -> String {
    let out = Command::new(cp.bin_dir().join("kubectl")).arg("--kubeconfig").arg(cp.kubeconfig_path()).args(args).output();
    match out {
        Ok(o) => format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr)),
        Err(e) => format!("(kubectl failed: {e})\n"),
    }
}

async fn set_up(cp: &ControlPlane, progress: &Progress) -> anyhow::Result<()> {
    let client = cp.client();
    progress.step("install the DittoServer CRD", install_crd(client.clone())).await?;
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": NS}}))?;
    Api::<Namespace>::all(client.clone()).create(&PostParams::default(), &ns).await?;
    // The bootstrap admin password the DittoServer references (the harness starts DittoFS with it).
    let mut admin = Secret::default();
    admin.metadata.name = Some("files-admin".into());
    admin.data = Some([("password".to_string(), ByteString(ADMIN_PASSWORD.as_bytes().to_vec()))].into());
    Api::<Secret>::namespaced(client, NS).create(&PostParams::default(), &admin).await?;
    Ok(())
}

async fn create_server(client: &kube::Client) -> anyhow::Result<()> {
    let ds: DittoServer = serde_json::from_value(json!({
        "apiVersion": "dittofs.dittofs.com/v1alpha1", "kind": "DittoServer",
        "metadata": {"name": SERVER, "namespace": NS},
        "spec": {
            "storage": {"metadataSize": "1Gi"},
            "identity": {"admin": {"passwordSecretRef": {"name": "files-admin", "key": "password"}}},
            "adapterDiscovery": {"pollingInterval": "30s"},
        },
    }))?;
    Api::<DittoServer>::namespaced(client.clone(), NS).create(&PostParams::default(), &ds).await?;
    Ok(())
}

/// Runs the walkthrough; `Ok(true)` when every step converged.
pub(super) async fn run(cp: &ControlPlane, dir: &Path, progress: &Progress, interactive: bool) -> anyhow::Result<bool> {
    set_up(cp, progress).await?;
    let client = cp.client();
    let (mut controller, _) = progress.step("start dittofs-controller", async { start_controller(cp, NS, dir) }).await?;
    progress.step("create DittoServer demo/files", create_server(&client)).await?;
    let mut pod = progress.step("start pod files-0 (DittoFS + agent, as its containers)", Pod::start(cp, NS, SERVER, dir)).await?;
    let flavor = if pod.fs.flavor.is_real() { "the real DittoFS (DITTOFS_BIN)" } else { "dittofs-emulator" };
    let admin = pod.fs.admin().await?;
    let nfs_port = i32::from(pod.fs.adapter_port("nfs").context("nfs port")?);
    let smb_port = i32::from(pod.fs.adapter_port("smb").context("smb port")?);
    let moved_port = i32::from(crate::process::free_port()?);

    let mut want: BTreeMap<String, i32> = [("nfs".into(), nfs_port), ("smb".into(), smb_port)].into();
    let mut results: Vec<(String, anyhow::Result<Duration>)> = Vec::new();
    let first = converge(&client, &want).await;
    println!("\n== start: NFS and SMB run ({flavor})\n{}", kubectl(cp, &["get", "ditto,svc,networkpolicy", "-n", NS]));
    results.push(("agent + controller first sync (nfs, smb)".into(), first));

    let steps: [(&str, &str, serde_json::Value); 5] = [
        ("disable SMB", "smb", json!({"enabled": false})),
        ("enable SMB", "smb", json!({"enabled": true})),
        ("move NFS to another port", "nfs", json!({"port": moved_port})),
        ("disable NFS", "nfs", json!({"enabled": false})),
        ("enable NFS", "nfs", json!({"enabled": true})),
    ];
    for (what, kind, body) in steps {
        match (body.get("enabled").and_then(|e| e.as_bool()), body.get("port").and_then(|p| p.as_i64())) {
            (Some(false), _) => {
                want.remove(kind);
            }
            (Some(true), _) => {
                want.insert(kind.into(), if kind == "smb" { smb_port } else { moved_port });
            }
            (_, Some(port)) => {
                want.insert(kind.into(), port as i32);
            }
            _ => {}
        }
        admin.put(&format!("/api/v1/adapters/{kind}"), &body).await?.expect_status(200)?;
        let took = converge(&client, &want).await;
        let shown = match &took {
            Ok(d) => format!("converged in {:.2}s", d.as_secs_f64()),
            Err(e) => format!("NOT converged: {e:#}"),
        };
        println!("== {what} (PUT /api/v1/adapters/{kind} {body}): {shown}\n{}", kubectl(cp, &["get", "svc,networkpolicy", "-n", NS]));
        results.push((what.to_string(), took));
    }
    println!("{}", kubectl(cp, &["get", "ditto", "-n", NS]));

    println!("Summary (time from the DittoFS API call until Service, NetworkPolicy and container port match)");
    for (what, took) in &results {
        match took {
            Ok(d) => println!("  {:>7.2}s  {what}", d.as_secs_f64()),
            Err(_) => println!("  {:>8}  {what}", "FAILED"),
        }
    }
    let all_ok = results.iter().all(|(_, r)| r.is_ok());
    if interactive {
        println!("\nKeep exploring (everything stays up until Ctrl-C):");
        println!("  export KUBECONFIG={}", cp.kubeconfig_path().display());
        println!("  {} get ditto,svc,networkpolicy -n {NS}", cp.bin_dir().join("kubectl").display());
        println!("  {} describe ditto {SERVER} -n {NS}", cp.bin_dir().join("kubectl").display());
        println!("  DittoFS API: {}  (admin / {ADMIN_PASSWORD})", pod.fs.url());
        println!("  curl -s -X PUT -H \"Authorization: Bearer $(curl -s {0}/api/v1/auth/login -d '{{\"username\":\"admin\",\"password\":\"{ADMIN_PASSWORD}\"}}' | sed 's/.*access_token\":\"\\([^\"]*\\).*/\\1/')\" {0}/api/v1/adapters/smb -d '{{\"enabled\":false}}'", pod.fs.url());
        println!("  logs: {}", dir.display());
        tokio::signal::ctrl_c().await?;
    }
    pod.agent.stop();
    controller.stop();
    if !all_ok {
        eprintln!("{}\n{}", pod.agent.log_tail(30), controller.log_tail(30));
    }
    Ok(all_ok)
}
