//! The adapter step, after the main children: make Kubernetes match the adapters the agents report.
//!
//! observe (list the labelled adapter Services and NetworkPolicies of this server; the StatefulSet the
//! main apply returned) → desired (pure, from [`aggregate()`]) → apply (server-side apply of what differs,
//! delete labelled objects no longer desired, `adapter-*` container ports under their own field
//! manager) → the adapter part of the status. Nothing is written when Kubernetes already matches.
//!
//! Safety: no report → nothing is created or deleted; an unreachable DittoFS → everything is kept;
//! a stale report → kept or closed per `onStaleReport`; reported adapters are screened (see
//! [`crate::desired::adapters::aggregate`]) and the refused ones get one Warning Event per change of the
//! refused set. Objects are found by label and owner; an object that bears an adapter object's name
//! without them is never touched (and reported), and the static Services and the baseline never match.
//!
//! Closing never waits on opening: when the main children failed, the step still runs in
//! [`Mode::CloseOnly`], deleting what no longer serves and creating or changing nothing. And on the way
//! down (scaled to zero) the Services go at once but the adapter policies stay until no pod is left, so
//! a terminating pod is never reachable on ports its policies no longer name.

use jiff::Timestamp;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ContainerPort, Service};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, Preconditions};
use kube::{Resource, ResourceExt};
use serde_json::json;
use tracing::Instrument as _;

use dittofs_api::conditions::events as reasons;
use dittofs_api::constants::{CONTROLLER_FIELD_MANAGER, CONTROLLER_PORTS_FIELD_MANAGER};
use dittofs_api::labels::{
    PodSelector, adapter_network_policies_selector, adapter_services_selector, go_adapter_network_policies_selector,
    go_adapter_services_selector,
};
use dittofs_api::{DittoServer, names};

use crate::apply::{apply_params, owned_by};
use crate::cache::Child;
use crate::desired::adapters::compare::{adapter_ports, plan, ports_need_apply, reserved_ports, type_label};
use crate::desired::adapters::{
    AdaptersState, Problems, Reports, aggregate, is_stale, objects, refusal_to_announce, stale_agents, stale_text,
    state,
};
use crate::error::Error;
use crate::raw::RawDittoServer;
use crate::reconcile::{Context, teardown};

/// How much the step may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Create, change and delete to match the reports.
    Full,
    /// Only delete what no longer serves: another child failed, so nothing new is opened.
    CloseOnly,
}

/// What the step did.
#[derive(Debug)]
pub struct Outcome {
    /// The adapter part of the status.
    pub state: AdaptersState,
    /// The StatefulSet after the ports apply, if it changed.
    pub statefulset: Option<StatefulSet>,
    /// The writes that failed, as one error (the reconcile backs off).
    pub error: Option<Error>,
    /// Adapter policies are held until the pods are gone: look again soon.
    pub waiting_for_pods: bool,
}

impl Outcome {
    fn unchanged(state: AdaptersState, error: Option<Error>) -> Self {
        Self { state, statefulset: None, error, waiting_for_pods: false }
    }
}

/// A kind of adapter object: how it is found and what its Events are called.
trait AdapterKind: Child {
    const CREATED: &'static str;
    const UPDATED: &'static str;
    const DELETED: &'static str;
    const FAILED: &'static str;
    fn selector(cr: &str) -> String;
    /// How the Go operator labelled them (a server taken over: not yet applied by this controller).
    fn go_selector(cr: &str) -> String;
    /// The ports, for Event notes, e.g. "12049/TCP".
    fn ports(&self) -> String;
}

fn port_list(ports: impl Iterator<Item = (String, Option<String>)>) -> String {
    ports.map(|(p, proto)| format!("{p}/{}", proto.unwrap_or_else(|| "TCP".into()))).collect::<Vec<_>>().join(", ")
}

