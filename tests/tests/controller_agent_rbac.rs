//! The agent's ServiceAccount token, exactly as a pod gets it: it can read and watch its own DittoServer,
//! patch that server's status (and the controller acts on the report), read and patch its credentials
//! Secret, create events.k8s.io Events in its namespace — and nothing else: no full update of that Secret,
//! no core Events, no reading, patching or deleting Events.

use std::time::Duration;

use k8s_openapi::api::core::v1::{Event as CoreEvent, ObjectReference, Secret};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{Api, ListParams, ObjectMeta, Patch, PatchParams, PostParams};
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
        let secrets: Api<Secret> = Api::namespaced(client.clone(), ns.name());
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
        // Allowed: its credentials Secret, read and patched (the agent's own keys, as a merge patch).
        let creds = secrets.get("a-operator-credentials").await?;
        assert!(creds.data.as_ref().unwrap().contains_key("password"));
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
        // Not even a full update of its own Secret: a replace could drop the controller's keys.
        let fresh = secrets.get("a-operator-credentials").await?;
        expect_forbidden(
            "update its credentials",
            secrets.replace("a-operator-credentials", &PostParams::default(), &fresh).await,
        );
        // Events: create in events.k8s.io (the recorder's group), and nothing more.
        let about = ObjectReference {
            api_version: Some("dittofs.dittofs.com/v1alpha1".into()),
            kind: Some("DittoServer".into()),
            name: Some("a".into()),
            namespace: Some(ns.name().into()),
            ..Default::default()
        };
        let event = Event {
            metadata: ObjectMeta { generate_name: Some("a-agent-".into()), ..Default::default() },
            event_time: Some(MicroTime(jiff::Timestamp::now())),
            reporting_controller: Some("dittofs.com/agent".into()),
            reporting_instance: Some("a-0".into()),
            action: Some("Poll".into()),
            reason: Some("Test".into()),
            type_: Some("Normal".into()),
            regarding: Some(about.clone()),
            ..Default::default()
        };
        let events: Api<Event> = Api::namespaced(client.clone(), ns.name());
        let created = events.create(&PostParams::default(), &event).await?;
        let name = created.metadata.name.clone().unwrap_or_default();
        expect_forbidden(
            "patch an Event (no series)",
            events.patch(&name, &PatchParams::default(), &Patch::Merge(json!({"note": "x"}))).await,
        );
        expect_forbidden("read an Event", events.get(&name).await);
        expect_forbidden("list Events", events.list(&ListParams::default()).await);
        expect_forbidden("delete an Event", events.delete(&name, &Default::default()).await);
        let elsewhere: Api<Event> = Api::namespaced(client.clone(), "default");
        expect_forbidden(
            "create an Event in another namespace",
            elsewhere.create(&PostParams::default(), &event).await,
        );
        let core_event = CoreEvent {
            metadata: ObjectMeta { generate_name: Some("a-agent-".into()), ..Default::default() },
            involved_object: about,
            reason: Some("Test".into()),
            type_: Some("Normal".into()),
            ..Default::default()
        };
        let core_events: Api<CoreEvent> = Api::namespaced(client, ns.name());
        expect_forbidden("create a core Event", core_events.create(&PostParams::default(), &core_event).await);

        // A failed login reported by the agent turns Authenticated False.
        servers.patch_status("a", &manager, &Patch::Apply(agent_report("a-0", false))).await?;
        wait_for_condition(&admin_servers, "a", conditions::AUTHENTICATED, "False", Duration::from_secs(15)).await?;
        running.stop().await
    })
    .await
}
