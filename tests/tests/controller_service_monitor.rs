//! `metrics.serviceMonitor` against the real apiserver: the ServiceMonitor `<cr>-metrics` in the Go operator's
//! shape (its `buildServiceMonitor`, spelled out field by field for the Go docs' sample spec), changed with the
//! spec, deleted when turned off, when metrics go off and when the block is removed, never written at rest; the
//! bearer token Secret mounted into the DittoFS container only; and on a cluster without the
//! prometheus-operator's CRDs, MetricsReady=False with exactly one Warning while the rest of the server is
//! reconciled, then the monitor within one re-discovery period of the CRD being installed.

use std::time::Duration;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Service;
use kube::ResourceExt;
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use serde_json::{Value, json};

use dittofs_api::conditions::{self, reasons};
use dittofs_api::{DittoServer, names};
use dittofs_tests::controller_world::*;
use dittofs_tests::crds::{install_service_monitor_crd, service_monitor_resource};
use dittofs_tests::kube_env::{ControlPlane, ControlPlaneOptions, TempNamespace, wait_until};
use dittofs_tests::objects::*;

const WAIT: Duration = Duration::from_secs(30);
const MONITOR: &str = "fs-metrics";

/// The Go operator's documented sample (docs/guide/configuration.md, "Scraping"), its bearer token uncommented.
fn go_sample() -> Value {
    json!({
        "storage": {"metadataSize": "1Gi"},
        "metrics": {
            "enabled": true, "port": 9090, "path": "/metrics",
            "bearerTokenSecret": {"name": "dittofs-metrics-token", "key": "token"},
            "serviceMonitor": {"enabled": true, "interval": "30s", "labels": {"release": "kube-prometheus-stack"}}
        }
    })
}

/// The labels of the `<cr>-metrics` Service, which the monitor selects and carries over the user's.
fn metrics_service_labels() -> Value {
    json!({
        "app.kubernetes.io/component": "metrics", "app.kubernetes.io/instance": "fs",
        "app.kubernetes.io/managed-by": "dittofs-controller", "app.kubernetes.io/name": "dittofs",
        "dittofs.io/metrics-service": "true"
    })
}

fn monitors(ns: &TempNamespace<'_>) -> Api<DynamicObject> {
    Api::namespaced_with(ns.client(), ns.name(), &service_monitor_resource())
}

async fn merge(servers: &Api<DittoServer>, patch: Value) -> anyhow::Result<()> {
    servers.patch("fs", &PatchParams::default(), &Patch::Merge(patch)).await?;
    Ok(())
}

/// MetricsReady's (status, reason) once the status has observed the current generation; None: no such condition.
async fn metrics_ready(servers: &Api<DittoServer>) -> anyhow::Result<Option<(String, String)>> {
    wait_until("the status to observe the current generation", WAIT, async || {
        let ds = servers.get("fs").await?;
        let status = ds.status.unwrap_or_default();
        anyhow::ensure!(status.observed_generation == ds.metadata.generation, "not observed yet");
        let cond = status.conditions.into_iter().find(|c| c.type_ == conditions::METRICS_READY);
        Ok(cond.map(|c| (c.status, c.reason)))
    })
    .await
}

async fn wait_metrics_ready(servers: &Api<DittoServer>, want: Option<(&str, &str)>) -> anyhow::Result<()> {
    let want = want.map(|(s, r)| (s.to_owned(), r.to_owned()));
    wait_until(&format!("MetricsReady {want:?}"), WAIT, async || {
        let now = metrics_ready(servers).await?;
        anyhow::ensure!(now == want, "MetricsReady is {now:?}");
        Ok(())
    })
    .await
}

/// Waits until the monitor no longer exists.
async fn monitor_gone(ns: &TempNamespace<'_>) -> anyhow::Result<()> {
    let api = monitors(ns);
    wait_until("the ServiceMonitor to be deleted", WAIT, async || {
        anyhow::ensure!(api.get_opt(MONITOR).await?.is_none(), "still there");
        Ok(())
    })
    .await
}

/// The monitor once its spec satisfies `ok`.
async fn wait_monitor(ns: &TempNamespace<'_>, ok: impl Fn(&Value) -> bool) -> anyhow::Result<DynamicObject> {
    let api = monitors(ns);
    wait_until("the ServiceMonitor to match", WAIT, async || {
        let sm = api.get(MONITOR).await?;
        anyhow::ensure!(ok(&sm.data["spec"]), "spec is {}", sm.data["spec"]);
        Ok(sm)
    })
    .await
}

