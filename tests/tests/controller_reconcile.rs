//! The controller against the real control plane: every child with owners, labels and contents; garbage
//! collection on delete; a reconcile with nothing changed writes nothing; edits that DittoFS does not read
//! leave the pod alone; another field manager's adapter ports and the agent's token keys survive.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret, Service};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::{Resource, ResourceExt};
use serde_json::{Value, json};

use dittofs_api::labels::{CONFIG_HASH_ANNOTATION, INSTANCE_LABEL, MANAGED_BY_LABEL, NAME_LABEL};
use dittofs_api::{DittoServer, conditions, names};
use dittofs_tests::controller_world::*;
use dittofs_tests::kube_env::{ControlPlane, TempNamespace, wait_until};
use dittofs_tests::objects::*;

fn secret_text(s: &Secret, key: &str) -> String {
    let bytes = &s.data.as_ref().expect("data")[key].0;
    String::from_utf8(bytes.clone()).expect("utf-8")
}

const CHILD_KINDS: [&str; 7] =
    ["ConfigMap", "ServiceAccount", "Role", "RoleBinding", "Service", "NetworkPolicy", "StatefulSet"];

fn child_applies(running: &Running) -> u64 {
    CHILD_KINDS.iter().map(|k| running.controller.metrics().child_apply_count(k)).sum()
}

fn total_writes(running: &Running) -> u64 {
    [
        "Secret",
        "ConfigMap",
        "ServiceAccount",
        "Role",
        "RoleBinding",
        "Service",
        "NetworkPolicy",
        "StatefulSet",
        "DittoServerStatus",
    ]
    .iter()
    .map(|k| running.controller.metrics().write_count(k))
    .sum()
}

async fn wait_for_children(ns: &TempNamespace<'_>, cr: &str) -> anyhow::Result<()> {
    let objects = children_of(cr);
    wait_until("every child to exist", Duration::from_secs(30), async || {
        resource_versions(ns, &objects).await.map(drop)
    })
    .await
}

/// A controller and a minimal server `fs` it has fully reconciled once (config ready, every child there).
async fn reconciled_minimal_server(ns: &TempNamespace<'_>) -> anyhow::Result<(Running, Api<DittoServer>)> {
    let (running, servers) = started(ns, "fs", json!({"storage": {"metadataSize": "1Gi"}})).await?;
    wait_for_children(ns, "fs").await?;
    Ok((running, servers))
}

