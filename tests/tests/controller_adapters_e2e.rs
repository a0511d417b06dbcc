//! End to end: the controller and the real agent (in-process, acting with the agent ServiceAccount's
//! token the controller's Role grants) against DittoFS (the emulator, or the real server with
//! `DITTOFS_BIN`) and the real control plane. Toggling adapters through the DittoFS admin API makes
//! their Services, NetworkPolicies and container ports appear and go within about a second (the
//! convergence is measured and printed); a port edit follows within a polling interval; DittoFS
//! stopped deletes nothing.

use std::time::Duration;

use kube::api::Api;
use serde_json::{Value, json};

use dittofs_agent::{AgentConfig, SecretString};
use dittofs_api::{DittoServer, names};
use dittofs_tests::agent_world::RunningAgent;
use dittofs_tests::controller_world::adapters::*;
use dittofs_tests::controller_world::*;
use dittofs_tests::dittofs::{ADMIN_PASSWORD, DittoFs, Options};
use dittofs_tests::kube_env::{ControlPlane, TempNamespace, wait_until};
use dittofs_tests::objects::*;

const CR: &str = "fs";
/// The agent's fast path runs every second; a toggle must reach Kubernetes well within this.
const TOGGLE_TIMEOUT: Duration = Duration::from_secs(5);

/// Controller, DittoFS and the agent of pod fs-0.
struct World {
    controller: Running,
    servers: Api<DittoServer>,
    fs: DittoFs,
    agent: RunningAgent,
}

impl World {
    async fn start(ns: &TempNamespace<'_>) -> anyhow::Result<World> {
        // A short polling interval so port edits (not seen by the fast path) are picked up quickly.
        let spec = json!({"storage": {"metadataSize": "1Gi"}, "adapterDiscovery": {"pollingInterval": "2s"}});
        let (controller, servers) = started(ns, CR, spec).await?;
        let fs = DittoFs::start(Options::default()).await?;
        // The agent acts with its ServiceAccount, bound by the controller's Role.
        let sa = names::agent_service_account(CR);
        let sa = service_account_client(ns.control_plane(), ns.name(), &sa, Reads::Server(CR)).await?;
        let config = AgentConfig::new("fs-0", ns.name(), CR, fs.url(), SecretString::new(ADMIN_PASSWORD));
        Ok(World { controller, servers, fs, agent: RunningAgent::start(config, sa) })
    }

    fn port(&self, kind: &str) -> i32 {
        i32::from(self.fs.adapter_port(kind).expect("the harness moved the adapter to a free port"))
    }

    async fn put(&self, kind: &str, body: Value) -> anyhow::Result<()> {
        let admin = self.fs.admin().await?;
        admin.put(&format!("/api/v1/adapters/{kind}"), &body).await?.expect_status(200)?;
        Ok(())
    }

    async fn stop(self) -> anyhow::Result<()> {
        self.agent.stop().await?;
        self.controller.stop().await
    }
}

