//! The controller trusts neither the agents' reports nor the spec, against the real control plane: hostile
//! status entries (written as an agent writes them) publish only an allowed adapter on a free port, with
//! one Warning Event per change of what is refused and AdaptersReady saying why; the apiserver refuses
//! privileged pod settings and the agent's port with the CRD's messages; a too-short JWT key is reported.

use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, ApiResource, DynamicObject, PostParams};
use serde_json::{Value, json};

use dittofs_api::conditions::{self, events as reasons};
use dittofs_api::crd::cel;
use dittofs_api::{DittoServer, constants};
use dittofs_tests::controller_world::adapters::*;
use dittofs_tests::controller_world::*;
use dittofs_tests::kube_env::{ControlPlane, TempNamespace, wait_until};
use dittofs_tests::objects::*;

const CR: &str = "fs";
const WAIT: Duration = Duration::from_secs(10);

/// The notes of the Warning Events with `reason` about the server, and the highest series count.
async fn warnings(ns: &TempNamespace<'_>, reason: &str) -> anyhow::Result<(Vec<String>, i32)> {
    let events = events_for(ns.client(), ns.name(), CR).await?;
    let mine: Vec<_> = events.iter().filter(|e| e.reason.as_deref() == Some(reason)).collect();
    let count = mine.iter().map(|e| e.series.as_ref().map_or(1, |s| s.count)).max().unwrap_or(0);
    Ok((mine.iter().map(|e| e.note.clone().unwrap_or_default()).collect(), count))
}

#[tokio::test]
#[ignore = "real-server tier: needs the Kubernetes test binaries; run `make test`"]
async fn hostile_reports_publish_only_allowed_adapters_on_free_ports() -> anyhow::Result<()> {
    ControlPlane::shared()
        .with_temp_ns("ctrl-untrusted", async |ns| {
            let spec = json!({"storage": {"metadataSize": "1Gi"}, "adapterServices": {"allowedTypes": ["nfs", "smb", "webdav"]}});
            let (running, servers) = started(ns, CR, spec).await?;
            // The API port, the agent's admin port, a type DittoFS does not have, and one real adapter.
            let hostile = || {
                vec![serving("nfs", 12049), serving("smb", 8080), serving("webdav", 8082), serving("x", 9999)]
            };
            report(&servers, CR, "fs-0", hostile()).await?;
            wait_view(ns, CR, &expected(CR, &[("nfs", 12049)], true), WAIT).await?;
            let message = wait_adapters_ready(&servers, CR, "False", conditions::reasons::ADAPTERS_REFUSED).await?;
            let refused = "refused reported adapters: smb:8080 (the DittoFS API port (spec.controlPlane.port), never \
                           exposed), webdav:8082 (the agent's admin port, never exposed), x:9999 (type not in \
                           spec.adapterServices.allowedTypes)";
            assert_eq!(message, format!("exposed: nfs:12049; {refused}"));
            let st = servers.get(CR).await?.status.unwrap();
            assert_eq!(st.adapters_summary.as_deref(), Some("nfs:12049"));

            // A port out of range never reaches the controller: the status schema refuses the write.
            let out_of_range = report(&servers, CR, "fs-0", vec![serving("nfs", 12049), serving("smb", 70000)]).await;
            let error = format!("{:#}", out_of_range.expect_err("port 70000 is refused by the status schema"));
            assert!(error.contains("65535"), "{error}");

            // One Event, however many reconciles see the same refused set.
            wait_until("the AdaptersRefused Event", WAIT, async || {
                let (notes, _) = warnings(ns, reasons::ADAPTERS_REFUSED).await?;
                anyhow::ensure!(notes == [refused], "{notes:?}");
                Ok(())
            })
            .await?;
            let reconciles = running.controller.metrics().total_reconciles();
            for n in 0..3 {
                let mut entry = servers.get(CR).await?.status.unwrap().agents.remove(0);
                entry.traceparent = Some(traceparent(100 + n));
                report_entry(&servers, CR, serde_json::to_value(&entry)?).await?;
                running.settle(Duration::from_millis(500)).await?;
            }
            assert!(running.controller.metrics().total_reconciles() >= reconciles + 3, "each report reconciled");
            assert_eq!(warnings(ns, reasons::ADAPTERS_REFUSED).await?, (vec![refused.to_owned()], 1), "not repeated");
            assert_eq!(view(ns, CR).await?, expected(CR, &[("nfs", 12049)], true), "still only nfs");

            // A change of the refused set is announced once more.
            report(&servers, CR, "fs-0", vec![serving("nfs", 12049), serving("x", 9999)]).await?;
            wait_until("a second AdaptersRefused Event", WAIT, async || {
                let (notes, _) = warnings(ns, reasons::ADAPTERS_REFUSED).await?;
                anyhow::ensure!(notes.len() == 2, "{notes:?}");
                Ok(())
            })
            .await?;
            // Nothing refused any more: AdaptersReady is True again.
            report(&servers, CR, "fs-0", vec![serving("nfs", 12049), stopped("x", 9999)]).await?;
            let message = wait_adapters_ready(&servers, CR, "True", conditions::reasons::ADAPTERS_EXPOSED).await?;
            assert_eq!(message, "exposed: nfs:12049");
            assert_eq!(warnings(ns, reasons::ADAPTERS_REFUSED).await?.0.len(), 2);
            running.stop().await
        })
        .await
}

