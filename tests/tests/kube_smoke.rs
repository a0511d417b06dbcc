//! Smoke tests of the test control plane itself: each proves one behaviour the operator's tests rely on is real (CRDs, server-side apply ownership, RBAC for ServiceAccount tokens, garbage collection, StatefulSet controller).

use std::time::Duration;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, ServiceAccount};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

use dittofs_tests::kube_env::{ControlPlane, wait_until};

const CRD_NAME: &str = "widgets.smoke.dittofs.test";

/// Applies the test CRD (idempotent, so every test may call it) and waits
/// until it is Established and its endpoint serves.
async fn ensure_widget_crd(client: kube::Client) -> anyhow::Result<ApiResource> {
    let crd: CustomResourceDefinition = serde_json::from_value(json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": { "name": CRD_NAME },
        "spec": {
            "group": "smoke.dittofs.test",
            "scope": "Namespaced",
            "names": { "plural": "widgets", "singular": "widget", "kind": "Widget", "listKind": "WidgetList" },
            "versions": [{
                "name": "v1",
                "served": true,
                "storage": true,
                "subresources": { "status": {} },
                "schema": { "openAPIV3Schema": {
                    "type": "object",
                    "properties": {
                        "spec": {
                            "type": "object",
                            "properties": {
                                "size": { "type": "integer" },
                                // A list-map: server-side apply tracks each entry
                                // (by `name`) as owned by whoever applied it.
                                "entries": {
                                    "type": "array",
                                    "x-kubernetes-list-type": "map",
                                    "x-kubernetes-list-map-keys": ["name"],
                                    "items": {
                                        "type": "object",
                                        "required": ["name"],
                                        "properties": {
                                            "name": { "type": "string" },
                                            "value": { "type": "string" }
                                        }
                                    }
                                }
                            }
                        },
                        "status": { "type": "object", "x-kubernetes-preserve-unknown-fields": true }
                    }
                }}
            }]
        }
    }))?;
    let crds: Api<CustomResourceDefinition> = Api::all(client);
    crds.patch(CRD_NAME, &PatchParams::apply("kube-smoke").force(), &Patch::Apply(&crd)).await?;
    wait_until(&format!("CRD {CRD_NAME} to be Established"), Duration::from_secs(30), async || {
        let crd = crds.get(CRD_NAME).await?;
        let conditions = crd.status.and_then(|s| s.conditions).unwrap_or_default();
        let established = conditions.iter().any(|c| c.type_ == "Established" && c.status == "True");
        anyhow::ensure!(established, "conditions: {conditions:?}");
        Ok(())
    })
    .await?;
    let gvk = GroupVersionKind::gvk("smoke.dittofs.test", "v1", "Widget");
    Ok(ApiResource::from_gvk_with_plural(&gvk, "widgets"))
}

#[tokio::test]
#[ignore = "real-server tier: needs the Kubernetes test binaries; run `make test`"]
async fn crd_is_established_and_serves_custom_objects() -> anyhow::Result<()> {
    let cp = ControlPlane::shared();
    eprintln!("control plane started in {:?} at {}", cp.started_in(), cp.server_url());
    cp.with_temp_ns("crd", async |ns| {
        let ar = ensure_widget_crd(ns.client()).await?;
        let widgets: Api<DynamicObject> = Api::namespaced_with(ns.client(), ns.name(), &ar);
        let widget = DynamicObject::new("w1", &ar).data(json!({ "spec": { "size": 3 } }));
        // Established can precede the endpoint by a moment: retry the create.
        wait_until("Widget w1 to be created", Duration::from_secs(10), async || {
            Ok(widgets.create(&PostParams::default(), &widget).await?)
        })
        .await?;
        let got = widgets.get("w1").await?;
        assert_eq!(got.data["spec"]["size"], 3);
        Ok(())
    })
    .await
}

/// The entries of `spec.entries`, by name.
fn entry_names(obj: &DynamicObject) -> Vec<String> {
    let entries = obj.data["spec"]["entries"].as_array().cloned().unwrap_or_default();
    entries.iter().filter_map(|e| e["name"].as_str().map(str::to_owned)).collect()
}

