//! What the apiserver accepts with the installed CRD: invalid specs are refused with a message naming the
//! field; the Go operator's sample manifests are accepted unchanged, and the controller reconciles them.

use std::path::PathBuf;
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, ApiResource, DynamicObject, PostParams};
use serde_json::{Value, json};

use dittofs_api::{DittoServer, conditions};
use dittofs_tests::controller_world::*;
use dittofs_tests::kube_env::{ControlPlane, wait_until};
use dittofs_tests::objects::*;

fn resource() -> ApiResource {
    ApiResource::erase::<DittoServer>(&())
}

fn object(name: &str, spec: Value) -> DynamicObject {
    DynamicObject::new(name, &resource()).data(json!({"spec": spec}))
}

#[tokio::test]
#[ignore = "real-server tier: needs the Kubernetes test binaries; run `make test`"]
async fn invalid_specs_are_refused_naming_the_field() -> anyhow::Result<()> {
    let cp = ControlPlane::shared();
    cp.with_temp_ns("ctrl-invalid", async |ns| {
        install_crd(ns.client()).await?;
        let api: Api<DynamicObject> = Api::namespaced_with(ns.client(), ns.name(), &resource());
        let ok = json!({"storage": {"metadataSize": "1Gi"}});
        let cases: Vec<(&str, Value, &str)> = vec![
            ("replicas", json!({"storage": {"metadataSize": "1Gi"}, "replicas": 2}), "spec.replicas"),
            ("storage", json!({"replicas": 1}), "spec.storage"),
            ("size", json!({"storage": {"metadataSize": "lots"}}), "spec.storage.metadataSize"),
            (
                "polling",
                json!({"storage": {"metadataSize": "1Gi"}, "adapterDiscovery": {"pollingInterval": "abc"}}),
                "spec.adapterDiscovery.pollingInterval",
            ),
            (
                "polling-short",
                json!({"storage": {"metadataSize": "1Gi"}, "adapterDiscovery": {"pollingInterval": "500ms"}}),
                "spec.adapterDiscovery.pollingInterval",
            ),
            (
                "fast-path-short",
                json!({"storage": {"metadataSize": "1Gi"}, "adapterDiscovery": {"fastPathInterval": "50ms"}}),
                "spec.adapterDiscovery.fastPathInterval",
            ),
            (
                "fast-path-long",
                json!({"storage": {"metadataSize": "1Gi"}, "adapterDiscovery": {"fastPathInterval": "1m"}}),
                "spec.adapterDiscovery.fastPathInterval",
            ),
            (
                "fast-path-text",
                json!({"storage": {"metadataSize": "1Gi"}, "adapterDiscovery": {"fastPathInterval": "soon"}}),
                "spec.adapterDiscovery.fastPathInterval",
            ),
            (
                "port",
                json!({"storage": {"metadataSize": "1Gi"}, "controlPlane": {"port": 70000}}),
                "spec.controlPlane.port",
            ),
            (
                "svc-type",
                json!({"storage": {"metadataSize": "1Gi"}, "service": {"type": "Ingress"}}),
                "spec.service.type",
            ),
            (
                "grace",
                json!({"storage": {"metadataSize": "1Gi"}, "terminationGracePeriodSeconds": 5}),
                "spec.terminationGracePeriodSeconds",
            ),
            (
                "mtls",
                json!({"storage": {"metadataSize": "1Gi"}, "controlPlane": {"clientCASecretName": "ca"}}),
                "spec.controlPlane",
            ),
            (
                "jwt-ref",
                json!({"storage": {"metadataSize": "1Gi"}, "identity": {"jwt": {"secretRef": {"name": "j"}}}}),
                "spec.identity.jwt.secretRef.key",
            ),
        ];
        for (name, spec, field) in cases {
            let err = api
                .create(&PostParams::default(), &object(name, spec))
                .await
                .expect_err(&format!("{name} should be refused"));
            let kube::Error::Api(status) = err else { panic!("{name}: {err}") };
            assert_eq!(status.code, 422, "{name}: {status:?}");
            assert!(status.message.contains(field), "{name}: {:?} does not name {field}", status.message);
            eprintln!("{name}: {}", status.message);
        }
        // Names the Services cannot carry are refused too.
        let err =
            api.create(&PostParams::default(), &object(&"a".repeat(41), ok.clone())).await.expect_err("long name");
        assert!(err.to_string().contains("metadata.name"), "{err}");
        api.create(&PostParams::default(), &object("valid", ok)).await?;
        let fast = json!({"storage": {"metadataSize": "1Gi"}, "adapterDiscovery": {"fastPathInterval": "250ms"}});
        api.create(&PostParams::default(), &object("fast", fast)).await?;
        Ok(())
    })
    .await
}

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../api/tests/fixtures")
}