impl AdapterKind for Service {
    const CREATED: &'static str = reasons::ADAPTER_SERVICE_CREATED;
    const UPDATED: &'static str = reasons::ADAPTER_SERVICE_UPDATED;
    const DELETED: &'static str = reasons::ADAPTER_SERVICE_DELETED;
    const FAILED: &'static str = reasons::ADAPTER_SERVICE_FAILED;
    fn selector(cr: &str) -> String {
        adapter_services_selector(cr)
    }
    fn go_selector(cr: &str) -> String {
        go_adapter_services_selector(cr)
    }
    fn ports(&self) -> String {
        let ports = self.spec.iter().flat_map(|s| s.ports.iter().flatten());
        let kind = self.spec.as_ref().and_then(|s| s.type_.clone()).unwrap_or_default();
        format!("{kind} {}", port_list(ports.map(|p| (p.port.to_string(), p.protocol.clone()))))
    }
}

impl AdapterKind for NetworkPolicy {
    const CREATED: &'static str = reasons::ADAPTER_NETWORK_POLICY_CREATED;
    const UPDATED: &'static str = reasons::ADAPTER_NETWORK_POLICY_UPDATED;
    const DELETED: &'static str = reasons::ADAPTER_NETWORK_POLICY_DELETED;
    const FAILED: &'static str = reasons::NETWORK_POLICY_FAILED;
    fn selector(cr: &str) -> String {
        adapter_network_policies_selector(cr)
    }
    fn go_selector(cr: &str) -> String {
        go_adapter_network_policies_selector(cr)
    }
    fn ports(&self) -> String {
        let rules = self.spec.iter().flat_map(|s| s.ingress.iter().flatten());
        let ports = rules.flat_map(|r| r.ports.iter().flatten());
        let text = |p: &IntOrString| match p {
            IntOrString::Int(i) => i.to_string(),
            IntOrString::String(s) => s.clone(),
        };
        format!(
            "ingress {}",
            port_list(ports.map(|p| (p.port.as_ref().map(text).unwrap_or_default(), p.protocol.clone())))
        )
    }
}

/// One run of the step.
struct Step<'a> {
    ctx: &'a Context,
    raw: &'a RawDittoServer,
    cr: String,
    ns: String,
    uid: String,
    mode: Mode,
    /// Taken over from the Go operator: its labelled objects are this server's too.
    taken_over: bool,
    /// Scaled to zero with pods still terminating: adapter policies are not deleted yet.
    hold_policies: bool,
    held: bool,
    problems: Problems,
    errors: Vec<Error>,
    writes: usize,
}

