//! Objects that got in before the schema (written through a CRD without validation) do not wedge the
//! controller: each is reported (Ready=False naming the field, a Warning Event) and waits for a change,
//! while valid servers — old and new — are reconciled as usual. Own test binary: it swaps the CRD.

use std::time::Duration;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, ApiResource, DynamicObject, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

use dittofs_api::crd::CRD_NAME;
use dittofs_api::{DittoServer, conditions};
use dittofs_tests::controller_world::*;
use dittofs_tests::kube_env::{ControlPlane, wait_until};
use dittofs_tests::objects::*;

/// The DittoServer CRD with no schema at all (everything preserved), as an early or hand-made one might be.
fn lax_crd() -> anyhow::Result<CustomResourceDefinition> {
    let mut crd = dittofs_api::custom_resource_definition();
    let mut value = serde_json::to_value(&crd.spec.versions[0])?;
    value["schema"] = json!({"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}});
    value.as_object_mut().unwrap().remove("selectableFields");
    crd.spec.versions[0] = serde_json::from_value(value)?;
    Ok(crd)
}

#[tokio::test]
#[ignore = "real-server tier: needs the Kubernetes test binaries; run `make test`"]
async fn malformed_objects_do_not_wedge_the_controller() -> anyhow::Result<()> {
    let cp = ControlPlane::shared();
    cp.with_temp_ns("ctrl-malformed", async |ns| {
        let crds: Api<CustomResourceDefinition> = Api::all(ns.client());
        crds.patch(CRD_NAME, &PatchParams::apply("dittofs-tests").force(), &Patch::Apply(&lax_crd()?)).await?;
        let ar = ApiResource::erase::<DittoServer>(&());
        let raw: Api<DynamicObject> = Api::namespaced_with(ns.client(), ns.name(), &ar);
        let objects: [(&str, Value); 4] = [
            ("bad-replicas", json!({"storage": {"metadataSize": "1Gi"}, "replicas": "two"})),
            ("no-storage", json!({"replicas": 1})),
            ("bad-size", json!({"storage": {"metadataSize": "lots"}})),
            ("good", json!({"storage": {"metadataSize": "1Gi"}})),
        ];
        for (name, spec) in &objects {
            let obj = DynamicObject::new(name, &ar).data(json!({"spec": spec}));
            wait_until(&format!("{name} to be stored"), Duration::from_secs(20), async || {
                Ok(raw.create(&PostParams::default(), &obj).await?)
            })
            .await?;
        }
        // The real schema comes back; the stored objects stay as they are.
        install_crd(ns.client()).await?;

        // Elected, so its Lease renewals give a clock of its own below.
        let running = start_with(ns.client(), elected(ns.name(), "ctrl-malformed"));
        let servers: Api<DittoServer> = ns.api();
        wait_for_condition(&servers, "good", conditions::CONFIG_READY, "True", Duration::from_secs(30)).await?;
        // A server created after the malformed ones is reconciled too.
        create_server(ns, &server("late", json!({"storage": {"metadataSize": "1Gi"}}))?).await?;
        wait_for_condition(&servers, "late", conditions::CONFIG_READY, "True", Duration::from_secs(30)).await?;

        for (name, field) in [
            ("bad-replicas", "spec.replicas: invalid type"),
            ("no-storage", "missing field `storage`"),
            // Parses, but no StatefulSet could carry it (the apiserver would answer 500).
            ("bad-size", "spec.storage.metadataSize: \"lots\" is not a size"),
        ] {
            let events = wait_reason(ns.client(), ns.name(), name, "InvalidSpec").await?;
            let note = events[0].note.clone().unwrap_or_default();
            assert!(note.contains(field), "{name}: {note}");
            // The status says it too (read raw: the typed client cannot parse this object).
            let obj = raw.get(name).await?;
            let ready = obj.data["status"]["conditions"]
                .as_array()
                .and_then(|cs| cs.iter().find(|c| c["type"] == "Ready").cloned());
            let ready = ready.unwrap_or_else(|| panic!("{name}: no Ready condition in {:?}", obj.data["status"]));
            assert_eq!(
                (ready["status"].as_str(), ready["reason"].as_str()),
                (Some("False"), Some("InvalidSpec")),
                "{name}"
            );
            assert!(ready["message"].as_str().unwrap().contains(field), "{name}: {ready}");
        }
        // Invalid objects wait for a change: no retry loop. Once the reconciles of the status writes are done,
        // six renewals of the controller's Lease (3 s of its own clock) pass without one: a retry would come
        // after 1 s and 2 s (the back-off of a transient failure).
        let metrics = running.controller.metrics();
        running.settle(RENEW_EVERY).await?;
        let (invalid, rejected) = (metrics.reconcile_count("invalid_spec"), metrics.reconcile_count("rejected"));
        wait_renewals(ns, 6).await?;
        assert_eq!(metrics.reconcile_count("invalid_spec"), invalid, "invalid specs are retried");
        assert_eq!(metrics.reconcile_count("rejected"), rejected, "refused specs are retried");
        eprintln!("reconciles: ok={} invalid_spec={invalid} rejected={rejected}", metrics.reconcile_count("ok"));
        assert!(invalid <= 6 && rejected == 0, "invalid_spec={invalid} rejected={rejected}");

        // Fixing the object (a change) reconciles it.
        raw.patch("bad-replicas", &PatchParams::default(), &Patch::Merge(json!({"spec": {"replicas": 1}}))).await?;
        wait_for_condition(&servers, "bad-replicas", conditions::CONFIG_READY, "True", Duration::from_secs(30)).await?;
        running.stop().await
    })
    .await
}