/// With the CRD installed: created in the Go shape, no write at rest, changed with the spec, deleted when
/// serviceMonitor is turned off, when metrics are turned off and when the metrics block is removed. The
/// CRD stays installed on the shared control plane (the absence test has a control plane of its own).
#[tokio::test]
#[ignore = "real-server tier: needs the Kubernetes test binaries; run `make test`"]
async fn the_monitor_has_the_go_shape_follows_the_spec_and_goes_when_turned_off() -> anyhow::Result<()> {
    ControlPlane::shared()
        .with_temp_ns("ctrl-smon", async |ns| {
            install_service_monitor_crd(ns.client()).await?;
            let (running, servers) = started(ns, "fs", go_sample()).await?;
            wait_metrics_ready(&servers, Some(("True", reasons::SERVICE_MONITOR_APPLIED))).await?;
            let ds = servers.get("fs").await?;

            // 1. The Go operator's buildServiceMonitor, field by field.
            let sm = monitors(ns).get(MONITOR).await?;
            let mut labels = metrics_service_labels();
            labels["release"] = json!("kube-prometheus-stack");
            assert_eq!(serde_json::to_value(sm.labels())?, labels);
            let owner = &sm.owner_references()[0];
            assert_eq!((owner.kind.as_str(), owner.name.as_str()), ("DittoServer", "fs"));
            assert_eq!((owner.controller, Some(owner.uid.as_str())), (Some(true), ds.metadata.uid.as_deref()));
            assert_eq!(
                sm.data["spec"],
                json!({
                    "selector": {"matchLabels": metrics_service_labels()},
                    "namespaceSelector": {"matchNames": [ns.name()]},
                    "endpoints": [{"port": "metrics", "path": "/metrics", "interval": "30s",
                        "bearerTokenSecret": {"name": "dittofs-metrics-token", "key": "token"}}]
                })
            );
            // What it selects: the metrics Service, by exactly those labels, on the port the endpoint names.
            let svc: Service = ns.api::<Service>().get(&names::metrics_service("fs")).await?;
            assert_eq!(serde_json::to_value(svc.labels())?, metrics_service_labels());
            let ports = svc.spec.and_then(|s| s.ports).unwrap_or_default();
            assert_eq!(
                ports.iter().map(|p| (p.name.as_deref(), p.port)).collect::<Vec<_>>(),
                [(Some("metrics"), 9090)]
            );

            // 2. The bearer token Secret: a volume of its key as `token`, mounted read-only at /metrics-token
            //    by the DittoFS container and by no other container.
            let sts: StatefulSet = ns.api::<StatefulSet>().get("fs").await?;
            let pod = sts.spec.and_then(|s| s.template.spec).unwrap_or_default();
            let volume =
                pod.volumes.iter().flatten().find(|v| v.name == "metrics-token").expect("metrics-token volume");
            let secret = volume.secret.as_ref().expect("a Secret volume");
            assert_eq!(secret.secret_name.as_deref(), Some("dittofs-metrics-token"));
            let items: Vec<_> = secret.items.iter().flatten().map(|i| (i.key.as_str(), i.path.as_str())).collect();
            assert_eq!(items, [("token", "token")]);
            let containers = pod.containers.iter().chain(pod.init_containers.iter().flatten());
            let mounting: Vec<_> = containers
                .flat_map(|c| {
                    let mounts = c.volume_mounts.iter().flatten().filter(|m| m.name == "metrics-token");
                    mounts.map(|m| (c.name.clone(), m.mount_path.clone(), m.read_only)).collect::<Vec<_>>()
                })
                .collect();
            assert_eq!(mounting, [(names::SERVER_CONTAINER.to_owned(), "/metrics-token".to_owned(), Some(true))]);

            // 3. At rest nothing is sent: a reconcile (the server touched) neither applies nor writes the monitor.
            let reconciles = running.settle(Duration::from_secs(2)).await?;
            let metrics = running.controller.metrics();
            let (applies, writes) =
                (metrics.child_apply_count("ServiceMonitor"), metrics.write_count("ServiceMonitor"));
            assert!(applies >= 1 && writes >= 1, "the monitor was applied ({applies}) and written ({writes})");
            let version = sm.resource_version();
            merge(&servers, json!({"metadata": {"annotations": {"touch": "1"}}})).await?;
            running.wait_reconciles("a reconcile after the touch", None, reconciles).await?;
            running.settle(Duration::from_secs(1)).await?;
            assert_eq!(metrics.child_apply_count("ServiceMonitor"), applies, "an unchanged monitor was sent");
            assert_eq!(metrics.write_count("ServiceMonitor"), writes);
            assert_eq!(monitors(ns).get(MONITOR).await?.resource_version(), version);

            // 4. A spec change changes it: a new interval, no token any more, a new label.
            merge(
                &servers,
                json!({"spec": {"metrics": {"bearerTokenSecret": null,
                "serviceMonitor": {"interval": "1m", "labels": {"team": "storage"}}}}}),
            )
            .await?;
            let sm = wait_monitor(ns, |spec| spec["endpoints"][0]["interval"] == "1m").await?;
            assert_eq!(
                sm.data["spec"]["endpoints"],
                json!([{"port": "metrics", "path": "/metrics", "interval": "1m"}])
            );
            let labels: Vec<_> = sm
                .labels()
                .keys()
                .filter(|k| !k.contains("kubernetes.io") && !k.starts_with("dittofs.io"))
                .cloned()
                .collect();
            assert_eq!(labels, ["release", "team"], "merge patch kept release");

            // 5. serviceMonitor off: the monitor goes, the metrics Service stays.
            merge(&servers, json!({"spec": {"metrics": {"serviceMonitor": {"enabled": false}}}})).await?;
            monitor_gone(ns).await?;
            wait_metrics_ready(&servers, Some(("True", reasons::METRICS_SERVED))).await?;
            assert!(ns.api::<Service>().get_opt(&names::metrics_service("fs")).await?.is_some());

            // 6. Back on, then metrics off: the monitor and the metrics Service go, and MetricsReady with them.
            merge(&servers, json!({"spec": {"metrics": {"serviceMonitor": {"enabled": true}}}})).await?;
            wait_metrics_ready(&servers, Some(("True", reasons::SERVICE_MONITOR_APPLIED))).await?;
            merge(&servers, json!({"spec": {"metrics": {"enabled": false}}})).await?;
            monitor_gone(ns).await?;
            wait_gone(&ns.api::<Service>(), &names::metrics_service("fs"), WAIT).await?;
            wait_metrics_ready(&servers, None).await?;

            // 7. Back on, then the whole metrics block removed: gone again.
            merge(&servers, json!({"spec": {"metrics": {"enabled": true}}})).await?;
            wait_metrics_ready(&servers, Some(("True", reasons::SERVICE_MONITOR_APPLIED))).await?;
            merge(&servers, json!({"spec": {"metrics": null}})).await?;
            monitor_gone(ns).await?;
            // One Normal Event per deletion (the two "metrics are disabled" ones are one Event with a series).
            wait_until("three ServiceMonitor deletions announced", WAIT, async || {
                let events = events_for(ns.client(), ns.name(), "fs").await?;
                let deleted: i32 = events
                    .into_iter()
                    .filter(|e| e.note.as_deref().is_some_and(|n| n.starts_with("Deleted ServiceMonitor fs-metrics")))
                    .map(|e| e.series.map_or(1, |s| s.count))
                    .sum();
                anyhow::ensure!(deleted == 3, "{deleted} deletions announced");
                Ok(())
            })
            .await?;
            assert_eq!(
                running.controller.metrics().reconcile_count("ok"),
                running.controller.metrics().total_reconciles()
            );
            running.stop().await
        })
        .await
}

