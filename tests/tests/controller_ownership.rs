//! What is not the server's stays untouched, against the real control plane: a child's name taken by
//! someone else's object blocks the server with `Ready=False/ChildNotOwned` and a Warning, and that object
//! is never written; a failing child never keeps a stopped adapter exposed (closing runs anyway); generated
//! Secrets are created once, never force-applied, even with two controllers racing on a new server.

use std::time::Duration;

use k8s_openapi::api::core::v1::{Secret, Service};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::rbac::v1::Role;
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

use dittofs_api::DittoServer;
use dittofs_api::conditions::{self, events as reasons};
use dittofs_api::constants::CONTROLLER_FIELD_MANAGER;
use dittofs_tests::controller_world::adapters::*;
use dittofs_tests::controller_world::*;
use dittofs_tests::kube_env::{ControlPlane, TempNamespace, wait_until};
use dittofs_tests::objects::*;

const WAIT: Duration = Duration::from_secs(20);
/// Long enough for a few rounds of the controller's backoff (1 s doubling).
const RETRY: Duration = Duration::from_secs(60);

fn spec() -> Value {
    json!({"storage": {"metadataSize": "1Gi"}})
}

/// Ready's message if it is False with `reason`.
async fn blocked(servers: &Api<DittoServer>, cr: &str, reason: &str) -> anyhow::Result<String> {
    let ds = servers.get(cr).await?;
    let conds = ds.status.map(|s| s.conditions).unwrap_or_default();
    let ready = conds.iter().find(|c| c.type_ == conditions::READY);
    anyhow::ensure!(ready.is_some_and(|c| c.status == "False" && c.reason == reason), "{ready:?}");
    Ok(ready.map(|c| c.message.clone()).unwrap_or_default())
}

/// Waits until Ready is False with `reason`; returns its message.
async fn wait_ready_false(servers: &Api<DittoServer>, cr: &str, reason: &str) -> anyhow::Result<String> {
    wait_until(&format!("{cr}: Ready=False/{reason}"), WAIT, async || blocked(servers, cr, reason).await).await
}

async fn warning_notes(ns: &TempNamespace<'_>, cr: &str, reason: &str) -> anyhow::Result<Vec<String>> {
    let events = wait_reason(ns.client(), ns.name(), cr, reason).await?;
    Ok(events.into_iter().filter_map(|e| e.note).collect())
}

#[tokio::test]
#[ignore = "real-server tier: needs the Kubernetes test binaries; run `make test`"]
async fn names_taken_by_someone_else_are_never_written_and_block_the_server() -> anyhow::Result<()> {
    ControlPlane::shared()
        .with_temp_ns("ctrl-foreign", async |ns| {
            install_crd(ns.client()).await?;
            let running = start_controller(ns.client(), ns.name());
            // Someone's Service that a server named `fs` would call `fs-api`, and someone's Secret that a
            // server named `gs` would call `gs-jwt-secret`.
            let services: Api<Service> = ns.api();
            let theirs = json!({"metadata": {"name": "fs-api"},
                "spec": {"selector": {"app": "payments"}, "ports": [{"port": 80}]}});
            services.create(&PostParams::default(), &serde_json::from_value(theirs)?).await?;
            let secrets: Api<Secret> = ns.api();
            let secret = json!({"metadata": {"name": "gs-jwt-secret"}, "stringData": {"jwt-secret": "theirs"}});
            secrets.create(&PostParams::default(), &serde_json::from_value(secret)?).await?;

            let servers: Api<DittoServer> = ns.api();
            create_server(ns, &server("fs", spec())?).await?;
            create_server(ns, &server("gs", spec())?).await?;
            let message = wait_ready_false(&servers, "fs", conditions::reasons::CHILD_NOT_OWNED).await?;
            assert!(
                message.contains("Service fs-api already exists") && message.contains("owned by nobody"),
                "{message}"
            );
            let message = wait_ready_false(&servers, "gs", conditions::reasons::CHILD_NOT_OWNED).await?;
            assert!(message.contains("Secret gs-jwt-secret"), "{message}");

            // Closing first: the baseline policy exists although the reconcile stops.
            ns.api::<NetworkPolicy>().get("fs-baseline").await?;
            running.settle(Duration::from_secs(3)).await?;
            let svc = services.get("fs-api").await?;
            assert_eq!(svc.spec.unwrap().selector.unwrap()["app"], "payments", "their selector is kept");
            assert!(svc.metadata.owner_references.is_none(), "never adopted");
            let data = secrets.get("gs-jwt-secret").await?.data.unwrap();
            assert_eq!(data["jwt-secret"].0, b"theirs", "their value is kept");
            assert!(ns.api::<Secret>().get_opt("fs-jwt-secret").await?.is_some(), "fs's own Secrets were made");
            let notes = warning_notes(ns, "fs", reasons::CHILD_NOT_OWNED).await?;
            assert_eq!(notes.len(), 1, "one Warning, not one per retry: {notes:?}");

            // Once their Service is gone, the server gets its own.
            services.delete("fs-api", &Default::default()).await?;
            let fs = wait_for_condition(&servers, "fs", conditions::CONFIG_READY, "True", RETRY).await?;
            let ours = services.get("fs-api").await?;
            assert_eq!(ours.owner_references()[0].uid, fs.uid().unwrap());
            running.stop().await
        })
        .await
}