#[tokio::test]
#[ignore = "real-server tier: needs the Kubernetes test binaries; run `make test`"]
async fn every_child_exists_with_owner_labels_and_contents_and_gc_removes_them() -> anyhow::Result<()> {
    let cp = ControlPlane::shared();
    cp.with_temp_ns("ctrl-children", async |ns| {
        let begun = Instant::now();
        let spec = json!({"storage": {"metadataSize": "1Gi"}, "metrics": {"enabled": true}});
        let (running, servers) = started(ns, "fs", spec).await?;
        wait_for_children(ns, "fs").await?;
        let ds = servers.get("fs").await?;
        let uid = ds.uid().expect("uid");
        eprintln!("first reconcile complete (children + status) after {:?}", begun.elapsed());

        // Owners and labels on every child.
        let mut objects = children_of("fs");
        objects.push(("Service", names::metrics_service("fs")));
        for (kind, name) in &objects {
            let meta = metadata(ns, &resource(kind)?, name).await?.with_context(|| format!("{kind}/{name}"))?;
            let meta = serde_json::to_value(meta)?;
            let owners = meta["ownerReferences"].as_array().cloned().unwrap_or_default();
            assert_eq!(owners.len(), 1, "{kind}/{name}: {owners:?}");
            assert_eq!(owners[0]["kind"], DittoServer::kind(&()).as_ref(), "{kind}/{name}");
            assert_eq!(owners[0]["uid"], uid.as_str(), "{kind}/{name}");
            assert_eq!(owners[0]["controller"], true, "{kind}/{name}");
            let labels = &meta["labels"];
            assert_eq!(labels[NAME_LABEL], "dittofs", "{kind}/{name}");
            assert_eq!(labels[INSTANCE_LABEL], "fs", "{kind}/{name}");
            assert_eq!(labels[MANAGED_BY_LABEL], "dittofs-controller", "{kind}/{name}");
        }

        // Contents.
        let secrets: Api<Secret> = ns.api();
        assert_eq!(secret_text(&secrets.get("fs-jwt-secret").await?, "jwt-secret").len(), 43);
        let admin = secrets.get("fs-admin-bootstrap-credentials").await?;
        assert_eq!(secret_text(&admin, "username"), "admin");
        assert_eq!(secret_text(&admin, "password").len(), 24);
        let creds = secrets.get("fs-operator-credentials").await?;
        assert_eq!(secret_text(&creds, "username"), "k8s-operator");
        assert_eq!(secret_text(&creds, "password").len(), 24);
        let cm = ns.api::<ConfigMap>().get("fs-config").await?;
        let config: Value = serde_saphyr::from_str(&cm.data.unwrap()["config.yaml"])?;
        assert_eq!(config["controlplane"]["port"], 8080);
        assert_eq!(config["metrics"]["port"], 9090);
        let np = ns.api::<NetworkPolicy>().get("fs-baseline").await?;
        let ports: Vec<_> = np.spec.unwrap().ingress.unwrap()[0]
            .ports
            .clone()
            .unwrap()
            .iter()
            .map(|p| p.port.clone().unwrap())
            .collect();
        assert_eq!(serde_json::to_value(&ports)?, json!([8080, 9090]));
        let api_svc = ns.api::<Service>().get("fs-api").await?;
        assert_eq!(api_svc.spec.unwrap().type_.as_deref(), Some("ClusterIP"));
        let headless = ns.api::<Service>().get("fs-headless").await?;
        assert_eq!(headless.spec.unwrap().cluster_ip.as_deref(), Some("None"));

        // The pod the real StatefulSet controller created: the token reaches the agent container only.
        let pods: Api<Pod> = ns.api();
        let pod = wait_until("Pod fs-0", Duration::from_secs(30), async || Ok(pods.get("fs-0").await?)).await?;
        let spec = pod.spec.unwrap();
        assert_eq!(spec.service_account_name.as_deref(), Some("fs-agent"));
        let token_mounts = |name: &str| {
            spec.containers
                .iter()
                .find(|c| c.name == name)
                .unwrap()
                .volume_mounts
                .iter()
                .flatten()
                .filter(|m| m.mount_path == "/var/run/secrets/kubernetes.io/serviceaccount")
                .count()
        };
        assert_eq!(token_mounts("dittofs"), 0, "DittoFS must not see a Kubernetes credential");
        assert_eq!(token_mounts("agent"), 1);
        let agent = spec.containers.iter().find(|c| c.name == "agent").unwrap();
        assert_eq!(agent.image.as_deref(), Some(AGENT_IMAGE));

        // Status and Events.
        let status = ds.status.clone().unwrap();
        assert_eq!(status.phase.map(|p| p.as_str()), Some("Pending"), "no kubelet: the pod never runs");
        assert!(status.config_hash.is_some());
        for c in &status.conditions {
            assert_eq!(c.observed_generation, ds.metadata.generation, "{c:?}");
        }
        // One Created Event per reconcile that created something, naming each child it created.
        let events = wait_until("Created Events naming every child", Duration::from_secs(10), async || {
            let events = events_for(ns.client(), ns.name(), "fs").await?;
            let notes: Vec<&str> = events
                .iter()
                .filter(|e| e.reason.as_deref() == Some("Created"))
                .filter_map(|e| e.note.as_deref())
                .collect();
            for (kind, name) in &objects {
                let named = notes.iter().filter(|n| n.contains(&format!("{kind} {name}"))).count();
                anyhow::ensure!(named == 1, "{kind} {name} is named by {named} Created Events: {notes:?}");
            }
            anyhow::ensure!(notes.len() < objects.len(), "one Event per child: {notes:?}");
            Ok(events)
        })
        .await?;
        assert!(events.iter().all(|e| e.reporting_controller.as_deref() == Some("dittofs-controller")));

        // Deleting the server: the real garbage collector removes everything.
        servers.delete("fs", &DeleteParams::background()).await?;
        let gc_started = Instant::now();
        // Every kind resolves to its API first: an unknown kind fails here instead of counting as removed.
        let typed =
            objects.iter().map(|(kind, name)| Ok((resource(kind)?, name))).collect::<anyhow::Result<Vec<_>>>()?;
        wait_until("the garbage collector to remove every child", Duration::from_secs(60), async || {
            for (api, name) in &typed {
                anyhow::ensure!(metadata(ns, api, name).await?.is_none(), "{}/{name} still exists", api.kind);
            }
            anyhow::ensure!(pods.get_opt("fs-0").await?.is_none(), "Pod fs-0 still exists");
            Ok(())
        })
        .await?;
        eprintln!("garbage collection took {:?}", gc_started.elapsed());
        assert_eq!(running.controller.metrics().reconcile_count("forbidden"), 0);
        running.stop().await
    })
    .await
}