/// Runs the step for `ds`, whose StatefulSet (as the main apply returned it, or as observed when that
/// failed) is `sts`.
pub async fn reconcile(
    ctx: &Context,
    raw: &RawDittoServer,
    ds: &DittoServer,
    sts: Option<&StatefulSet>,
    mode: Mode,
) -> Outcome {
    prune_stale_agents(ctx, ds).await;
    let now = Timestamp::now();
    announce_staleness(ctx, raw, ds, now).await;
    let reports = aggregate(ds, now);
    let Reports::Known { adapters, .. } = &reports else {
        tracing::debug!(?reports, "adapter objects left as they are");
        return Outcome::unchanged(state(ds, &reports, &Problems::default(), now), None);
    };
    let (Some(ns), Some(uid)) = (ds.namespace(), ds.metadata.uid.clone()) else {
        return Outcome::unchanged(AdaptersState::unknown("no namespace"), Some(Error::MissingMetadata("namespace")));
    };
    let hold_policies = ds.spec.replicas <= 0 && pods_left(ctx, ds).await;
    let mut step = Step {
        ctx,
        raw,
        cr: ds.name_any(),
        ns,
        uid,
        mode,
        taken_over: crate::desired::pod_selector(ds) == PodSelector::GoOperator,
        hold_policies,
        held: false,
        problems: Problems::default(),
        errors: Vec::new(),
        writes: 0,
    };

    let services = adapters.iter().map(|a| objects::service(ds, a)).collect();
    step.sync(services).await;
    let policies = adapters.iter().map(|a| objects::network_policy(ds, a)).collect();
    step.sync(policies).await;
    let Some(sts) = sts else {
        // The StatefulSet could not be read or applied: its ports wait (they only inform; the Service and
        // the policy are what expose an adapter).
        let state = state(ds, &reports, &step.problems, now);
        let error = step.error();
        return Outcome { state, statefulset: None, error, waiting_for_pods: step.held };
    };
    let mut desired_ports = objects::container_ports(ds, adapters, &reserved_ports(sts));
    if mode == Mode::CloseOnly {
        let live = adapter_ports(sts);
        desired_ports.retain(|p| live.iter().any(|l| l.name == p.name && l.container_port == p.container_port));
    }
    let statefulset = step.sync_ports(sts, &desired_ports).await;
    if ds.spec.adapter_services.sync_container_ports && mode == Mode::Full {
        let after = statefulset.as_ref().unwrap_or(sts);
        let foreign: Vec<String> = adapter_ports(after)
            .iter()
            .filter(|p| !desired_ports.contains(p))
            .map(|p| format!("{} {}", p.name.clone().unwrap_or_default(), p.container_port))
            .collect();
        if !foreign.is_empty() {
            step.problems.not_managed.push(format!(
                "container ports {} of StatefulSet {} are set by another field manager",
                foreign.join(", "),
                sts.name_any()
            ));
        }
    }

    if step.writes > 0 {
        // Inside the reconcile span, which continues the agent's trace of the change (see `traced`).
        tracing::info!(writes = step.writes, adapters = adapters.len(), "adapter objects reconciled");
    }
    if matches!(&reports, Reports::Known { refused, .. } if refused.is_empty()) {
        ctx.events.resolved(raw, reasons::ADAPTERS_REFUSED);
    } else if let Some(note) = refusal_to_announce(ds, &reports) {
        tracing::warn!(%note, "reported adapters refused");
        ctx.events.warning_on_change(raw, reasons::ADAPTERS_REFUSED, "Validate", note).await;
    }
    let state = state(ds, &reports, &step.problems, now);
    let error = step.error();
    Outcome { state, statefulset, error, waiting_for_pods: step.held }
}

/// Whether a pod of the server still exists (a failed list counts as yes: policies are kept).
async fn pods_left(ctx: &Context, ds: &DittoServer) -> bool {
    teardown::pods_left(ctx, ds).await.unwrap_or_else(|e| {
        tracing::warn!(error = %e, "could not list the pods; adapter policies are kept");
        1
    }) > 0
}

/// One Warning per change when the reports go stale; forgotten once they are fresh again.
async fn announce_staleness(ctx: &Context, raw: &RawDittoServer, ds: &DittoServer, now: Timestamp) {
    match is_stale(ds, now) {
        Some((pod, since)) => {
            let policy = ds.spec.adapter_services.on_stale_report;
            let note = format!("{} (onStaleReport: {policy:?})", stale_text(ds, &pod, since));
            tracing::warn!(%note, "agent reports are stale");
            ctx.events.warning_on_change(raw, reasons::REPORT_STALE, "Validate", note).await;
        }
        None => ctx.events.resolved(raw, reasons::REPORT_STALE),
    }
}

