//! Taking a live server over from the Go operator, before anything of it is written.
//!
//! A StatefulSet's selector is immutable, and the Go operator's (`app=dittofs-server,instance=<cr>`) is
//! not this controller's. Re-creating the StatefulSet (orphan-delete) would leave the running pod without
//! a controller, and every Service and policy would have to select it by labels it does not carry while a
//! second pod came up. So the live selector is kept: the server is marked with
//! `dittofs.dittofs.com/pod-selector: go-operator`, after which every selector (StatefulSet, Services,
//! policies) is the Go operator's and the pod template carries both label sets. The running pod matches
//! every selector at every moment; the one template change (the agent's injection) rolls it once.
//!
//! The take-over itself is two writes per object at most, none of which changes what a client sees:
//! the Go operator's field ownership moves to this controller's managers ([`fields`]), so the next apply
//! is the sole authority on each child, and the server's metadata swaps the Go finalizer for ours, drops
//! the Go retry annotation and sets the selector mark, in one compare-and-swap patch. The Go finalizer's
//! cleanup (deleting the DittoFS `k8s-operator` user) no longer applies: the agent uses that account.
//! A StatefulSet with any other selector stops here ([`Error::TakeoverBlocked`]) with nothing written.

pub mod fields;

use std::collections::BTreeMap;

use jiff::Timestamp;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::{Resource, ResourceExt};
use serde_json::json;

use dittofs_api::constants::{
    CONTROLLER_FIELD_MANAGER, CONTROLLER_PORTS_FIELD_MANAGER, GO_AUTH_RETRY_ANNOTATION, GO_OPERATOR_FIELD_MANAGER,
    GO_OPERATOR_FINALIZER, TEARDOWN_FINALIZER,
};
use dittofs_api::labels::{
    COMPONENT_CREDENTIALS, POD_SELECTOR_ANNOTATION, POD_SELECTOR_GO, PodSelector, common_labels,
    go_adapter_network_policies_selector, go_adapter_services_selector,
};
use dittofs_api::{DittoServer, conditions::events as reasons, names};

use crate::desired::service_monitor::ServiceMonitor;
use crate::discovery::Served;

use crate::apply::{apply_params, owned_by};
use crate::desired::{child_meta, pod_selector};
use crate::error::Error;
use crate::raw::RawDittoServer;
use crate::reconcile::Context;
use fields::{PortsTarget, Target};

/// Container ports the Go operator adds beside an adapter's own (portmapper, mDNS, WS-Discovery). This
/// controller publishes none of them, so they go with the take-over's single template change instead of
/// a second roll when the agent reports.
pub const GO_COMPANION_PORTS: [&str; 5] =
    ["adapter-nfs-pm", "adapter-pm-udp", "adapter-mdns", "adapter-wsd", "adapter-wsdmeta"];

/// Which selector a live StatefulSet of this server has; an error when it is neither ours nor the Go
/// operator's (a hand edit, another tool): a selector cannot change, so this controller cannot adopt it.
pub fn classify(cr: &str, sts: &StatefulSet) -> Result<PodSelector, Error> {
    let selector = sts.spec.as_ref().map(|s| &s.selector);
    let labels = selector.and_then(|s| s.match_labels.clone()).unwrap_or_default();
    let expressions = selector.and_then(|s| s.match_expressions.as_ref()).is_some_and(|e| !e.is_empty());
    for mode in [PodSelector::Standard, PodSelector::GoOperator] {
        if !expressions && labels == mode.labels(cr) {
            return Ok(mode);
        }
    }
    let shown = |m: &BTreeMap<String, String>| m.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",");
    Err(Error::TakeoverBlocked(format!(
        "StatefulSet {cr} selects its pods by {{{}}}{}, which is neither this controller's ({}) nor the Go \
         operator's ({}); a StatefulSet's selector cannot be changed, so nothing is written. To let the \
         controller re-create it: kubectl delete statefulset {cr} --cascade=orphan (the pod and its volumes \
         stay), then delete pod {cr}-0 once (it restarts under the new StatefulSet)",
        shown(&labels),
        if expressions { " with matchExpressions" } else { "" },
        PodSelector::Standard.selector(cr),
        PodSelector::GoOperator.selector(cr),
    )))
}

