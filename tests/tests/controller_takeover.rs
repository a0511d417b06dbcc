//! Switching from the Go operator on a live server: the namespace is built exactly as the Go operator
//! v0.29.0 leaves it with NFS and SMB running (`dittofs_tests::go_operator`), then our controller and the
//! agent start — the steps of docs/install.md's migration guide — while a watcher records every event on
//! the server's Services, NetworkPolicies, StatefulSet and pods. No adapter object is deleted, every
//! selector matches the pod at every moment, the pod template changes once, the baseline policy is there
//! throughout, and at the end everything is owned and labelled by us. A StatefulSet in a shape we do not
//! expect (a selector edited by hand) stops the take-over with a condition and an Event, changing nothing.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod, Secret, Service};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::{Api, PostParams};
use kube::runtime::watcher;
use kube::{Resource, ResourceExt};
use serde_json::{Value, json};

use dittofs_agent::{AgentConfig, SecretString};
use dittofs_api::conditions::{self, events as reasons};
use dittofs_api::constants::{CONTROLLER_NAME, GO_OPERATOR_FIELD_MANAGER, GO_OPERATOR_FINALIZER, TEARDOWN_FINALIZER};
use dittofs_api::labels::{MANAGED_BY_LABEL, POD_SELECTOR_ANNOTATION, POD_SELECTOR_GO};
use dittofs_api::{DittoServer, names};
use dittofs_tests::agent_world::RunningAgent;
use dittofs_tests::controller_world::adapters::wait_adapters_ready;
use dittofs_tests::controller_world::{AGENT_IMAGE, start_with};
use dittofs_tests::dittofs::{ADMIN_PASSWORD, DittoFs, Options};
use dittofs_tests::docs;
use dittofs_tests::go_operator::GoServer;
use dittofs_tests::kube_env::{ControlPlane, TempNamespace, wait_until};
use dittofs_tests::objects::*;

const CR: &str = "fs";
const WAIT: Duration = Duration::from_secs(30);

/// One watch event: when, which object, and the object as it was.
#[derive(Debug, Clone)]
struct Seen {
    at: Duration,
    kind: &'static str,
    name: String,
    deleted: bool,
    object: Value,
}

/// Records every event of `K` in the namespace from its first list on.
fn record<K>(
    ns: &TempNamespace<'_>,
    kind: &'static str,
    log: Arc<Mutex<Vec<Seen>>>,
    t0: Instant,
) -> tokio::task::JoinHandle<()>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + serde::Serialize
        + std::fmt::Debug
        + Send
        + 'static,
{
    let api: Api<K> = ns.api();
    tokio::spawn(async move {
        let mut events = watcher(api, watcher::Config::default()).boxed();
        while let Some(event) = events.next().await {
            let (obj, deleted) = match event {
                Ok(watcher::Event::Apply(o) | watcher::Event::InitApply(o)) => (o, false),
                Ok(watcher::Event::Delete(o)) => (o, true),
                _ => continue,
            };
            let seen = Seen {
                at: t0.elapsed(),
                kind,
                name: obj.name_any(),
                deleted,
                object: serde_json::to_value(&obj).unwrap_or_default(),
            };
            log.lock().unwrap().push(seen);
        }
    })
}

fn selector_of(seen: &Seen) -> Option<BTreeMap<String, String>> {
    let path = match seen.kind {
        "Service" => &seen.object["spec"]["selector"],
        "NetworkPolicy" => &seen.object["spec"]["podSelector"]["matchLabels"],
        "StatefulSet" => &seen.object["spec"]["selector"]["matchLabels"],
        _ => return None,
    };
    serde_json::from_value(path.clone()).ok()
}