impl Step<'_> {
    /// Lists the labelled objects of one kind, deletes those no longer desired, applies what differs.
    /// Labelled objects another owner holds are left out: never updated, never deleted.
    async fn sync<K: AdapterKind>(&mut self, desired: Vec<K>) {
        let api: Api<K> = Api::namespaced(self.ctx.client.clone(), &self.ns);
        let kind = K::kind(&());
        if self.known_unchanged(&desired) {
            return;
        }
        let mut selectors = vec![K::selector(&self.cr)];
        if self.taken_over {
            selectors.push(K::go_selector(&self.cr));
        }
        let mut live: Vec<K> = Vec::new();
        for selector in selectors {
            match api.list(&ListParams::default().labels(&selector)).await {
                // Once applied here, a Go-made object carries both label sets: listed once.
                Ok(list) => {
                    for obj in list.items {
                        if !live.iter().any(|l| l.uid() == obj.uid()) {
                            live.push(obj);
                        }
                    }
                }
                Err(e) => return self.fail(K::FAILED, Error::kube(format!("list adapter {kind}s"), e)).await,
            }
        }
        self.ctx.applier.mark_listed(&kind, &self.uid);
        let live: Vec<K> = live.into_iter().filter(|o| owned_by(o.meta(), &self.uid)).collect();
        let plan = plan(desired.clone(), &live);
        // What is already as desired counts as applied at its version, so the next reconcile need not list.
        for d in desired.iter().filter(|d| !plan.apply.iter().any(|(a, _)| a.name_any() == d.name_any())) {
            if let Some(l) = live.iter().find(|l| l.name_any() == d.name_any()) {
                self.ctx.applier.remember(d, l.meta());
            }
        }
        let hold = self.hold_policies && kind == NetworkPolicy::kind(&());
        for obj in plan.delete {
            if hold {
                // Scaled to zero: a terminating pod still serves; its policies go with the last pod.
                self.held = true;
                continue;
            }
            let span = self.write_span("adapter.delete", &obj);
            self.delete(&api, obj).instrument(span).await;
        }
        if self.mode == Mode::CloseOnly {
            return;
        }
        for (obj, live) in plan.apply {
            let span = self.write_span("adapter.apply", &obj);
            self.apply(&api, obj, live).instrument(span).await;
        }
    }

    /// Whether the caches already show every desired object as this controller last applied it, and no
    /// other labelled one of this server: then the list (a request per kind and reconcile, for every
    /// report and every resync) would find nothing to do. Each server is listed once per term whatever
    /// the cache shows (an object with the adapter labels but not this controller's is not in it), and a
    /// server taken over from the Go operator, whose Go-labelled objects the cache does not watch, always.
    fn known_unchanged<K: AdapterKind>(&self, desired: &[K]) -> bool {
        if self.taken_over || !self.ctx.applier.was_listed(&K::kind(&()), &self.uid) {
            return false;
        }
        let stores = self.ctx.applier.stores();
        let Some(cached) = stores.names_selected::<K>(&self.ns, &K::selector(&self.cr), &self.uid) else {
            return false;
        };
        let wanted: std::collections::BTreeSet<String> = desired.iter().map(ResourceExt::name_any).collect();
        cached == wanted && desired.iter().all(|d| self.ctx.applier.unchanged(d, None))
    }

    /// The span of one write, holding what a trace search asks for: the object, its adapter, its server.
    fn write_span<K: AdapterKind>(&self, op: &'static str, obj: &K) -> tracing::Span {
        let adapter = type_label(obj).unwrap_or_default();
        let (kind, name) = (K::kind(&()), obj.name_any());
        tracing::info_span!("write", otel.name = op, %kind, %name, adapter, server = %self.cr, namespace = %self.ns)
    }

    /// The failed writes as one error.
    fn error(&mut self) -> Option<Error> {
        let failed = self.errors.len();
        (failed > 0).then(|| Error::Adapters { failed, first: Box::new(self.errors.remove(0)) })
    }

    async fn apply<K: AdapterKind>(&mut self, api: &Api<K>, obj: K, live: Option<K>) {
        let (kind, name) = (K::kind(&()), obj.name_any());
        let adapter = type_label(&obj).unwrap_or_default().to_owned();
        if live.is_none() {
            // Not among the labelled ones: an object of that name that is not ours must stay untouched.
            match api.get_opt(&name).await {
                Ok(None) => {}
                Ok(Some(_)) => {
                    let note = format!(
                        "{kind} {name} exists without the adapter labels or the owner of this DittoServer; it \
                         is left alone, so adapter {adapter} is not exposed by it"
                    );
                    self.ctx.events.warning(self.raw, K::FAILED, "Apply", note.clone()).await;
                    self.problems.not_managed.push(note);
                    return;
                }
                Err(e) => return self.fail(K::FAILED, Error::kube(format!("get {kind} {name}"), e)).await,
            }
        }
        let applied = match api.patch(&name, &apply_params(), &Patch::Apply(&obj)).await {
            Ok(applied) => applied,
            Err(e) => return self.fail(K::FAILED, Error::kube(format!("apply {kind} {name}"), e)).await,
        };
        self.ctx.applier.remember(&obj, applied.meta());
        let before = live.as_ref().map(ResourceExt::resource_version);
        if before == Some(applied.resource_version()) {
            // Something differed that this apply does not own (e.g. another manager's extra port).
            return;
        }
        self.wrote(&kind);
        let (reason, verb) = if live.is_none() { (K::CREATED, "Created") } else { (K::UPDATED, "Updated") };
        let note = format!("{verb} {kind} {name} for adapter {adapter} ({})", applied.ports());
        self.ctx.events.normal_about(self.raw, applied.object_ref(&()), reason, "Apply", note).await;
    }

    async fn delete<K: AdapterKind>(&mut self, api: &Api<K>, obj: K) {
        let (kind, name) = (K::kind(&()), obj.name_any());
        let adapter = type_label(&obj).unwrap_or_default().to_owned();
        // The uid precondition: never delete a same-named object created since the list.
        let params = DeleteParams {
            preconditions: Some(Preconditions { uid: obj.uid(), resource_version: None }),
            ..DeleteParams::background()
        };
        match api.delete(&name, &params).await {
            Ok(_) => {
                self.ctx.applier.forget::<K>(obj.meta());
                self.wrote(&kind);
                let note = format!("Deleted {kind} {name}: adapter {adapter} is not serving");
                self.ctx.events.normal_about(self.raw, obj.object_ref(&()), K::DELETED, "Delete", note).await;
            }
            // Gone already, or replaced since the list (the next reconcile sees the new one).
            Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {}
            Err(e) => self.fail(K::FAILED, Error::kube(format!("delete {kind} {name}"), e)).await,
        }
    }

    /// Applies the `adapter-*` ports of the DittoFS container under their own field manager, with a
    /// body holding nothing else, when they differ. Returns the StatefulSet if it changed.
    async fn sync_ports(&mut self, sts: &StatefulSet, desired: &[ContainerPort]) -> Option<StatefulSet> {
        if !ports_need_apply(sts, desired) {
            return None;
        }
        let name = sts.name_any();
        let body = json!({
            "apiVersion": StatefulSet::api_version(&()),
            "kind": StatefulSet::kind(&()),
            "metadata": {"name": name, "namespace": self.ns},
            "spec": {"template": {"spec": {"containers": [{"name": names::SERVER_CONTAINER, "ports": desired}]}}},
        });
        let api: Api<StatefulSet> = Api::namespaced(self.ctx.client.clone(), &self.ns);
        let params = PatchParams::apply(CONTROLLER_PORTS_FIELD_MANAGER).force();
        let adapters: Vec<&str> = desired.iter().filter_map(|p| p.name.as_deref()).collect();
        let span = tracing::info_span!("write", otel.name = "adapter.ports", kind = "StatefulSet", %name,
            ports = ?adapters, server = %self.cr, namespace = %self.ns);
        let applied = match api.patch(&name, &params, &Patch::Apply(&body)).instrument(span).await {
            Ok(applied) => applied,
            Err(e) => {
                let error = Error::kube(format!("apply the adapter container ports of StatefulSet {name}"), e);
                self.fail(reasons::ADAPTER_SERVICE_FAILED, error).await;
                return None;
            }
        };
        if applied.resource_version() == sts.resource_version() {
            return None;
        }
        // The main apply's body is untouched by this one: it need not be sent again for this new version.
        self.ctx.applier.carry::<StatefulSet>(sts.meta(), applied.meta());
        self.wrote("StatefulSet");
        let note = if desired.is_empty() {
            format!("Removed the adapter container ports of StatefulSet {name}")
        } else {
            let ports = desired.iter().map(|p| {
                let protocol = p.protocol.as_deref().unwrap_or("TCP");
                format!("{} {}/{protocol}", p.name.clone().unwrap_or_default(), p.container_port)
            });
            format!("Set the adapter container ports of StatefulSet {name}: {}", ports.collect::<Vec<_>>().join(", "))
        };
        let related = applied.object_ref(&());
        self.ctx.events.normal_about(self.raw, related, reasons::CONTAINER_PORTS_UPDATED, "Apply", note).await;
        Some(applied)
    }

    fn wrote(&mut self, kind: &str) {
        self.writes += 1;
        self.ctx.metrics.wrote(kind);
    }

    async fn fail(&mut self, reason: &str, error: Error) {
        tracing::warn!(error = %error, "adapter object");
        let note = format!("Failed to {error}");
        self.ctx.events.warning(self.raw, reason, "Apply", note).await;
        self.problems.failed.push(error.to_string());
        self.errors.push(error);
    }
}

