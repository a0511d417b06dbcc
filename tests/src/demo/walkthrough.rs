//! The walkthrough: a DittoServer, its pod as local processes, and adapter toggles through DittoFS's API,
//! each followed until Kubernetes matches (Service, NetworkPolicy and container port per running adapter).

use std::{collections::BTreeMap, path::Path, time::Duration};

use anyhow::Context as _;
use serde_json::json;

use super::Progress;
use crate::{
    dittofs::ADMIN_PASSWORD,
    jaeger::{AGENT, Jaeger, now_us},
    kube_env::ControlPlane,
    pod::{Pod, start_controller},
    scenario::{NS, SERVER, converge, create_server, set_up},
};

/// What kubectl shows, or why it could not (the demo goes on either way).
fn kubectl(cp: &ControlPlane, args: &[&str]) -> String {
    cp.kubectl(args).unwrap_or_else(|e| format!("({e:#})\n"))
}

/// Runs the walkthrough, exporting traces to `jaeger` if given; `Ok(true)` when every step converged.
pub(super) async fn run(
    cp: &ControlPlane,
    dir: &Path,
    progress: &Progress,
    interactive: bool,
    jaeger: Option<&Jaeger>,
) -> anyhow::Result<bool> {
    progress.step("install the DittoServer CRD, namespace demo and its admin Secret", set_up(cp)).await?;
    let client = cp.client();
    let otel = jaeger.map(Jaeger::exporter_env).unwrap_or_default();
    let (mut controller, _) =
        progress.step("start dittofs-controller", async { start_controller(cp, NS, dir, &otel) }).await?;
    progress.step("create DittoServer demo/files", create_server(&client)).await?;
    let mut pod = progress
        .step("start pod files-0 (DittoFS + agent, as its containers)", Pod::start(cp, NS, SERVER, dir))
        .await?;
    let flavor = if pod.fs.flavor.is_real() { "the real DittoFS (DITTOFS_BIN)" } else { "dittofs-emulator" };
    let admin = pod.fs.admin().await?;
    let nfs_port = i32::from(pod.fs.adapter_port("nfs").context("nfs port")?);
    let smb_port = i32::from(pod.fs.adapter_port("smb").context("smb port")?);
    let moved_port = i32::from(crate::process::free_port()?);

    let mut want: BTreeMap<String, i32> = [("nfs".into(), nfs_port), ("smb".into(), smb_port)].into();
    let mut results: Vec<(String, anyhow::Result<Duration>)> = Vec::new();
    let mut smb_enabled_at = None;
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
        let since = now_us();
        admin.put(&format!("/api/v1/adapters/{kind}"), &body).await?.expect_status(200)?;
        let took = converge(&client, &want).await;
        if what == "enable SMB" && took.is_ok() {
            smb_enabled_at = Some(since);
        }
        let shown = match &took {
            Ok(d) => format!("converged in {:.2}s", d.as_secs_f64()),
            Err(e) => format!("NOT converged: {e:#}"),
        };
        println!(
            "== {what} (PUT /api/v1/adapters/{kind} {body}): {shown}\n{}",
            kubectl(cp, &["get", "svc,networkpolicy", "-n", NS])
        );
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
    // Looked up once every step is done: waiting for the export between steps would delay the port move
    // past the agent's follow-up poll (port edits are seen by polls, not by the fast path).
    let traced = match (jaeger, smb_enabled_at) {
        (Some(jaeger), Some(since)) => {
            let trace = jaeger.wait_for_change(SERVER, "smb", "adapter.apply", since).await;
            Some(trace.map(|id| jaeger.trace_url(&id)))
        }
        _ => None,
    };
    match &traced {
        Some(Ok(url)) => {
            println!("\nThe trace of 'enable SMB' (agent poll → status apply → reconcile → Service apply):\n  {url}")
        }
        Some(Err(e)) => println!("\nNo complete trace of 'enable SMB' in Jaeger: {e:#}"),
        None => {}
    }
    if let Some(jaeger) = jaeger {
        println!("  every agent trace: {}/api/traces?service={AGENT}&lookback=1h", jaeger.query);
    }
    let all_ok = results.iter().all(|(_, r)| r.is_ok()) && traced.as_ref().is_none_or(Result::is_ok);
    if interactive {
        println!("\nKeep exploring (everything stays up until Ctrl-C):");
        println!("  export KUBECONFIG={}", cp.kubeconfig_path().display());
        println!("  {} get ditto,svc,networkpolicy -n {NS}", cp.bin_dir().join("kubectl").display());
        println!("  {} describe ditto {SERVER} -n {NS}", cp.bin_dir().join("kubectl").display());
        println!("  DittoFS API: {}  (admin / {ADMIN_PASSWORD})", pod.fs.url());
        println!(
            "  curl -s -X PUT -H \"Authorization: Bearer $(curl -s {0}/api/v1/auth/login -d '{{\"username\":\"admin\",\"password\":\"{ADMIN_PASSWORD}\"}}' | sed 's/.*access_token\":\"\\([^\"]*\\).*/\\1/')\" {0}/api/v1/adapters/smb -d '{{\"enabled\":false}}'",
            pod.fs.url()
        );
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