fn subset(selector: &BTreeMap<String, String>, labels: &BTreeMap<String, String>) -> bool {
    selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// The namespace as the Go operator leaves it, DittoFS with its users as the Go operator provisioned them.
async fn go_world(ns: &TempNamespace<'_>, selector: Option<Value>) -> anyhow::Result<(GoServer, DittoFs)> {
    install_crd(ns.client()).await?;
    let fs = DittoFs::start(Options::default()).await?;
    let port = |kind| i32::from(fs.adapter_port(kind).expect("the harness moved the adapter to a free port"));
    let mut go = GoServer::new(CR, port("nfs"), port("smb"), ADMIN_PASSWORD);
    if let Some(selector) = selector {
        go.selector = selector;
    }
    // The Go operator's auth step: the `k8s-operator` user, role operator, with the Secret's password.
    let admin = fs.admin().await?;
    let user = json!({"username": names::OPERATOR_USERNAME, "password": go.operator_password, "role": "operator"});
    admin.post("/api/v1/users", &user).await?.expect_status(201)?;
    go.create(ns).await?;
    Ok((go, fs))
}

#[tokio::test]
#[ignore = "real-server tier: needs the Kubernetes test binaries and DittoFS; run `make test`"]
async fn a_live_go_operator_server_is_taken_over_without_an_outage() -> anyhow::Result<()> {
    ControlPlane::shared()
        .with_temp_ns("ctrl-takeover", async |ns| {
            let (go, fs) = go_world(ns, None).await?;
            let pods: Api<Pod> = ns.api();
            wait_until("pod fs-0 of the Go StatefulSet", WAIT, async || {
                anyhow::ensure!(pods.get_opt("fs-0").await?.is_some());
                Ok(())
            })
            .await?;

            // The guide's steps 1 and 2: the Go operator's Deployment scaled to zero, a backup, our CRD and
            // install applied, as written.
            let cp = ns.control_plane();
            let go_deployment = go_operator_deployment(ns.client()).await?;
            let scratch = docs::scratch_dir()?;
            for command in docs::commands(&docs::section("### 1. ")?) {
                docs::run_in(cp, scratch.path(), &command)?;
            }
            let replicas = go_deployment.get(GO_DEPLOYMENT).await?.spec.and_then(|s| s.replicas);
            assert_eq!(replicas, Some(0), "the Go operator is stopped");
            let backup = std::fs::read_to_string(scratch.path().join("dittoservers-backup.yaml"))?;
            assert!(backup.contains("kind: DittoServer") && backup.contains(GO_OPERATOR_FINALIZER), "{backup}");
            // Watch everything from here on.
            let (log, t0) = (Arc::new(Mutex::new(Vec::new())), Instant::now());
            let watchers = [
                record::<Service>(ns, "Service", log.clone(), t0),
                record::<NetworkPolicy>(ns, "NetworkPolicy", log.clone(), t0),
                record::<StatefulSet>(ns, "StatefulSet", log.clone(), t0),
                record::<Pod>(ns, "Pod", log.clone(), t0),
            ];
            for command in docs::commands(&docs::section("### 2. ")?) {
                docs::run_in(cp, scratch.path(), &command)?;
            }
            // The installed Deployment's pod, in-process (no kubelet): with its ServiceAccount, so the
            // take-over needs no right the install does not grant.
            let sa = service_account_client(cp, "dittofs-system", "dittofs-controller", Reads::All).await?;
            let mut config = dittofs_controller::Config::new(AGENT_IMAGE);
            config.namespace = Some(ns.name().to_owned());
            let controller = start_with(sa, config);
            let servers: Api<DittoServer> = ns.api();
            let statefulsets: Api<StatefulSet> = ns.api();
            wait_until("the agent injected into the live StatefulSet", WAIT, async || {
                let sts = statefulsets.get(CR).await?;
                let containers = &sts.spec.unwrap().template.spec.unwrap().containers;
                anyhow::ensure!(containers.iter().any(|c| c.name == names::AGENT_CONTAINER), "not yet");
                Ok(())
            })
            .await?;
            let injected_at = t0.elapsed();

            // Step 3: the agent (its container in the rolled pod) with the agent ServiceAccount the controller made.
            let sa = names::agent_service_account(CR);
            let sa = service_account_client(ns.control_plane(), ns.name(), &sa, Reads::Server(CR)).await?;
            let config = AgentConfig::new("fs-0", ns.name(), CR, fs.url(), SecretString::new(ADMIN_PASSWORD));
            let agent = RunningAgent::start(config, sa);
            wait_adapters_ready(&servers, CR, "True", conditions::reasons::ADAPTERS_EXPOSED).await?;
            let services: Api<Service> = ns.api();
            let policies: Api<NetworkPolicy> = ns.api();
            wait_until("the adapter objects applied by us", WAIT, async || {
                for name in ["fs-adapter-nfs", "fs-adapter-smb"] {
                    let svc = services.get(name).await?;
                    anyhow::ensure!(
                        svc.labels().get(MANAGED_BY_LABEL).map(String::as_str) == Some(CONTROLLER_NAME),
                        "{name}"
                    );
                    let np = policies.get(name).await?;
                    anyhow::ensure!(
                        np.labels().get(MANAGED_BY_LABEL).map(String::as_str) == Some(CONTROLLER_NAME),
                        "{name}"
                    );
                }
                Ok(())
            })
            .await?;
            controller.settle(Duration::from_secs(2)).await?;
            let log = log.lock().unwrap().clone();
            for w in watchers {
                w.abort();
            }

            // The timeline, for the record.
            for s in log.iter().filter(|s| s.at > Duration::ZERO) {
                let rv = s.object["metadata"]["resourceVersion"].as_str().unwrap_or_default();
                eprintln!(
                    "{:>7.3}s {:<13} {:<20} {} rv {rv}",
                    s.at.as_secs_f64(),
                    s.kind,
                    s.name,
                    if s.deleted { "DELETED" } else { "" }
                );
            }
            eprintln!("agent injected at {:.3}s", injected_at.as_secs_f64());

            // No adapter Service or policy was ever deleted.
            let deleted: Vec<_> =
                log.iter().filter(|s| s.deleted && s.kind != "Pod").map(|s| (s.kind, &s.name)).collect();
            assert!(deleted.is_empty(), "deleted: {deleted:?}");
            // Every selector matched every pod version at every moment (the pod never lost a Service).
            let pod_labels: Vec<BTreeMap<String, String>> = log
                .iter()
                .filter(|s| s.kind == "Pod" && !s.deleted)
                .map(|s| serde_json::from_value(s.object["metadata"]["labels"].clone()).unwrap_or_default())
                .collect();
            assert!(!pod_labels.is_empty());
            for s in &log {
                let Some(selector) = selector_of(s) else { continue };
                for labels in &pod_labels {
                    assert!(
                        subset(&selector, labels),
                        "{} {} selects {selector:?}, a pod has {labels:?}",
                        s.kind,
                        s.name
                    );
                }
            }
            // The pod template changed once.
            let mut templates: Vec<&Value> =
                log.iter().filter(|s| s.kind == "StatefulSet").map(|s| &s.object["spec"]["template"]).collect();
            templates.dedup();
            assert_eq!(templates.len(), 2, "the Go template, then ours: {}", templates.len());
            // The baseline policy, with the API port, in every version from the first.
            let baselines: Vec<&Seen> =
                log.iter().filter(|s| s.kind == "NetworkPolicy" && s.name == "fs-baseline").collect();
            let managed_by_us = |s: &&Seen| {
                let managers = s.object["metadata"]["managedFields"].as_array().cloned().unwrap_or_default();
                managers.iter().any(|m| m["manager"].as_str().is_some_and(|m| m.starts_with(CONTROLLER_NAME)))
            };
            let first_write = log.iter().filter(|s| s.kind != "Pod").find(managed_by_us).map(|s| s.at).unwrap();
            assert!(
                baselines.first().is_some_and(|b| b.at <= first_write),
                "the baseline exists before our first write"
            );
            for b in &baselines {
                let ports = b.object["spec"]["ingress"][0]["ports"].as_array().cloned().unwrap_or_default();
                assert!(ports.iter().any(|p| p["port"] == 8080), "{}", b.object);
            }

            // At the end: ours, labelled, and the Go operator's leftovers gone.
            let ds = servers.get(CR).await?;
            assert_eq!(ds.finalizers(), [TEARDOWN_FINALIZER.to_owned()]);
            assert_eq!(ds.annotations().get(POD_SELECTOR_ANNOTATION).map(String::as_str), Some(POD_SELECTOR_GO));
            let uid = ds.uid().unwrap();
            let ours =
                |kind: &str, meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta, no_go_fields: bool| {
                    let name = meta.name.clone().unwrap_or_default();
                    assert_eq!(
                        meta.labels.as_ref().and_then(|l| l.get(MANAGED_BY_LABEL)).map(String::as_str),
                        Some(CONTROLLER_NAME),
                        "{kind} {name}"
                    );
                    let owner = meta.owner_references.iter().flatten().find(|o| o.controller == Some(true));
                    assert_eq!(owner.map(|o| o.uid.as_str()), Some(uid.as_str()), "{kind} {name}");
                    if no_go_fields {
                        let go = meta
                            .managed_fields
                            .iter()
                            .flatten()
                            .any(|m| m.manager.as_deref() == Some(GO_OPERATOR_FIELD_MANAGER));
                        assert!(!go, "{kind} {name} still has fields of the Go operator's manager");
                    }
                };
            for name in ["fs-headless", "fs-api", "fs-metrics", "fs-adapter-nfs", "fs-adapter-smb"] {
                ours("Service", &services.get(name).await?.metadata, true);
            }
            for name in ["fs-baseline", "fs-adapter-nfs", "fs-adapter-smb"] {
                ours("NetworkPolicy", &policies.get(name).await?.metadata, true);
            }
            ours("ConfigMap", &ns.api::<ConfigMap>().get("fs-config").await?.metadata, true);
            let sts = statefulsets.get(CR).await?;
            ours("StatefulSet", &sts.metadata, true);
            for name in ["fs-jwt-secret", "fs-admin-bootstrap-credentials", "fs-operator-credentials"] {
                ours("Secret", &ns.api::<Secret>().get(name).await?.metadata, false);
            }
            // Only the adapters' own ports are left: the portmapper and discovery companions went with the one roll.
            let nfs = services.get("fs-adapter-nfs").await?.spec.unwrap().ports.unwrap();
            assert_eq!(
                nfs.iter().map(|p| (p.port, p.protocol.clone().unwrap())).collect::<Vec<_>>(),
                [(go.nfs, "TCP".into())]
            );
            let server =
                sts.spec.unwrap().template.spec.unwrap().containers.into_iter().find(|c| c.name == "dittofs").unwrap();
            let mut ports: Vec<String> = server.ports.unwrap().into_iter().filter_map(|p| p.name).collect();
            ports.sort();
            assert_eq!(ports, ["adapter-nfs", "adapter-smb", "api", "metrics"]);
            let taken = wait_reason(ns.client(), ns.name(), CR, reasons::TAKEN_OVER).await?;
            assert_eq!(taken.len(), 1, "{taken:?}");
            assert!(taken[0].note.as_deref().unwrap_or_default().contains("StatefulSet fs"), "{:?}", taken[0].note);

            // Steps 3 and 4 of the guide.
            let checks = docs::commands(&docs::section("### 3. ")?);
            let listed = docs::run_in(cp, scratch.path(), &checks[0])?;
            assert!(listed.lines().any(|l| l.contains(ns.name()) && l.contains(" fs ")), "{listed}");
            let events = docs::run_in(cp, scratch.path(), &checks[1])?;
            assert!(events.lines().any(|l| l.contains(ns.name()) && l.contains("TakenOver")), "{events}");
            for command in docs::commands(&docs::section("### 4. ")?) {
                docs::run_in(cp, scratch.path(), &command)?;
            }
            assert!(go_deployment.get_opt(GO_DEPLOYMENT).await?.is_none());

            agent.stop().await?;
            controller.stop().await?;
            drop(fs);
            Ok(())
        })
        .await
}

/// The Go operator's Deployment as its kustomize install names it (no kubelet: it never runs).
const GO_DEPLOYMENT: &str = "dittofs-operator-controller-manager";

async fn go_operator_deployment(client: kube::Client) -> anyhow::Result<Api<Deployment>> {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    match namespaces
        .create(&PostParams::default(), &serde_json::from_value(json!({"metadata": {"name": "dittofs"}}))?)
        .await
    {
        Err(kube::Error::Api(s)) if s.code == 409 => {}
        other => drop(other?),
    }
    let deployments: Api<Deployment> = Api::namespaced(client, "dittofs");
    let labels = json!({"control-plane": "controller-manager"});
    let body = json!({"metadata": {"name": GO_DEPLOYMENT}, "spec": {"replicas": 1, "selector": {"matchLabels": labels},
        "template": {"metadata": {"labels": labels}, "spec": {"containers": [{"name": "manager",
            "image": "marmos91c/dittofs-operator:latest", "command": ["/manager"]}]}}}});
    match deployments.create(&PostParams::default(), &serde_json::from_value(body)?).await {
        Err(kube::Error::Api(s)) if s.code == 409 => {}
        other => drop(other?),
    }
    Ok(deployments)
}

#[tokio::test]
#[ignore = "real-server tier: needs the Kubernetes test binaries and DittoFS; run `make test`"]
async fn a_go_statefulset_edited_by_hand_stops_the_take_over_and_changes_nothing() -> anyhow::Result<()> {
    ControlPlane::shared()
        .with_temp_ns("ctrl-takeover-odd", async |ns| {
            let odd = json!({"app": "dittofs-server", "instance": CR, "tier": "gold"});
            let (_go, fs) = go_world(ns, Some(odd)).await?;
            let before = snapshot(ns).await?;
            let controller = dittofs_tests::controller_world::start_controller(ns.client(), ns.name());
            let servers: Api<DittoServer> = ns.api();
            let ds = wait_for_condition(&servers, CR, conditions::READY, "False", WAIT).await?;
            let ready = ds.status.unwrap().conditions.into_iter().find(|c| c.type_ == conditions::READY).unwrap();
            assert_eq!(ready.reason, conditions::reasons::TAKEOVER_BLOCKED);
            assert!(
                ready.message.contains("tier=gold") && ready.message.contains("--cascade=orphan"),
                "{}",
                ready.message
            );
            // Retried (the fix changes an object that is not watched), and still nothing written.
            controller.wait_reconciles("a second blocked reconcile", Some("takeover_blocked"), 1).await?;
            assert_eq!(snapshot(ns).await?, before);
            let ds = servers.get(CR).await?;
            assert_eq!(ds.finalizers(), [GO_OPERATOR_FINALIZER.to_owned()]);
            let blocked = wait_reason(ns.client(), ns.name(), CR, reasons::TAKEOVER_BLOCKED).await?;
            assert_eq!(blocked.len(), 1, "one Warning per change of the message");
            controller.stop().await?;
            drop(fs);
            Ok(())
        })
        .await
}

/// Kind/name → resourceVersion of every object in the namespace the take-over could touch.
async fn snapshot(ns: &TempNamespace<'_>) -> anyhow::Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    let mut add = |kind: &str, items: Vec<k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta>| {
        for m in items {
            out.insert(format!("{kind}/{}", m.name.unwrap_or_default()), m.resource_version.unwrap_or_default());
        }
    };
    let lp = kube::api::ListParams::default();
    add("Service", ns.api::<Service>().list(&lp).await?.items.into_iter().map(|o| o.metadata).collect());
    add("NetworkPolicy", ns.api::<NetworkPolicy>().list(&lp).await?.items.into_iter().map(|o| o.metadata).collect());
    add("ConfigMap", ns.api::<ConfigMap>().list(&lp).await?.items.into_iter().map(|o| o.metadata).collect());
    add("Secret", ns.api::<Secret>().list(&lp).await?.items.into_iter().map(|o| o.metadata).collect());
    // kube-controller-manager writes the StatefulSet's status: compare what anyone else would change.
    for sts in ns.api::<StatefulSet>().list(&lp).await?.items {
        let managers: Vec<_> =
            sts.managed_fields().iter().filter(|m| m.subresource.is_none()).filter_map(|m| m.manager.clone()).collect();
        let seen =
            format!("generation {:?}, labels {:?}, managers {managers:?}", sts.metadata.generation, sts.labels());
        out.insert(format!("StatefulSet/{}", sts.name_any()), seen);
    }
    Ok(out)
}