#[tokio::test]
#[ignore = "real-server tier: needs the Kubernetes test binaries; run `make test`"]
async fn a_reconcile_with_nothing_changed_writes_nothing_and_agent_only_edits_keep_the_pod() -> anyhow::Result<()> {
    let cp = ControlPlane::shared();
    cp.with_temp_ns("ctrl-noop", async |ns| {
        let (running, servers) = reconciled_minimal_server(ns).await?;
        let pods: Api<Pod> = ns.api();
        let pod_uid =
            wait_until("Pod fs-0", Duration::from_secs(30), async || Ok(pods.get("fs-0").await?.uid())).await?;
        let reconciles = running.settle(Duration::from_secs(2)).await?;
        let mut objects = children_of("fs");
        objects.push(("DittoServer", "fs".into()));
        let secrets: Api<Secret> = ns.api();
        let jwt = secret_text(&secrets.get("fs-jwt-secret").await?, "jwt-secret");
        let admin = secret_text(&secrets.get("fs-admin-bootstrap-credentials").await?, "password");

        // 1. Touch the server's metadata: a reconcile runs, writes nothing, and sends no child at all (each is
        //    as its last apply left it).
        let before_writes = total_writes(&running);
        let before_applies = child_applies(&running);
        servers
            .patch("fs", &PatchParams::default(), &Patch::Merge(json!({"metadata": {"annotations": {"touch": "1"}}})))
            .await?;
        let before = resource_versions(ns, &objects).await?;
        let t0 = Instant::now();
        running.wait_reconciles("a reconcile after the touch", None, reconciles).await?;
        let after_reconciles = running.settle(Duration::from_secs(1)).await?;
        eprintln!("no-op reconciles: {} (first ran {:?} after the touch)", after_reconciles - reconciles, t0.elapsed());
        assert_eq!(resource_versions(ns, &objects).await?, before, "a no-op reconcile changed something");
        assert_eq!(total_writes(&running), before_writes, "a no-op reconcile counted a write");
        assert_eq!(child_applies(&running), before_applies, "an unchanged child was applied again");
        assert!(before_applies >= 8, "the first reconcile applied every child ({before_applies})");

        // 2. A restarted controller (empty caches) reconciles everything again and still writes nothing,
        //    and keeps the generated secrets.
        running.stop().await?;
        let running = start_controller(ns.client(), ns.name());
        running.wait_reconciles("the new controller's first reconcile", Some("ok"), 0).await?;
        running.settle(Duration::from_secs(1)).await?;
        assert_eq!(resource_versions(ns, &objects).await?, before, "a restarted controller rewrote something");
        assert_eq!(total_writes(&running), 0);
        assert_eq!(secret_text(&secrets.get("fs-jwt-secret").await?, "jwt-secret"), jwt);
        assert_eq!(secret_text(&secrets.get("fs-admin-bootstrap-credentials").await?, "password"), admin);

        // 3. pollingInterval and adapterServices are read by the agent and the controller, not the pod:
        //    the StatefulSet is not even rewritten, and its pod stays.
        let sts_api: Api<StatefulSet> = ns.api();
        let sts_before = sts_api.get("fs").await?;
        servers
            .patch(
                "fs",
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {
                    "adapterDiscovery": {"pollingInterval": "5s"},
                    "adapterServices": {"type": "NodePort", "annotations": {"lb": "x"}}
                }})),
            )
            .await?;
        wait_for_condition(&servers, "fs", conditions::CONFIG_READY, "True", Duration::from_secs(20)).await?;
        running.settle(Duration::from_secs(1)).await?;
        let sts_after = sts_api.get("fs").await?;
        assert_eq!(sts_after.resource_version(), sts_before.resource_version(), "StatefulSet rewritten");
        assert_eq!(pods.get("fs-0").await?.uid(), pod_uid, "the pod was replaced");

        // 4. An edit DittoFS reads (log level) changes the config hash: that one rolls the pod.
        let hash = |s: &StatefulSet| {
            s.spec.clone().unwrap().template.metadata.unwrap().annotations.unwrap()[CONFIG_HASH_ANNOTATION].clone()
        };
        servers
            .patch("fs", &PatchParams::default(), &Patch::Merge(json!({"spec": {"logging": {"level": "DEBUG"}}})))
            .await?;
        let rolled = wait_until("the config hash to change", Duration::from_secs(20), async || {
            let sts = sts_api.get("fs").await?;
            anyhow::ensure!(hash(&sts) != hash(&sts_before), "same hash");
            Ok(sts)
        })
        .await?;
        let cm = ns.api::<ConfigMap>().get("fs-config").await?;
        assert!(cm.data.unwrap()["config.yaml"].contains("DEBUG"));
        assert_ne!(hash(&rolled), hash(&sts_after));
        running.stop().await
    })
    .await
}