/// Whether the Go operator's finalizer is still on the server: nothing may be written before the take-over.
pub fn pending(raw: &RawDittoServer) -> bool {
    raw.finalizers().iter().any(|f| f == GO_OPERATOR_FINALIZER)
}

/// Takes the server over when the Go operator left it (its finalizer, or its StatefulSet selector not
/// yet marked). True when it wrote the server's metadata: the watch brings the changed object, and the
/// reconcile of that one goes on.
pub async fn run(
    ctx: &Context,
    raw: &RawDittoServer,
    ds: &DittoServer,
    live: Option<&StatefulSet>,
) -> Result<bool, Error> {
    let cr = ds.name_any();
    let uid = ds.metadata.uid.clone().ok_or(Error::MissingMetadata("uid"))?;
    let kept = match live.filter(|s| owned_by(s.meta(), &uid)) {
        Some(sts) => Some(classify(&cr, sts)?),
        None => None,
    };
    let go_finalizer = pending(raw);
    let remark = kept.filter(|k| *k != pod_selector(ds));
    if !go_finalizer && remark.is_none() {
        return Ok(false);
    }
    let mut adopted = Vec::new();
    if go_finalizer {
        adopted = adopt_children(ctx, ds, live, &uid).await?;
    }
    let mut metadata = json!({"resourceVersion": raw.resource_version()});
    if let Some(mode) = remark {
        let value = (mode == PodSelector::GoOperator).then_some(POD_SELECTOR_GO);
        metadata["annotations"] = json!({POD_SELECTOR_ANNOTATION: value});
    }
    if go_finalizer {
        metadata["annotations"][GO_AUTH_RETRY_ANNOTATION] = serde_json::Value::Null;
        let mut finalizers: Vec<String> = raw
            .finalizers()
            .iter()
            .filter(|f| *f != GO_OPERATOR_FINALIZER && *f != TEARDOWN_FINALIZER)
            .cloned()
            .collect();
        finalizers.push(TEARDOWN_FINALIZER.to_owned());
        metadata["finalizers"] = json!(finalizers);
    }
    let api: Api<RawDittoServer> = Api::namespaced(ctx.client.clone(), &ds.namespace().unwrap_or_default());
    api.patch(&cr, &PatchParams::default(), &Patch::Merge(&json!({"metadata": metadata})))
        .await
        .map_err(|e| Error::kube("mark the DittoServer as taken over", e))?;
    ctx.metrics.wrote("DittoServer");
    let selector = match remark.or(kept).unwrap_or(PodSelector::Standard) {
        PodSelector::GoOperator => format!("kept the StatefulSet's selector {}", PodSelector::GoOperator.selector(&cr)),
        PodSelector::Standard => "selector: this controller's".to_owned(),
    };
    let note = if go_finalizer {
        format!(
            "Took over from the Go operator: {selector}; replaced finalizer {GO_OPERATOR_FINALIZER} with \
             {TEARDOWN_FINALIZER}; adopted {}",
            if adopted.is_empty() { "no child".to_owned() } else { adopted.join(", ") }
        )
    } else {
        format!("Pod selector mark corrected: {selector}")
    };
    tracing::info!(%note, "taken over");
    ctx.events.normal(raw, reasons::TAKEN_OVER, "TakeOver", note).await;
    Ok(true)
}