/// The `fieldsV1` a manager owns (as JSON text), empty if it owns nothing.
fn owned_fields(obj: &DynamicObject, manager: &str) -> String {
    let managed = obj.metadata.managed_fields.clone().unwrap_or_default();
    let fields = managed.iter().find(|m| m.manager.as_deref() == Some(manager)).and_then(|m| m.fields_v1.clone());
    fields.map(|f| f.0.to_string()).unwrap_or_default()
}

#[tokio::test]
#[ignore = "real-server tier: needs the Kubernetes test binaries; run `make test`"]
async fn server_side_apply_tracks_list_map_entries_per_manager() -> anyhow::Result<()> {
    ControlPlane::shared()
        .with_temp_ns("ssa", async |ns| {
            let ar = ensure_widget_crd(ns.client()).await?;
            let widgets: Api<DynamicObject> = Api::namespaced_with(ns.client(), ns.name(), &ar);
            let apply = |entries: Value| {
                json!({
                    "apiVersion": "smoke.dittofs.test/v1",
                    "kind": "Widget",
                    "metadata": { "name": "shared" },
                    "spec": entries,
                })
            };
            let a = PatchParams::apply("manager-a");
            let b = PatchParams::apply("manager-b");
            let a_entry = apply(json!({ "entries": [{ "name": "a", "value": "from-a" }] }));
            wait_until("manager-a's first apply", Duration::from_secs(10), async || {
                Ok(widgets.patch("shared", &a, &Patch::Apply(&a_entry)).await?)
            })
            .await?;
            let b_entry = apply(json!({ "entries": [{ "name": "b", "value": "from-b" }] }));
            let both = widgets.patch("shared", &b, &Patch::Apply(&b_entry)).await?;

            assert_eq!(entry_names(&both), ["a", "b"], "both managers' entries survive");
            let (owned_a, owned_b) = (owned_fields(&both, "manager-a"), owned_fields(&both, "manager-b"));
            assert!(owned_a.contains(r#"k:{\"name\":\"a\"}"#), "manager-a owns entry a: {owned_a}");
            assert!(!owned_a.contains(r#"k:{\"name\":\"b\"}"#), "manager-a does not own b: {owned_a}");
            assert!(owned_b.contains(r#"k:{\"name\":\"b\"}"#), "manager-b owns entry b: {owned_b}");
            assert!(!owned_b.contains(r#"k:{\"name\":\"a\"}"#), "manager-b does not own a: {owned_b}");

            // Applying without its entry withdraws exactly what manager-a owned.
            let after = widgets.patch("shared", &a, &Patch::Apply(&apply(json!({})))).await?;
            assert_eq!(entry_names(&after), ["b"], "only manager-a's entry is removed");
            Ok(())
        })
        .await
}

fn config_map(name: &str, data: &[(&str, &str)]) -> ConfigMap {
    ConfigMap {
        metadata: kube::api::ObjectMeta { name: Some(name.to_owned()), ..Default::default() },
        data: Some(data.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()),
        ..Default::default()
    }
}

#[tokio::test]
#[ignore = "real-server tier: needs the Kubernetes test binaries; run `make test`"]
async fn service_account_token_is_subject_to_rbac() -> anyhow::Result<()> {
    let cp = ControlPlane::shared();
    cp.with_temp_ns("rbac", async |ns| {
        let admin_cms: Api<ConfigMap> = ns.api();
        for name in ["allowed", "denied"] {
            admin_cms.create(&PostParams::default(), &config_map(name, &[("k", "v0")])).await?;
        }
        let sa: ServiceAccount = serde_json::from_value(json!({ "metadata": { "name": "limited" } }))?;
        ns.api::<ServiceAccount>().create(&PostParams::default(), &sa).await?;
        let role: Role = serde_json::from_value(json!({
            "metadata": { "name": "edit-allowed" },
            "rules": [{
                "apiGroups": [""],
                "resources": ["configmaps"],
                "resourceNames": ["allowed"],
                "verbs": ["get", "patch", "update"]
            }]
        }))?;
        ns.api::<Role>().create(&PostParams::default(), &role).await?;
        let binding: RoleBinding = serde_json::from_value(json!({
            "metadata": { "name": "limited-edit-allowed" },
            "roleRef": { "apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "edit-allowed" },
            "subjects": [{ "kind": "ServiceAccount", "name": "limited", "namespace": ns.name() }]
        }))?;
        ns.api::<RoleBinding>().create(&PostParams::default(), &binding).await?;

        let sa_client = cp.service_account_client(ns.name(), "limited").await?;
        let cms: Api<ConfigMap> = Api::namespaced(sa_client, ns.name());
        let patch = Patch::Merge(json!({ "data": { "k": "v1" } }));
        // The RBAC authorizer learns of the new binding through an informer: a
        // first attempt may still be denied, so wait for it to be allowed.
        wait_until("the granted patch to be allowed", Duration::from_secs(10), async || {
            Ok(cms.patch("allowed", &PatchParams::default(), &patch).await?)
        })
        .await?;
        assert_eq!(admin_cms.get("allowed").await?.data.unwrap()["k"], "v1");

        for (what, result) in [
            (
                "patch of a ConfigMap outside resourceNames",
                cms.patch("denied", &PatchParams::default(), &patch).await.map(drop),
            ),
            ("create (verb not granted)", cms.create(&PostParams::default(), &config_map("new", &[])).await.map(drop)),
        ] {
            match result {
                Err(kube::Error::Api(status)) => assert_eq!(status.code, 403, "{what}: {status:?}"),
                other => panic!("{what} should be forbidden, got {other:?}"),
            }
        }
        assert_eq!(admin_cms.get("denied").await?.data.unwrap()["k"], "v0");
        Ok(())
    })
    .await
}

#[tokio::test]
#[ignore = "real-server tier: needs the Kubernetes test binaries; run `make test`"]
async fn garbage_collector_deletes_dependents_of_deleted_owner() -> anyhow::Result<()> {
    ControlPlane::shared()
        .with_temp_ns("gc", async |ns| {
            let cms: Api<ConfigMap> = ns.api();
            let owner = cms.create(&PostParams::default(), &config_map("owner", &[])).await?;
            let mut dependent = config_map("dependent", &[]);
            dependent.metadata.owner_references = Some(vec![serde_json::from_value(json!({
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "name": "owner",
                "uid": owner.metadata.uid.clone().expect("created object has a uid"),
            }))?]);
            cms.create(&PostParams::default(), &dependent).await?;

            cms.delete("owner", &DeleteParams::background()).await?;
            wait_until("the garbage collector to delete ConfigMap dependent", Duration::from_secs(60), async || {
                match cms.get_opt("dependent").await? {
                    None => Ok(()),
                    Some(cm) => anyhow::bail!("still present, ownerReferences {:?}", cm.metadata.owner_references),
                }
            })
            .await
        })
        .await
}

#[tokio::test]
#[ignore = "real-server tier: needs the Kubernetes test binaries; run `make test`"]
async fn statefulset_controller_creates_pending_pod() -> anyhow::Result<()> {
    ControlPlane::shared()
        .with_temp_ns("sts", async |ns| {
            let sts: StatefulSet = serde_json::from_value(json!({
                "metadata": { "name": "web" },
                "spec": {
                    "replicas": 1,
                    "serviceName": "web",
                    "selector": { "matchLabels": { "app": "web" } },
                    "template": {
                        "metadata": { "labels": { "app": "web" } },
                        // Never pulled: there is no kubelet.
                        "spec": { "containers": [{ "name": "web", "image": "registry.invalid/none:0" }] }
                    }
                }
            }))?;
            ns.api::<StatefulSet>().create(&PostParams::default(), &sts).await?;

            let pods: Api<Pod> = ns.api();
            let pod =
                wait_until("the StatefulSet controller to create Pod web-0", Duration::from_secs(60), async || {
                    Ok(pods.get("web-0").await?)
                })
                .await?;
            let phase = pod.status.and_then(|s| s.phase);
            assert_eq!(phase.as_deref(), Some("Pending"), "no kubelet, so the Pod stays Pending");
            let owners = pod.metadata.owner_references.unwrap_or_default();
            assert!(
                owners.iter().any(|o| o.kind == "StatefulSet" && o.name == "web"),
                "owned by the StatefulSet: {owners:?}"
            );
            Ok(())
        })
        .await
}