#[tokio::test]
#[ignore = "real-server tier: needs the Kubernetes test binaries; run `make test`"]
async fn fields_of_other_managers_survive_the_controllers_apply() -> anyhow::Result<()> {
    let cp = ControlPlane::shared();
    cp.with_temp_ns("ctrl-managers", async |ns| {
        let (running, servers) = reconciled_minimal_server(ns).await?;

        // The adapter part owns `adapter-*` container ports under its own manager.
        let sts_api: Api<StatefulSet> = ns.api();
        let ports = apply_body::<StatefulSet>(
            "fs",
            json!({"spec": {"template": {"spec": {"containers": [{"name": "dittofs", "ports": [
                {"name": "adapter-nfs", "containerPort": 12049, "protocol": "TCP"}
            ]}]}}}}),
        );
        sts_api.patch("fs", &PatchParams::apply("dittofs-controller-ports").force(), &Patch::Apply(&ports)).await?;
        // The agent stores its token pair next to the controller's keys (as an update, as the agent does).
        let secrets: Api<Secret> = ns.api();
        secrets
            .patch(
                "fs-operator-credentials",
                &PatchParams::default(),
                &Patch::Merge(json!({"stringData": {"access-token": "a", "refresh-token": "r"}})),
            )
            .await?;

        // Make the controller reconcile (and re-apply everything) twice.
        for i in 0..2 {
            let before = running.controller.metrics().total_reconciles();
            servers
                .patch(
                    "fs",
                    &PatchParams::default(),
                    &Patch::Merge(json!({"metadata": {"annotations": {"touch": i.to_string()}}})),
                )
                .await?;
            running.wait_reconciles("a reconcile", None, before).await?;
        }
        running.settle(Duration::from_secs(1)).await?;
        let sts = sts_api.get("fs").await?;
        let dittofs =
            sts.spec.unwrap().template.spec.unwrap().containers.into_iter().find(|c| c.name == "dittofs").unwrap();
        let names: Vec<_> = dittofs.ports.unwrap().into_iter().filter_map(|p| p.name).collect();
        assert_eq!(names, ["api", "adapter-nfs"], "the adapter port survives the main apply");
        let creds = secrets.get("fs-operator-credentials").await?;
        let keys: Vec<_> = creds.data.unwrap().into_keys().collect();
        assert_eq!(keys, ["access-token", "password", "refresh-token", "username"]);
        assert_eq!(running.controller.metrics().reconcile_count("conflict"), 0);
        running.stop().await
    })
    .await
}