/// Moves the Go manager's fields of every child of this server to this controller's managers. Returns
/// "Kind name" of each child changed.
async fn adopt_children(
    ctx: &Context,
    ds: &DittoServer,
    live: Option<&StatefulSet>,
    uid: &str,
) -> Result<Vec<String>, Error> {
    let cr = ds.name_any();
    let ns = ds.namespace().ok_or(Error::MissingMetadata("namespace"))?;
    let now = Time(Timestamp::now());
    let mut adopted = Vec::new();
    let main = Target { manager: CONTROLLER_FIELD_MANAGER, ports: None };

    if let Some(sts) = live.filter(|s| owned_by(s.meta(), uid)) {
        let target = Target { manager: CONTROLLER_FIELD_MANAGER, ports: Some(adapter_ports_target(sts)) };
        adopt(ctx, &ns, sts, &target, &now, &mut adopted).await?;
    }
    let configs: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), &ns);
    if let Some(cm) = get(&configs, &names::config_map(&cr)).await? {
        adopt(ctx, &ns, &cm, &main, &now, &mut adopted).await?;
    }
    let services: Api<Service> = Api::namespaced(ctx.client.clone(), &ns);
    let mut listed = list(&services, &go_adapter_services_selector(&cr)).await?;
    for name in [names::headless_service(&cr), names::api_service(&cr), names::metrics_service(&cr)] {
        listed.extend(get(&services, &name).await?);
    }
    for svc in listed.iter().filter(|s| owned_by(s.meta(), uid)) {
        adopt(ctx, &ns, svc, &main, &now, &mut adopted).await?;
    }
    let policies: Api<NetworkPolicy> = Api::namespaced(ctx.client.clone(), &ns);
    let mut listed = list(&policies, &go_adapter_network_policies_selector(&cr)).await?;
    listed.extend(get(&policies, &names::baseline_network_policy(&cr)).await?);
    for np in listed.iter().filter(|n| owned_by(n.meta(), uid)) {
        adopt(ctx, &ns, np, &main, &now, &mut adopted).await?;
    }
    // The Go operator's monitor selects (and carries) its own pod labels too; left with its manager they would
    // stay beside this controller's, and the monitor would select nothing once the metrics Service loses them.
    if ctx.service_monitor_api() == Served::Yes {
        let monitors: Api<ServiceMonitor> = Api::namespaced(ctx.client.clone(), &ns);
        if let Some(sm) = get(&monitors, &names::metrics_service(&cr)).await?.filter(|m| owned_by(m.meta(), uid)) {
            adopt(ctx, &ns, &sm, &main, &now, &mut adopted).await?;
        }
    }
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &ns);
    let generated = [
        names::jwt_secret(&cr),
        names::admin_bootstrap_secret(&cr),
        names::legacy_admin_secret(&cr),
        names::operator_credentials_secret(&cr),
    ];
    for name in generated {
        if let Some(secret) = get(&secrets, &name).await? {
            label_secret(ctx, ds, &secrets, &secret, uid, &mut adopted).await?;
        }
    }
    Ok(adopted)
}

/// Labels a Go-made Secret of this server as this controller's. Its fields stay the Go manager's: the
/// controller never applies a Secret's values over what exists (see `crate::reconcile::secrets`), so a
/// body of labels alone is all it ever owns there until it fills in a value someone removed.
async fn label_secret(
    ctx: &Context,
    ds: &DittoServer,
    api: &Api<Secret>,
    secret: &Secret,
    uid: &str,
    adopted: &mut Vec<String>,
) -> Result<(), Error> {
    let go_made = secret.managed_fields().iter().any(|e| e.manager.as_deref() == Some(GO_OPERATOR_FIELD_MANAGER));
    if !owned_by(&secret.metadata, uid) || !go_made {
        return Ok(());
    }
    let name = secret.name_any();
    let body = Secret {
        metadata: child_meta(ds, name.clone(), common_labels(&ds.name_any(), COMPONENT_CREDENTIALS)),
        ..Default::default()
    };
    api.patch(&name, &apply_params(), &Patch::Apply(&body))
        .await
        .map_err(|e| Error::kube(format!("label Secret {name}"), e))?;
    ctx.metrics.wrote("Secret");
    adopted.push(format!("Secret {name}"));
    Ok(())
}

/// The running adapters' own container ports (named `adapter-*`, not a Go companion): they go to the
/// ports manager, which the agent's first report will find already matching.
fn adapter_ports_target(sts: &StatefulSet) -> PortsTarget<'static> {
    let containers = sts.spec.as_ref().and_then(|s| s.template.spec.as_ref()).map(|p| p.containers.as_slice());
    let server = containers.unwrap_or_default().iter().find(|c| c.name == names::SERVER_CONTAINER);
    let keys = server
        .and_then(|c| c.ports.as_ref())
        .into_iter()
        .flatten()
        .filter(|p| {
            let name = p.name.as_deref().unwrap_or_default();
            name.starts_with(names::ADAPTER_PORT_PREFIX) && !GO_COMPANION_PORTS.contains(&name)
        })
        .map(|p| (p.container_port, p.protocol.clone().unwrap_or_else(|| "TCP".into())))
        .collect();
    PortsTarget { manager: CONTROLLER_PORTS_FIELD_MANAGER, container: names::SERVER_CONTAINER, keys }
}