/// Without the ServiceMonitor API: MetricsReady=False (ServiceMonitorAPIMissing) and exactly one Warning Event,
/// every reconcile succeeds and every other child is applied; installing the CRD later brings the monitor
/// within one re-discovery period, without restarting the controller.
///
/// On a control plane of its own: the CRD is cluster-wide, and the shared control plane has it as soon as
/// any test there installs it, so "absent" could not be relied on there (nor could the install be undone
/// without breaking those tests).
#[tokio::test]
#[ignore = "real-server tier: needs the Kubernetes test binaries; run `make test`"]
async fn without_the_api_the_monitor_is_reported_and_comes_once_the_crd_is_installed() -> anyhow::Result<()> {
    let cp = ControlPlane::start(ControlPlaneOptions { controller_manager: false, ..Default::default() }).await?;
    cp.with_temp_ns("ctrl-smon-absent", async |ns| {
        install_crd(ns.client()).await?;
        let mut config = dittofs_controller::Config::new(AGENT_IMAGE);
        config.namespace = Some(ns.name().to_owned());
        config.api_rediscovery = Duration::from_secs(1);
        let running = start_with(ns.client(), config);
        create_server(ns, &server("fs", go_sample())?).await?;
        let servers: Api<DittoServer> = ns.api();
        wait_metrics_ready(&servers, Some(("False", reasons::SERVICE_MONITOR_API_MISSING))).await?;
        // The rest of the server is there.
        for (kind, name) in children_of("fs") {
            assert!(metadata(ns, &resource(kind)?, &name).await?.is_some(), "{kind}/{name}");
        }
        // More reconciles (several re-discoveries, a touch) announce nothing new, and none fails.
        let reconciles = running.settle(Duration::from_secs(3)).await?;
        merge(&servers, json!({"metadata": {"annotations": {"touch": "1"}}})).await?;
        running.wait_reconciles("a reconcile after the touch", None, reconciles).await?;
        running.settle(Duration::from_secs(2)).await?;
        let warnings = |events: Vec<k8s_openapi::api::events::v1::Event>| {
            events
                .into_iter()
                .filter(|e| e.reason.as_deref() == Some(conditions::events::SERVICE_MONITOR_API_MISSING))
                .map(|e| (e.type_.unwrap_or_default(), e.series.map_or(1, |s| s.count)))
                .collect::<Vec<_>>()
        };
        let announced = wait_until("the ServiceMonitorAPIMissing Warning", WAIT, async || {
            let seen = warnings(events_for(ns.client(), ns.name(), "fs").await?);
            anyhow::ensure!(!seen.is_empty(), "none yet");
            Ok(seen)
        })
        .await?;
        assert_eq!(announced, [("Warning".to_owned(), 1)], "exactly one, never repeated");
        let metrics = running.controller.metrics();
        assert_eq!(metrics.reconcile_count("ok"), metrics.total_reconciles(), "a reconcile failed");
        assert_eq!(metrics.child_apply_count("ServiceMonitor"), 0);

        // The prometheus-operator's CRDs arrive: the monitor follows without a restart.
        install_service_monitor_crd(ns.client()).await?;
        wait_metrics_ready(&servers, Some(("True", reasons::SERVICE_MONITOR_APPLIED))).await?;
        wait_monitor(ns, |spec| spec["endpoints"][0]["port"] == "metrics").await?;
        running.stop().await
    })
    .await
}