fn resource() -> ApiResource {
    ApiResource::erase::<DittoServer>(&())
}

#[tokio::test]
#[ignore = "real-server tier: needs the Kubernetes test binaries; run `make test`"]
async fn privileged_pods_and_the_agents_port_are_refused_by_the_apiserver() -> anyhow::Result<()> {
    ControlPlane::shared()
        .with_temp_ns("ctrl-untrusted-spec", async |ns| {
            install_crd(ns.client()).await?;
            let api: Api<DynamicObject> = Api::namespaced_with(ns.client(), ns.name(), &resource());
            let cases: [(&str, Value, &str); 8] = [
                ("privileged", json!({"securityContext": {"privileged": true}}), cel::PRIVILEGED_MESSAGE),
                ("escalation", json!({"securityContext": {"allowPrivilegeEscalation": true}}), cel::ESCALATION_MESSAGE),
                (
                    "caps",
                    json!({"securityContext": {"capabilities": {"add": ["SYS_ADMIN"]}}}),
                    cel::CAPABILITIES_MESSAGE,
                ),
                ("root", json!({"podSecurityContext": {"runAsUser": 0}}), cel::POD_RUN_AS_ROOT_MESSAGE),
                ("api-port", json!({"controlPlane": {"port": 8082}}), cel::API_AGENT_PORT_MESSAGE),
                ("metrics-port", json!({"metrics": {"enabled": true, "port": 8082}}), cel::METRICS_AGENT_PORT_MESSAGE),
                ("selinux", json!({"securityContext": {"seLinuxOptions": {"type": "spc_t"}}}), cel::SELINUX_MESSAGE),
                (
                    "sysctl",
                    json!({"podSecurityContext": {"sysctls": [{"name": "kernel.msgmax", "value": "1"}]}}),
                    cel::SYSCTLS_MESSAGE,
                ),
            ];
            for (name, extra, message) in cases {
                let mut spec = json!({"storage": {"metadataSize": "1Gi"}});
                spec.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
                let obj = DynamicObject::new(name, &resource()).data(json!({"spec": spec}));
                match api.create(&PostParams::default(), &obj).await {
                    Err(kube::Error::Api(e)) => {
                        assert_eq!(e.code, 422, "{name}: {e:?}");
                        assert!(e.message.contains(message), "{name}: {}", e.message);
                    }
                    other => anyhow::bail!("{name} was not refused: {other:?}"),
                }
            }
            // What the restricted profile allows (the Go operator's sample adds NET_BIND_SERVICE) is accepted.
            let allowed = json!({"storage": {"metadataSize": "1Gi"},
                "securityContext": {"capabilities": {"add": ["NET_BIND_SERVICE"]}, "runAsUser": 65532}});
            api.create(
                &PostParams::default(),
                &DynamicObject::new("allowed", &resource()).data(json!({"spec": allowed})),
            )
            .await?;
            Ok(())
        })
        .await
}

#[tokio::test]
#[ignore = "real-server tier: needs the Kubernetes test binaries; run `make test`"]
async fn a_user_jwt_key_shorter_than_dittofs_accepts_is_reported() -> anyhow::Result<()> {
    ControlPlane::shared()
        .with_temp_ns("ctrl-untrusted-jwt", async |ns| {
            install_crd(ns.client()).await?;
            let short = "x".repeat(constants::MIN_JWT_SECRET_LEN - 1);
            let secret: Secret = serde_json::from_value(json!({"metadata": {"name": "jwt"}, "stringData": {"k": short}}))?;
            ns.api::<Secret>().create(&PostParams::default(), &secret).await?;
            let running = start_controller(ns.client(), ns.name());
            let spec = json!({"storage": {"metadataSize": "1Gi"}, "identity": {"jwt": {"secretRef": {"name": "jwt", "key": "k"}}}});
            create_server(ns, &server(CR, spec)?).await?;
            let servers: Api<DittoServer> = ns.api();
            let ds = wait_for_condition(&servers, CR, conditions::CONFIG_READY, "False", Duration::from_secs(30)).await?;
            let st = ds.status.unwrap();
            let cond = st.conditions.iter().find(|c| c.type_ == conditions::CONFIG_READY).unwrap();
            assert_eq!(cond.reason, conditions::reasons::JWT_SECRET_TOO_SHORT);
            assert!(cond.message.contains("Secret jwt (key k) has 31 bytes") && cond.message.contains("32"), "{cond:?}");
            wait_until("the JWTSecretTooShort Event", WAIT, async || {
                let (notes, _) = warnings(ns, reasons::JWT_SECRET_TOO_SHORT).await?;
                anyhow::ensure!(notes == [cond.message.clone()], "{notes:?}");
                Ok(())
            })
            .await?;

            // A key of the right length clears it.
            let long = json!({"stringData": {"k": "x".repeat(constants::MIN_JWT_SECRET_LEN)}});
            ns.api::<Secret>().patch("jwt", &kube::api::PatchParams::default(), &kube::api::Patch::Merge(&long)).await?;
            // The Secret is not watched: a spec change makes the controller look again.
            let touch = json!({"spec": {"adapterDiscovery": {"pollingInterval": "10s"}}});
            servers.patch(CR, &kube::api::PatchParams::default(), &kube::api::Patch::Merge(&touch)).await?;
            wait_for_condition(&servers, CR, conditions::CONFIG_READY, "True", Duration::from_secs(30)).await?;
            running.stop().await
        })
        .await
}