/// Rewrites `obj`'s managedFields when the Go manager owns fields of it: a JSON patch that first tests the
/// resourceVersion read, so a concurrent change fails it (the reconcile retries) instead of being lost.
async fn adopt<K>(
    ctx: &Context,
    ns: &str,
    obj: &K,
    target: &Target<'_>,
    now: &Time,
    adopted: &mut Vec<String>,
) -> Result<(), Error>
where
    K: crate::cache::Child,
{
    let entries = obj.meta().managed_fields.clone().unwrap_or_default();
    let Some(moved) = fields::transfer(&entries, GO_OPERATOR_FIELD_MANAGER, target, now.clone()) else {
        return Ok(());
    };
    let (kind, name) = (K::kind(&()).into_owned(), obj.name_any());
    let ops = json!([
        {"op": "test", "path": "/metadata/resourceVersion", "value": obj.resource_version()},
        {"op": "replace", "path": "/metadata/managedFields", "value": moved},
    ]);
    let patch: json_patch::Patch =
        serde_json::from_value(ops).map_err(|source| Error::Serialize { what: "managedFields patch", source })?;
    let api: Api<K> = Api::namespaced(ctx.client.clone(), ns);
    api.patch(&name, &PatchParams::default(), &Patch::Json::<()>(patch))
        .await
        .map_err(|e| Error::kube(format!("move the Go operator's fields of {kind} {name}"), e))?;
    ctx.metrics.wrote(&kind);
    adopted.push(format!("{kind} {name}"));
    Ok(())
}

async fn get<K>(api: &Api<K>, name: &str) -> Result<Option<K>, Error>
where
    K: Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    api.get_opt(name).await.map_err(|e| Error::kube(format!("get {name}"), e))
}

async fn list<K>(api: &Api<K>, selector: &str) -> Result<Vec<K>, Error>
where
    K: Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let params = ListParams::default().labels(selector);
    Ok(api.list(&params).await.map_err(|e| Error::kube(format!("list {selector}"), e))?.items)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sts(selector: serde_json::Value) -> StatefulSet {
        serde_json::from_value(
            json!({"metadata": {"name": "fs"}, "spec": {"selector": selector, "serviceName": "fs-headless",
            "template": {"spec": {"containers": [{"name": "dittofs", "ports": [
                {"name": "api", "containerPort": 8080},
                {"name": "adapter-nfs", "containerPort": 12049, "protocol": "TCP"},
                {"name": "adapter-nfs-pm", "containerPort": 10111, "protocol": "TCP"},
                {"name": "adapter-mdns", "containerPort": 5353, "protocol": "UDP"},
                {"name": "adapter-smb", "containerPort": 12445}]}]}}}}),
        )
        .unwrap()
    }

    #[test]
    fn a_selector_is_ours_the_go_operators_or_blocks_the_take_over() {
        let go = sts(json!({"matchLabels": {"app": "dittofs-server", "instance": "fs"}}));
        assert_eq!(classify("fs", &go).unwrap(), PodSelector::GoOperator);
        let ours = sts(json!({"matchLabels": PodSelector::Standard.labels("fs")}));
        assert_eq!(classify("fs", &ours).unwrap(), PodSelector::Standard);
        let edited = sts(json!({"matchLabels": {"app": "dittofs-server", "instance": "fs", "tier": "gold"}}));
        let error = classify("fs", &edited).unwrap_err();
        assert_eq!(error.metric_label(), "takeover_blocked");
        let text = error.to_string();
        assert!(text.contains("tier=gold") && text.contains("--cascade=orphan"), "{text}");
        let other_server = sts(json!({"matchLabels": {"app": "dittofs-server", "instance": "other"}}));
        assert!(classify("fs", &other_server).is_err());
    }

    #[test]
    fn only_running_adapters_own_ports_go_to_the_ports_manager() {
        let target = adapter_ports_target(&sts(json!({})));
        assert_eq!(target.keys, vec![(12049, "TCP".to_owned()), (12445, "TCP".to_owned())]);
        assert_eq!(target.manager, CONTROLLER_PORTS_FIELD_MANAGER);
    }
}