#[tokio::test]
#[ignore = "real-server tier: needs the Kubernetes test binaries; run `make test`"]
async fn go_operator_samples_are_accepted_unchanged_and_reconciled() -> anyhow::Result<()> {
    let cp = ControlPlane::shared();
    cp.with_temp_ns("ctrl-go-samples", async |ns| {
        install_crd(ns.client()).await?;
        // The Secrets the samples name, as their users have them (not the postgres sample's: it waits for it).
        let secrets: Api<Secret> = ns.api();
        let key = "k".repeat(40);
        for (name, data) in [
            ("dittofs-jwt-secret", json!({"secret": key, "jwt-signing-key": key})),
            ("dittofs-admin-secret", json!({"password": "admin-pw"})),
            ("ldap-bind", json!({"password": "bind-pw"})),
            ("dittofs-keytab", json!({"keytab": "not-really-a-keytab"})),
            ("machine-account", json!({"password": "machine-pw"})),
        ] {
            let secret = json!({"metadata": {"name": name}, "stringData": data});
            secrets.create(&PostParams::default(), &serde_json::from_value(secret)?).await?;
        }
        let running = start_controller(ns.client(), ns.name());
        let api: Api<DynamicObject> = Api::namespaced_with(ns.client(), ns.name(), &resource());
        let mut names = Vec::new();
        for file in ["go-basic.yaml", "go-minimal.yaml", "go-postgres-tls.yaml", "go-everything.yaml"] {
            let text = std::fs::read_to_string(fixtures().join(file))?;
            let mut obj: DynamicObject = serde_saphyr::from_str(&text)?;
            // Only the namespace changes: the test's own.
            obj.metadata.namespace = Some(ns.name().to_owned());
            let sent = obj.data.clone();
            let created = wait_until(&format!("{file} to be accepted"), Duration::from_secs(10), async || {
                Ok(api.create(&PostParams::default(), &obj).await?)
            })
            .await?;
            // Nothing the user wrote was pruned.
            assert_eq!(without_defaults(&created.data["spec"], &sent["spec"]), sent["spec"], "{file}");
            names.push(created.metadata.name.clone().unwrap());
        }
        let servers: Api<DittoServer> = ns.api();
        for name in &names {
            // The postgres sample names a Secret this namespace lacks: nothing starts until it exists.
            let missing_secret = name == "pg-tls";
            let config_ready = if missing_secret { "False" } else { "True" };
            let ds =
                wait_for_condition(&servers, name, conditions::CONFIG_READY, config_ready, Duration::from_secs(30))
                    .await?;
            let conds = ds.status.clone().unwrap_or_default().conditions;
            if missing_secret {
                let config = conds.iter().find(|c| c.type_ == conditions::CONFIG_READY).unwrap();
                assert_eq!(config.reason, conditions::reasons::DATABASE_SECRET_MISSING);
                assert!(config.message.contains("Secret postgres-credentials"), "{}", config.message);
                assert!(servers_statefulset(ns, name).await?.is_none(), "a StatefulSet without its database");
            }
            if name == "everything" {
                let db = conds.iter().find(|c| c.type_ == conditions::DATABASE_READY).unwrap();
                assert_eq!((db.status.as_str(), db.reason.as_str()), ("False", conditions::reasons::PERCONA_NOT_FOUND));
            }
            let supported =
                ds.status.unwrap().conditions.into_iter().find(|c| c.type_ == conditions::SPEC_SUPPORTED).unwrap();
            // Every section of the Go operator's is implemented now (LDAP and Kerberos rendered, Percona waited
            // for, snapshot policies applied by the agent, the ServiceMonitor applied): none is reported.
            assert_eq!(supported.status, "True", "{name}: {}", supported.message);
        }
        assert_eq!(running.controller.metrics().reconcile_count("rejected"), 0);
        running.stop().await
    })
    .await
}

async fn servers_statefulset(
    ns: &dittofs_tests::kube_env::TempNamespace<'_>,
    name: &str,
) -> anyhow::Result<Option<k8s_openapi::api::apps::v1::StatefulSet>> {
    Ok(ns.api::<k8s_openapi::api::apps::v1::StatefulSet>().get_opt(name).await?)
}

/// `stored` restricted to what was sent: every field sent must come back identical (defaults may be added).
fn without_defaults(stored: &Value, sent: &Value) -> Value {
    match (stored, sent) {
        (Value::Object(s), Value::Object(w)) => Value::Object(
            w.iter().map(|(k, v)| (k.clone(), without_defaults(s.get(k).unwrap_or(&Value::Null), v))).collect(),
        ),
        (Value::Array(s), Value::Array(w)) if s.len() == w.len() => {
            Value::Array(s.iter().zip(w).map(|(s, w)| without_defaults(s, w)).collect())
        }
        _ => stored.clone(),
    }
}

#[tokio::test]
#[ignore = "real-server tier: needs the Kubernetes test binaries; run `make test`"]
async fn a_quantity_kubernetes_would_refuse_is_reported_and_waits_for_a_change() -> anyhow::Result<()> {
    ControlPlane::shared()
        .with_temp_ns("ctrl-child-rejected", async |ns| {
            install_crd(ns.client()).await?;
            let running = start_controller(ns.client(), ns.name());
            // The schema cannot check a quantity (int-or-string); the apiserver refuses the StatefulSet.
            let spec = json!({"storage": {"metadataSize": "1Gi"}, "resources": {"limits": {"cpu": "lots"}}});
            create_server(ns, &server("fs", spec)?).await?;
            let servers: Api<DittoServer> = ns.api();
            let ds = wait_for_condition(&servers, "fs", conditions::READY, "False", Duration::from_secs(30)).await?;
            let ready = ds.status.unwrap().conditions.into_iter().find(|c| c.type_ == conditions::READY).unwrap();
            // The apiserver would refuse the StatefulSet with a 500 (a failed conversion), which looks
            // transient: the controller checks the quantity itself and waits for a change.
            assert_eq!(ready.reason, "InvalidSpec");
            assert!(
                ready.message.contains("resources.limits.cpu") && ready.message.contains("lots"),
                "{}",
                ready.message
            );
            assert!(ns.api::<k8s_openapi::api::apps::v1::StatefulSet>().get_opt("fs").await?.is_none());
            let invalid = wait_reason(ns.client(), ns.name(), "fs", "InvalidSpec").await?;
            let events = events_for(ns.client(), ns.name(), "fs").await?;
            let failed = events.iter().filter(|e| e.reason.as_deref() == Some("ReconcileFailed")).count();
            assert_eq!((invalid.len(), failed), (1, 0), "one Warning of its own");
            running.stop().await
        })
        .await
}