#[tokio::test]
#[ignore = "real-server tier: needs the Kubernetes test binaries; run `make test`"]
async fn user_secret_references_replace_the_managed_secrets() -> anyhow::Result<()> {
    let cp = ControlPlane::shared();
    cp.with_temp_ns("ctrl-refs", async |ns| {
        install_crd(ns.client()).await?;
        let secrets: Api<Secret> = ns.api();
        let user: Secret = serde_json::from_value(
            json!({"metadata": {"name": "mine"}, "stringData": {"jwt": "x".repeat(40), "pw": "admin-pw"}}),
        )?;
        secrets.create(&Default::default(), &user).await?;
        let running = start_controller(ns.client(), ns.name());
        create_server(
            ns,
            &server(
                "fs",
                json!({"storage": {"metadataSize": "1Gi"}, "identity": {
                    "jwt": {"secretRef": {"name": "mine", "key": "jwt"}},
                    "admin": {"passwordSecretRef": {"name": "mine", "key": "pw"}}
                }}),
            )?,
        )
        .await?;
        let servers: Api<DittoServer> = ns.api();
        wait_for_condition(&servers, "fs", conditions::CONFIG_READY, "True", Duration::from_secs(30)).await?;
        let sts: StatefulSet = wait_until("StatefulSet fs", Duration::from_secs(20), async || {
            Ok(ns.api::<StatefulSet>().get("fs").await?)
        })
        .await?;
        assert!(secrets.get_opt("fs-jwt-secret").await?.is_none());
        assert!(secrets.get_opt("fs-admin-bootstrap-credentials").await?.is_none());
        assert!(secrets.get_opt("fs-operator-credentials").await?.is_some());
        let pod = sts.spec.unwrap().template.spec.unwrap();
        let refs: BTreeMap<String, (String, String)> = pod
            .containers
            .iter()
            .flat_map(|c| c.env.clone().unwrap_or_default())
            .filter_map(|e| {
                let r = e.value_from?.secret_key_ref?;
                Some((e.name, (r.name, r.key)))
            })
            .collect();
        assert_eq!(refs["DITTOFS_CONTROLPLANE_SECRET"], ("mine".to_owned(), "jwt".to_owned()));
        assert_eq!(refs["DITTOFS_ADMIN_INITIAL_PASSWORD"], ("mine".to_owned(), "pw".to_owned()));
        // The agent gets it as a file of a Secret volume, not as an env var.
        assert!(!refs.contains_key("DITTOFS_ADMIN_PASSWORD"), "{refs:?}");
        let volume = pod.volumes.unwrap_or_default().into_iter().find(|v| v.name == "admin-password");
        let admin = volume.and_then(|v| v.secret).expect("the admin-password Secret volume");
        assert_eq!(admin.secret_name.as_deref(), Some("mine"));
        assert_eq!(admin.items.unwrap_or_default()[0].key, "pw");
        // The user's Secret is only read, never owned.
        assert!(secrets.get("mine").await?.metadata.owner_references.is_none());
        running.stop().await
    })
    .await
}