#[tokio::test]
#[ignore = "real-server tier: needs the Kubernetes test binaries; run `make test`"]
async fn a_failing_child_never_keeps_a_stopped_adapter_exposed() -> anyhow::Result<()> {
    ControlPlane::shared()
        .with_temp_ns("ctrl-close-first", async |ns| {
            let (running, servers) = started(ns, "fs", spec()).await?;
            report(&servers, "fs", "fs-0", vec![serving("nfs", 12049)]).await?;
            wait_view(ns, "fs", &expected("fs", &[("nfs", 12049)], true), WAIT).await?;

            // The agent Role stops being the server's (someone took it over): every reconcile now fails there.
            // A reconcile already under way may re-apply the Role (owner references included) just after
            // the patch: orphan it again until it stays orphaned.
            let roles: Api<Role> = ns.api();
            let orphan = json!({"metadata": {"ownerReferences": null}});
            wait_until("fs: the agent Role orphaned and Ready=False/ChildNotOwned", RETRY, async || {
                if !roles.get("fs-agent").await?.owner_references().is_empty() {
                    roles.patch("fs-agent", &PatchParams::default(), &Patch::Merge(&orphan)).await?;
                }
                blocked(&servers, "fs", conditions::reasons::CHILD_NOT_OWNED).await
            })
            .await?;

            // NFS stops: its Service, policy and container port still go.
            report(&servers, "fs", "fs-0", vec![stopped("nfs", 12049)]).await?;
            wait_view(ns, "fs", &expected("fs", &[], true), WAIT).await?;
            // Nothing new opens while the server is blocked.
            report(&servers, "fs", "fs-0", vec![serving("smb", 12445)]).await?;
            running.settle(Duration::from_secs(3)).await?;
            assert_eq!(view(ns, "fs").await?, expected("fs", &[], true), "no opening while blocked");
            running.stop().await
        })
        .await
}

/// The controller's managers and operations in a Secret's managedFields.
fn writes(secret: &Secret) -> Vec<(String, String)> {
    let fields = secret.metadata.managed_fields.iter().flatten();
    fields.map(|m| (m.manager.clone().unwrap_or_default(), m.operation.clone().unwrap_or_default())).collect()
}

#[tokio::test]
#[ignore = "real-server tier: needs the Kubernetes test binaries; run `make test`"]
async fn generated_secrets_are_created_once_even_by_two_racing_controllers() -> anyhow::Result<()> {
    ControlPlane::shared()
        .with_temp_ns("ctrl-create-only", async |ns| {
            install_crd(ns.client()).await?;
            // Two controllers without leader election: the worst case of a hand-over.
            let first = start_controller(ns.client(), ns.name());
            let second = start_controller(ns.client(), ns.name());
            create_server(ns, &server("fs", spec())?).await?;
            let servers: Api<DittoServer> = ns.api();
            wait_for_condition(&servers, "fs", conditions::CONFIG_READY, "True", RETRY).await?;
            first.settle(Duration::from_secs(2)).await?;
            let secrets: Api<Secret> = ns.api();
            let names = ["fs-jwt-secret", "fs-admin-bootstrap-credentials", "fs-operator-credentials"];
            let mut before = Vec::new();
            for name in names {
                let secret = secrets.get(name).await?;
                let ours: Vec<_> = writes(&secret).into_iter().filter(|(m, _)| m == CONTROLLER_FIELD_MANAGER).collect();
                assert_eq!(
                    ours,
                    [(CONTROLLER_FIELD_MANAGER.to_owned(), "Update".to_owned())],
                    "{name}: created, never applied"
                );
                before.push((secret.resource_version(), secret.data));
            }
            second.stop().await?;
            // A reconcile of the server (an annotation triggers one) changes none of them.
            let touch = json!({"metadata": {"annotations": {"test/touch": "1"}}});
            let done = first.controller.metrics().reconcile_count("ok");
            servers.patch("fs", &PatchParams::default(), &Patch::Merge(&touch)).await?;
            first.wait_reconciles("the touch", Some("ok"), done).await?;
            for (name, (rv, data)) in names.iter().zip(&before) {
                let secret = secrets.get(name).await?;
                assert_eq!((&secret.resource_version(), &secret.data), (rv, data), "{name} unchanged");
            }

            // A value someone removed is filled in at the next reconcile.
            let remove = json!({"data": {"password": null}});
            secrets.patch("fs-operator-credentials", &PatchParams::default(), &Patch::Merge(&remove)).await?;
            let touch = json!({"metadata": {"annotations": {"test/touch": "2"}}});
            servers.patch("fs", &PatchParams::default(), &Patch::Merge(&touch)).await?;
            wait_until("the operator password filled in again", WAIT, async || {
                let data = secrets.get("fs-operator-credentials").await?.data.unwrap_or_default();
                anyhow::ensure!(data.get("password").is_some_and(|p| p.0.len() == 24), "{:?}", data.keys());
                Ok(())
            })
            .await?;
            first.stop().await
        })
        .await
}
