//! The adapter part of the controller tests: agent reports simulated exactly as the agent writes them
//! (server-side apply of its `status.agents` entry under its own field manager, on the status subresource),
//! a compact view of the adapter objects (Services, NetworkPolicies, container ports) and waits on it.

use std::time::Duration;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::ResourceExt;
use kube::api::{Api, ListParams, Patch, PatchParams};
use serde_json::{Value, json};

use dittofs_api::DittoServer;
use dittofs_api::constants::agent_field_manager;
use dittofs_api::labels::{adapter_network_policies_selector, adapter_services_selector};

use crate::kube_env::{TempNamespace, measure_until, wait_until};
use crate::objects::apply_body;

/// An adapter DittoFS serves (enabled, running, healthy).
pub fn serving(kind: &str, port: i32) -> Value {
    json!({"type": kind, "port": port, "enabled": true, "running": true, "health": "healthy"})
}

/// An adapter DittoFS has but does not run.
pub fn stopped(kind: &str, port: i32) -> Value {
    json!({"type": kind, "port": port, "enabled": false, "running": false, "health": "unknown"})
}

fn now() -> String {
    jiff::Timestamp::from_second(jiff::Timestamp::now().as_second()).expect("in range").to_string()
}

/// A W3C traceparent whose trace id encodes `n`.
pub fn traceparent(n: u64) -> String {
    format!("00-{n:032x}-{:016x}-01", n + 1)
}

/// Applies `pod`'s whole entry, as its agent does (a field it omits is released).
pub async fn report_entry(servers: &Api<DittoServer>, cr: &str, entry: Value) -> anyhow::Result<()> {
    let pod = entry["podName"].as_str().expect("podName").to_owned();
    let body = apply_body::<DittoServer>(cr, json!({"status": {"agents": [entry]}}));
    servers.patch_status(cr, &PatchParams::apply(&agent_field_manager(&pod)).force(), &Patch::Apply(&body)).await?;
    Ok(())
}

/// A successful poll of `pod` that saw `adapters`.
pub async fn report(servers: &Api<DittoServer>, cr: &str, pod: &str, adapters: Vec<Value>) -> anyhow::Result<()> {
    let entry = json!({
        "podName": pod,
        "reachability": {"reachable": true, "reason": "Reachable", "lastTransitionTime": now()},
        "adapters": adapters,
        "lastPollTime": now(),
        "traceparent": traceparent(7),
    });
    report_entry(servers, cr, entry).await
}

/// `pod`'s agent cannot reach DittoFS; it keeps the last list it saw (`adapters`).
pub async fn report_unreachable(
    servers: &Api<DittoServer>,
    cr: &str,
    pod: &str,
    adapters: Vec<Value>,
) -> anyhow::Result<()> {
    let entry = json!({
        "podName": pod,
        "reachability": {"reachable": false, "reason": "ConnectionRefused", "message": "connection refused",
                         "lastTransitionTime": now()},
        "adapters": adapters,
        "lastPollTime": now(),
    });
    report_entry(servers, cr, entry).await
}

/// The adapter objects of a server: (name, first port) of each labelled Service and NetworkPolicy,
/// and (name, port) of the `adapter-*` container ports.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct View {
    pub services: Vec<(String, i32)>,
    pub policies: Vec<(String, i32)>,
    pub ports: Vec<(String, i32)>,
}

/// What `adapters` ((type, port), sorted by type) should give, with container ports or without.
pub fn expected(cr: &str, adapters: &[(&str, i32)], container_ports: bool) -> View {
    let objects: Vec<(String, i32)> = adapters.iter().map(|(t, p)| (format!("{cr}-adapter-{t}"), *p)).collect();
    let ports =
        if container_ports { adapters.iter().map(|(t, p)| (format!("adapter-{t}"), *p)).collect() } else { vec![] };
    View { services: objects.clone(), policies: objects, ports }
}

/// The StatefulSet's `adapter-*` ports of the DittoFS container.
pub fn sts_adapter_ports(sts: &StatefulSet) -> Vec<(String, i32)> {
    let spec = sts.spec.as_ref().and_then(|s| s.template.spec.as_ref()).expect("pod spec");
    let dittofs = spec.containers.iter().find(|c| c.name == "dittofs").expect("dittofs container");
    let mut ports: Vec<_> = dittofs
        .ports
        .iter()
        .flatten()
        .filter_map(|p| p.name.clone().filter(|n| n.starts_with("adapter-")).map(|n| (n, p.container_port)))
        .collect();
    ports.sort();
    ports
}

/// Reads the adapter objects of server `cr`.
pub async fn view(ns: &TempNamespace<'_>, cr: &str) -> anyhow::Result<View> {
    let services = ns.api::<Service>().list(&ListParams::default().labels(&adapter_services_selector(cr))).await?;
    let policies =
        ns.api::<NetworkPolicy>().list(&ListParams::default().labels(&adapter_network_policies_selector(cr))).await?;
    let mut view = View {
        services: services
            .items
            .iter()
            .map(|s| (s.name_any(), s.spec.as_ref().and_then(|s| s.ports.as_ref()).map_or(0, |p| p[0].port)))
            .collect(),
        policies: policies.items.iter().map(|p| (p.name_any(), np_port(p))).collect(),
        ports: sts_adapter_ports(&ns.api::<StatefulSet>().get(cr).await?),
    };
    view.services.sort();
    view.policies.sort();
    Ok(view)
}

/// The first ingress port of a NetworkPolicy.
pub fn np_port(np: &NetworkPolicy) -> i32 {
    let rule = np.spec.as_ref().and_then(|s| s.ingress.as_ref()).and_then(|i| i.first());
    match rule.and_then(|r| r.ports.as_ref()).and_then(|p| p.first()).and_then(|p| p.port.clone()) {
        Some(IntOrString::Int(p)) => p,
        _ => 0,
    }
}

/// Waits until the adapter objects are `want`; returns how long that took.
pub async fn wait_view(ns: &TempNamespace<'_>, cr: &str, want: &View, timeout: Duration) -> anyhow::Result<Duration> {
    let ((), took) = measure_until(&format!("the adapter objects to be {want:?}"), timeout, async || {
        let got = view(ns, cr).await?;
        anyhow::ensure!(&got == want, "got {got:?}");
        Ok(())
    })
    .await?;
    Ok(took)
}

/// The status's AdaptersReady condition as (status, reason, message).
pub async fn adapters_ready(servers: &Api<DittoServer>, cr: &str) -> anyhow::Result<(String, String, String)> {
    let ds = servers.get(cr).await?;
    let conds = ds.status.map(|s| s.conditions).unwrap_or_default();
    let c =
        conds.into_iter().find(|c| c.type_ == "AdaptersReady").ok_or_else(|| anyhow::anyhow!("no AdaptersReady"))?;
    Ok((c.status, c.reason, c.message))
}

/// Waits until AdaptersReady has `status` and `reason`; returns its message.
pub async fn wait_adapters_ready(
    servers: &Api<DittoServer>,
    cr: &str,
    status: &str,
    reason: &str,
) -> anyhow::Result<String> {
    wait_until(&format!("AdaptersReady={status}/{reason}"), Duration::from_secs(15), async || {
        let got = adapters_ready(servers, cr).await?;
        anyhow::ensure!(got.0 == status && got.1 == reason, "{got:?}");
        Ok(got.2)
    })
    .await
}
