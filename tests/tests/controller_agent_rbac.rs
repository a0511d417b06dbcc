//! The agent's ServiceAccount token, exactly as a pod gets it: it can read and watch its own DittoServer,
//! patch that server's status (and the controller acts on the report), use its credentials Secret — and
//! nothing else.

use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, ListParams, Patch, PatchParams};
use serde_json::json;

use dittofs_api::constants::agent_field_manager;
use dittofs_api::{DittoServer, conditions};
use dittofs_tests::controller_world::*;
use dittofs_tests::kube_env::{ControlPlane, wait_until};
use dittofs_tests::objects::*;

fn expect_forbidden<T: std::fmt::Debug>(what: &str, result: Result<T, kube::Error>) {
    match result {
        Err(kube::Error::Api(s)) => assert_eq!(s.code, 403, "{what}: {s:?}"),
        other => panic!("{what} should be forbidden, got {other:?}"),
    }
}

fn agent_report(pod: &str, authenticated: bool) -> serde_json::Value {
    let reason = if authenticated { "AuthenticationSucceeded" } else { "AuthenticationFailed" };
    let entry = json!({"podName": pod, "auth": {"authenticated": authenticated, "reason": reason}});
    apply_body::<DittoServer>(pod.trim_end_matches("-0"), json!({"status": {"agents": [entry]}}))
}

#[tokio::test]
#[ignore = "real-server tier: needs the Kubernetes test binaries; run `make test`"]
async fn the_agent_token_reaches_its_own_server_only() -> anyhow::Result<()> {
    let cp = ControlPlane::shared();
    cp.with_temp_ns("ctrl-agent-rbac", async |ns| {
        install_crd(ns.client()).await?;
        let running = start_controller(ns.client(), ns.name());
        for name in ["a", "b"] {
            create_server(ns, &server(name, json!({"storage": {"metadataSize": "1Gi"}}))?).await?;
        }
        let admin_servers: Api<DittoServer> = ns.api();
        for name in ["a", "b"] {
            wait_for_condition(&admin_servers, name, conditions::CONFIG_READY, "True", Duration::from_secs(30)).await?;
        }
        let client = cp.service_account_client(ns.name(), "a-agent").await?;
        let servers: Api<DittoServer> = Api::namespaced(client.clone(), ns.name());
        let secrets: Api<Secret> = Api::namespaced(client, ns.name());
        let manager = PatchParams::apply(&agent_field_manager("a-0"));

        // Allowed: status of its own server (the RBAC authorizer may need a moment for the new binding).
        wait_until("the agent's status patch to be allowed", Duration::from_secs(15), async || {
            Ok(servers.patch_status("a", &manager, &Patch::Apply(agent_report("a-0", true))).await?)
        })
        .await?;
        // The controller acts on the report (status changes trigger reconciles): Authenticated=True.
        wait_for_condition(&admin_servers, "a", conditions::AUTHENTICATED, "True", Duration::from_secs(15)).await?;
        let a = admin_servers.get("a").await?;
        assert_eq!(a.status.unwrap().agents.len(), 1, "the controller's status apply keeps the agent's entry");

        // Allowed: read and watch its own server (watch = list + watch with the name field selector).
        servers.get("a").await?;
        let own = ListParams::default().fields("metadata.name=a");
        assert_eq!(servers.list(&own).await?.items.len(), 1);
        // Allowed: its credentials Secret, read and updated.
        let creds = secrets.get("a-operator-credentials").await?;
        assert!(creds.data.unwrap().contains_key("password"));
        secrets
            .patch(
                "a-operator-credentials",
                &PatchParams::default(),
                &Patch::Merge(json!({"stringData": {"access-token": "t"}})),
            )
            .await?;

        // Denied: everything else.
        expect_forbidden(
            "status of another server",
            servers
                .patch_status(
                    "b",
                    &PatchParams::apply(&agent_field_manager("b-0")),
                    &Patch::Apply(agent_report("b-0", true)),
                )
                .await,
        );
        expect_forbidden("get another server", servers.get("b").await);
        expect_forbidden("list every server", servers.list(&ListParams::default()).await);
        expect_forbidden(
            "spec of its own server",
            servers.patch("a", &PatchParams::default(), &Patch::Merge(json!({"spec": {"replicas": 0}}))).await,
        );
        expect_forbidden("another server's credentials", secrets.get("b-operator-credentials").await);
        expect_forbidden("the JWT signing key", secrets.get("a-jwt-secret").await);
        expect_forbidden("the admin bootstrap password", secrets.get("a-admin-bootstrap-credentials").await);
        expect_forbidden("list Secrets", secrets.list(&ListParams::default()).await);
        expect_forbidden("delete its credentials", secrets.delete("a-operator-credentials", &Default::default()).await);

        // A failed login reported by the agent turns Authenticated False.
        servers.patch_status("a", &manager, &Patch::Apply(agent_report("a-0", false))).await?;
        wait_for_condition(&admin_servers, "a", conditions::AUTHENTICATED, "False", Duration::from_secs(15)).await?;
        running.stop().await
    })
    .await
}