/// A ServiceMonitor the Go operator made (its labels `app`, `instance` on the monitor and in its selector, written
/// by its field manager) is taken over with the server: afterwards it carries and selects exactly this
/// controller's labels, so it selects the metrics Service, which no longer has the Go labels.
#[tokio::test]
#[ignore = "real-server tier: needs the Kubernetes test binaries; run `make test`"]
async fn the_go_operators_monitor_is_taken_over_and_selects_the_metrics_service() -> anyhow::Result<()> {
    use dittofs_api::constants::{GO_OPERATOR_FIELD_MANAGER, GO_OPERATOR_FINALIZER};
    use kube::api::PostParams;
    ControlPlane::shared()
        .with_temp_ns("ctrl-smon-go", async |ns| {
            install_crd(ns.client()).await?;
            install_service_monitor_crd(ns.client()).await?;
            let servers: Api<DittoServer> = ns.api();
            create_server(ns, &server("fs", go_sample())?).await?;
            let go = PatchParams { field_manager: Some(GO_OPERATOR_FIELD_MANAGER.to_owned()), ..Default::default() };
            let finalizer = json!({"metadata": {"finalizers": [GO_OPERATOR_FINALIZER]}});
            let ds = servers.patch("fs", &go, &Patch::Merge(&finalizer)).await?;
            // The Go operator's buildServiceMonitor for the sample: user labels, then its metrics Service labels.
            let go_selected = json!({"app": "dittofs-server", "instance": "fs", "dittofs.io/metrics-service": "true"});
            let mut go_labels = go_selected.clone();
            go_labels["release"] = json!("kube-prometheus-stack");
            let owner = json!([{"apiVersion": "dittofs.dittofs.com/v1alpha1", "kind": "DittoServer", "name": "fs",
                "uid": ds.uid().unwrap_or_default(), "controller": true, "blockOwnerDeletion": true}]);
            let made = json!({"apiVersion": "monitoring.coreos.com/v1", "kind": "ServiceMonitor",
                "metadata": {"name": MONITOR, "labels": go_labels, "ownerReferences": owner},
                "spec": {"selector": {"matchLabels": go_selected}, "namespaceSelector": {"matchNames": [ns.name()]},
                    "endpoints": [{"port": "metrics", "path": "/metrics", "interval": "30s",
                        "bearerTokenSecret": {"name": "dittofs-metrics-token", "key": "token"}}]}});
            let params = PostParams { field_manager: Some(GO_OPERATOR_FIELD_MANAGER.to_owned()), ..Default::default() };
            monitors(ns).create(&params, &serde_json::from_value(made)?).await?;

            let running = start_controller(ns.client(), ns.name());
            wait_metrics_ready(&servers, Some(("True", reasons::SERVICE_MONITOR_APPLIED))).await?;
            let mut labels = metrics_service_labels();
            labels["release"] = json!("kube-prometheus-stack");
            let sm = wait_until("the monitor to carry and select only this controller's labels", WAIT, async || {
                let sm = monitors(ns).get(MONITOR).await?;
                let (now, selects) = (serde_json::to_value(sm.labels())?, &sm.data["spec"]["selector"]["matchLabels"]);
                anyhow::ensure!(
                    now == labels && *selects == metrics_service_labels(),
                    "labels {now}, selector {selects}"
                );
                Ok(sm)
            })
            .await?;
            let managers: Vec<_> = sm.managed_fields().iter().filter_map(|m| m.manager.clone()).collect();
            assert!(!managers.iter().any(|m| m == GO_OPERATOR_FIELD_MANAGER), "{managers:?}");
            let svc: Service = ns.api::<Service>().get(&names::metrics_service("fs")).await?;
            assert_eq!(serde_json::to_value(svc.labels())?, metrics_service_labels(), "what the monitor selects");
            let taken_over =
                |e: &k8s_openapi::api::events::v1::Event| e.note.as_deref().is_some_and(|n| n.starts_with("Took over"));
            let events = wait_events(ns.client(), ns.name(), "fs", "the Took over Event", taken_over).await?;
            let taken = events.iter().filter_map(|e| e.note.as_deref()).next();
            assert!(taken.is_some_and(|n| n.contains("ServiceMonitor fs-metrics")), "{taken:?}");
            running.stop().await
        })
        .await
}