#[tokio::test]
#[ignore = "real-server tier: needs the Kubernetes test binaries and DittoFS; run `make test`"]
async fn toggles_in_dittofs_reach_services_policies_and_ports_within_about_a_second() -> anyhow::Result<()> {
    ControlPlane::shared()
        .with_temp_ns("ctrl-adapters-e2e", async |ns| {
            let world = World::start(ns).await?;
            let (nfs, smb) = (world.port("nfs"), world.port("smb"));
            let both = expected(CR, &[("nfs", nfs), ("smb", smb)], true);
            wait_view(ns, CR, &both, Duration::from_secs(30)).await?;
            wait_adapters_ready(&world.servers, CR, "True", "AdaptersExposed").await?;

            let mut took = Vec::new();
            for _ in 0..3 {
                world.put("smb", json!({"enabled": false})).await?;
                took.push(wait_view(ns, CR, &expected(CR, &[("nfs", nfs)], true), TOGGLE_TIMEOUT).await?);
                world.put("smb", json!({"enabled": true})).await?;
                took.push(wait_view(ns, CR, &both, TOGGLE_TIMEOUT).await?);
            }
            world.put("nfs", json!({"enabled": false})).await?;
            took.push(wait_view(ns, CR, &expected(CR, &[("smb", smb)], true), TOGGLE_TIMEOUT).await?);
            world.put("nfs", json!({"enabled": true})).await?;
            took.push(wait_view(ns, CR, &both, TOGGLE_TIMEOUT).await?);
            took.sort();
            let median = took[took.len() / 2];
            eprintln!(
                "adapter toggle → Kubernetes ({}, {} toggles): median {median:?}, min {:?}, max {:?}",
                if world.fs.flavor.is_real() { "real DittoFS" } else { "emulator" },
                took.len(),
                took[0],
                took[took.len() - 1]
            );
            assert!(median < Duration::from_millis(2_500), "median {median:?} of {took:?}");

            // A port edit is not a change of the running set: the next poll (every 2 s) sees it.
            let new_port = i32::from(std::net::TcpListener::bind("0.0.0.0:0")?.local_addr()?.port());
            world.put("nfs", json!({"port": new_port})).await?;
            let moved =
                wait_view(ns, CR, &expected(CR, &[("nfs", new_port), ("smb", smb)], true), Duration::from_secs(10))
                    .await?;
            eprintln!("NFS port edit → Kubernetes: {moved:?}");
            // The status follows the objects (written after them, in the same reconcile).
            let summary = Some(format!("nfs:{new_port},smb:{smb}"));
            wait_until("the ADAPTERS column", Duration::from_secs(5), async || {
                let st = world.servers.get(CR).await?.status.unwrap_or_default();
                anyhow::ensure!(st.adapters_summary == summary, "{:?}", st.adapters_summary);
                Ok(())
            })
            .await?;
            world.stop().await
        })
        .await
}

#[tokio::test]
#[ignore = "real-server tier: needs the Kubernetes test binaries and DittoFS; run `make test`"]
async fn dittofs_down_deletes_nothing_and_its_return_changes_nothing() -> anyhow::Result<()> {
    ControlPlane::shared()
        .with_temp_ns("ctrl-adapters-e2e-down", async |ns| {
            let mut world = World::start(ns).await?;
            let both = expected(CR, &[("nfs", world.port("nfs")), ("smb", world.port("smb"))], true);
            wait_view(ns, CR, &both, Duration::from_secs(30)).await?;
            wait_adapters_ready(&world.servers, CR, "True", "AdaptersExposed").await?;
            world.controller.settle(Duration::from_millis(500)).await?;
            let objects: Vec<(&str, String)> = both
                .services
                .iter()
                .map(|(n, _)| ("Service", n.clone()))
                .chain(both.policies.iter().map(|(n, _)| ("NetworkPolicy", n.clone())))
                .collect();
            let versions = resource_versions(ns, &objects).await?;

            world.fs.stop().await?;
            let message = wait_adapters_ready(&world.servers, CR, "Unknown", "AgentUnreachable").await?;
            assert!(message.contains("fs-0"), "{message}");
            world.controller.settle(Duration::from_secs(1)).await?;
            assert_eq!(view(ns, CR).await?, both, "nothing deleted while DittoFS is down");
            assert_eq!(resource_versions(ns, &objects).await?, versions);

            world.fs.start_again().await?;
            wait_adapters_ready(&world.servers, CR, "True", "AdaptersExposed").await?;
            world.controller.settle(Duration::from_millis(500)).await?;
            assert_eq!(resource_versions(ns, &objects).await?, versions, "back: nothing to change");
            let events = events_for(ns.client(), ns.name(), CR).await?;
            let deleted = events.iter().filter(|e| e.reason.as_deref().is_some_and(|r| r.ends_with("Deleted"))).count();
            assert_eq!(deleted, 0);
            world.stop().await
        })
        .await
}
