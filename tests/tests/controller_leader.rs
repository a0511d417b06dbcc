//! Two controller replicas against one apiserver: only the Lease holder reconciles and writes; a killed
//! leader is replaced within the lease time, a stopped one (graceful, Lease released) at once.

use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;

use dittofs_api::{DittoServer, conditions};
use dittofs_tests::controller_world::*;
use dittofs_tests::kube_env::{ControlPlane, wait_until};
use dittofs_tests::objects::*;

async fn config_contains(cms: &Api<ConfigMap>, text: &str) -> anyhow::Result<()> {
    let cm = cms.get("fs-config").await?;
    let config = cm.data.unwrap_or_default().remove("config.yaml").unwrap_or_default();
    anyhow::ensure!(config.contains(text), "config.yaml has no {text}");
    Ok(())
}

#[tokio::test]
#[ignore = "real-server tier: needs the Kubernetes test binaries; run `make test`"]
async fn only_the_leader_writes_and_a_dead_leader_is_replaced_within_the_lease_time() -> anyhow::Result<()> {
    let cp = ControlPlane::shared();
    cp.with_temp_ns("ctrl-leader", async |ns| {
        install_crd(ns.client()).await?;
        let a = start_with(ns.client(), elected(ns.name(), "ctrl-a"));
        wait_until("ctrl-a to lead", Duration::from_secs(10), async || {
            anyhow::ensure!(a.controller.is_leader(), "not yet");
            Ok(())
        })
        .await?;
        let b = start_with(ns.client(), elected(ns.name(), "ctrl-b"));
        wait_until("ctrl-b to be ready as a standby", Duration::from_secs(10), async || {
            anyhow::ensure!(b.controller.health().is_ready(), "not yet");
            Ok(())
        })
        .await?;

        create_server(ns, &server("fs", json!({"storage": {"metadataSize": "1Gi"}}))?).await?;
        let servers: Api<DittoServer> = ns.api();
        wait_for_condition(&servers, "fs", conditions::CONFIG_READY, "True", Duration::from_secs(30)).await?;
        // Two renewals by ctrl-a: ctrl-b, retrying at the same period, has found the Lease held meanwhile.
        wait_renewals(ns, 2).await?;
        assert!(a.controller.metrics().reconcile_count("ok") > 0);
        assert!(!b.controller.is_leader());
        assert_eq!(b.controller.metrics().total_reconciles(), 0, "the standby reconciled");
        assert_eq!(
            b.controller.metrics().write_count("StatefulSet") + b.controller.metrics().write_count("DittoServerStatus"),
            0
        );
        let events = wait_events(ns.client(), ns.name(), "fs", "any Event", |_| true).await?;
        for e in &events {
            assert_eq!(e.reporting_instance.as_deref(), Some("ctrl-a"), "{e:?}");
        }

        // Kill the leader (no graceful step: the Lease stays held until it expires).
        a.task.abort();
        let killed = Instant::now();
        servers
            .patch("fs", &PatchParams::default(), &Patch::Merge(json!({"spec": {"logging": {"level": "DEBUG"}}})))
            .await?;
        let cms: Api<ConfigMap> = ns.api();
        wait_until("ctrl-b to take over and apply the edit", LEASE_DURATION * 3, async || {
            config_contains(&cms, "DEBUG").await
        })
        .await?;
        let handover = killed.elapsed();
        eprintln!("handover after a kill: {handover:?} (lease {LEASE_DURATION:?}, retry {RENEW_EVERY:?})");
        assert!(b.controller.is_leader());
        assert!(handover <= LEASE_DURATION + RENEW_EVERY * 4, "handover took {handover:?}");
        let lease = Api::<Lease>::namespaced(ns.client(), ns.name()).get(LEASE).await?.spec.unwrap();
        assert_eq!(lease.holder_identity.as_deref(), Some("ctrl-b"));
        assert_eq!(lease.lease_transitions, Some(1));

        // A graceful stop releases the Lease: a new standby takes over without waiting for expiry.
        let c = start_with(ns.client(), elected(ns.name(), "ctrl-c"));
        wait_until("ctrl-c to be ready as a standby", Duration::from_secs(10), async || {
            anyhow::ensure!(c.controller.health().is_ready(), "not yet");
            Ok(())
        })
        .await?;
        let stopped = Instant::now();
        b.stop().await?;
        servers
            .patch("fs", &PatchParams::default(), &Patch::Merge(json!({"spec": {"logging": {"level": "WARN"}}})))
            .await?;
        wait_until("ctrl-c to take over and apply the edit", LEASE_DURATION * 3, async || {
            config_contains(&cms, "WARN").await
        })
        .await?;
        let graceful = stopped.elapsed();
        eprintln!("handover after a graceful stop: {graceful:?}");
        assert!(graceful < LEASE_DURATION, "a released Lease was waited on: {graceful:?}");
        assert!(c.controller.is_leader());
        c.stop().await
    })
    .await
}