/// Removes the `status.agents` entries of pods that cannot exist (scaled away, renamed). Each entry
/// belongs to its agent's field manager, so server-side apply cannot drop it: a JSON patch does, with
/// a `test` of the pod name before each `remove` so a concurrent change of the list fails the patch
/// instead of removing the wrong entry. Best-effort: a failure is retried on the next reconcile.
async fn prune_stale_agents(ctx: &Context, ds: &DittoServer) {
    let stale = stale_agents(ds);
    let (Some(status), Some(ns)) = (ds.status.as_ref(), ds.namespace()) else { return };
    if stale.is_empty() {
        return;
    }
    // From the end, so each index is still right when its operations run.
    let ops: Vec<serde_json::Value> = status
        .agents
        .iter()
        .enumerate()
        .rev()
        .filter(|(_, a)| stale.contains(&a.pod_name))
        .flat_map(|(i, a)| {
            [
                json!({"op": "test", "path": format!("/status/agents/{i}/podName"), "value": a.pod_name}),
                json!({"op": "remove", "path": format!("/status/agents/{i}")}),
            ]
        })
        .collect();
    let patch: json_patch::Patch = match serde_json::from_value(serde_json::Value::Array(ops)) {
        Ok(patch) => patch,
        Err(e) => return tracing::warn!(error = %e, "building the JSON patch of stale agent entries"),
    };
    let api: Api<RawDittoServer> = Api::namespaced(ctx.client.clone(), &ns);
    let params = PatchParams { field_manager: Some(CONTROLLER_FIELD_MANAGER.into()), ..PatchParams::default() };
    match api.patch_status(&ds.name_any(), &params, &Patch::Json::<()>(patch)).await {
        Ok(_) => {
            ctx.metrics.wrote("DittoServerStatus");
            tracing::info!(pods = ?stale, "removed the status entries of agents whose pods cannot exist");
        }
        Err(e) => tracing::info!(error = %e, pods = ?stale, "stale agent entries not removed yet"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_notes_list_the_ports() {
        let svc: Service = serde_json::from_value(json!({"spec": {"type": "LoadBalancer", "ports": [
            {"port": 12049, "protocol": "TCP"}]}}))
        .unwrap();
        assert_eq!(svc.ports(), "LoadBalancer 12049/TCP");
        let np: NetworkPolicy =
            serde_json::from_value(json!({"spec": {"podSelector": {}, "ingress": [{"ports": [{"port": 1445}]}]}}))
                .unwrap();
        assert_eq!(np.ports(), "ingress 1445/TCP");
    }
}