/// Under the deployed RBAC (`deploy/rbac/controller-rbac.yaml`), the controller authenticated as its
/// ServiceAccount watches, applies and deletes the monitor: nothing is refused.
#[tokio::test]
#[ignore = "real-server tier: needs the Kubernetes test binaries; run `make test`"]
async fn the_deployed_rbac_allows_every_service_monitor_request() -> anyhow::Result<()> {
    let cp = ControlPlane::shared();
    cp.with_temp_ns("ctrl-smon-rbac", async |ns| {
        let admin = ns.client();
        install_crd(admin.clone()).await?;
        install_service_monitor_crd(admin.clone()).await?;
        apply_deploy_file(&admin, "controller/controller.yaml").await?;
        apply_deploy_file(&admin, "rbac/controller-rbac.yaml").await?;
        let sa_client = service_account_client(cp, "dittofs-system", "dittofs-controller", Reads::All).await?;
        let running = start_controller(sa_client, ns.name());
        create_server(ns, &server("fs", go_sample())?).await?;
        let servers: Api<DittoServer> = ns.api();
        wait_metrics_ready(&servers, Some(("True", reasons::SERVICE_MONITOR_APPLIED))).await?;
        merge(&servers, json!({"spec": {"metrics": {"serviceMonitor": {"interval": "1m"}}}})).await?;
        wait_monitor(ns, |spec| spec["endpoints"][0]["interval"] == "1m").await?;
        merge(&servers, json!({"spec": {"metrics": {"serviceMonitor": {"enabled": false}}}})).await?;
        monitor_gone(ns).await?;
        let metrics = running.controller.metrics();
        assert_eq!(metrics.reconcile_count("forbidden"), 0, "the deployed RBAC refused something");
        assert_eq!(metrics.reconcile_count("ok"), metrics.total_reconciles());
        running.stop().await
    })
    .await
}