#[tokio::test]
#[ignore = "real-server tier: needs the Kubernetes test binaries; run `make test`"]
async fn a_deleted_server_keeps_its_percona_cluster_unless_delete_with_server() -> anyhow::Result<()> {
    ControlPlane::shared()
        .with_temp_ns("ctrl-percona-keep", async |ns| {
            install_crd(ns.client()).await?;
            dittofs_tests::database::install_percona_crd(ns.client()).await?;
            let controller = dittofs_tests::controller_world::start_controller(ns.client(), ns.name());
            let servers: Api<DittoServer> = ns.api();
            let clusters = dittofs_tests::database::clusters(ns);
            for (name, delete_with_server) in [("kept", false), ("dropped", true)] {
                let spec = json!({"storage": {"metadataSize": "1Gi"},
                    "percona": {"enabled": true, "deleteWithServer": delete_with_server}});
                let ds = create_server(ns, &server(name, spec)?).await?;
                wait_for_condition(&servers, name, conditions::CONFIG_READY, "True", WAIT).await?;
                // The cluster as the Go operator creates it (and this controller now): owned by the server.
                let cluster = wait_until("the PerconaPGCluster", WAIT, async || {
                    clusters.get_opt(&format!("{name}-postgres")).await?.context("not created yet")
                })
                .await?;
                let owners = cluster.metadata.owner_references.unwrap_or_default();
                assert_eq!(owners.iter().map(|o| o.uid.clone()).collect::<Vec<_>>(), [ds.uid().unwrap_or_default()]);
                servers.delete(name, &Default::default()).await?;
                wait_gone(&servers, name, WAIT).await?;
            }
            // With deleteWithServer the owner reference stays, so the garbage collector takes the cluster (when it
            // has discovered this fresh API); the kept one has no owner left.
            if let Some(dropped) = clusters.get_opt("dropped-postgres").await? {
                assert_eq!(dropped.metadata.owner_references.unwrap_or_default().len(), 1);
            }
            let kept = clusters.get("kept-postgres").await?;
            assert!(kept.metadata.owner_references.unwrap_or_default().is_empty());
            wait_reason(ns.client(), ns.name(), "kept", "PerconaOrphaned").await?;
            wait_reason(ns.client(), ns.name(), "dropped", "PerconaDeleted").await?;
            controller.stop().await
        })
        .await
}
