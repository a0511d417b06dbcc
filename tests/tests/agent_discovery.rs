//! The agent's discovery against DittoFS (emulator, or the real server with `DITTOFS_BIN`) and a real
//! apiserver, the agent acting with its own ServiceAccount bound to the controller's per-instance Role:
//! toggles reach the status within ~1.5 s through the fast path, port edits within one polling interval,
//! a changed `pollingInterval` applies without restart, and a quiet minute makes no status write.

mod agent_common;

use std::time::Duration;

use agent_common::{POD, Rig, SERVER, adapter};
use dittofs_agent::{dittofs::Endpoint, metrics::WriteResult};
use dittofs_api::constants::agent_field_manager;
use dittofs_tests::{dittofs::Options, kube_env::ControlPlane};
use serde_json::json;

/// The issue asks for ~1.5 s; the fast path runs every second, so 1 s + a poll + a write is the worst case.
const TOGGLE_BUDGET: Duration = Duration::from_millis(2_500);

#[tokio::test]
#[ignore = "real-server tier: needs the Kubernetes test binaries and DittoFS; run `make test`"]
async fn adapter_toggles_reach_the_status_within_a_second_or_so() -> anyhow::Result<()> {
    ControlPlane::shared()
        .with_temp_ns("agent-toggle", async |ns| {
            let mut rig = Rig::new(ns, Options::default(), "30s").await?;
            rig.start_agent(rig.config());
            let entry = rig.wait_in_sync(Duration::from_secs(20)).await?;
            let smb_port = rig.fs.adapter_port("smb").expect("harness moved smb");
            let smb = adapter(&entry, "smb").unwrap();
            assert_eq!((smb.port, smb.enabled, smb.running), (i32::from(smb_port), true, true));
            assert!(smb.is_serving());
            assert_eq!(entry.observed_generation, Some(1));
            assert!(entry.auth.as_ref().unwrap().authenticated);
            assert!(entry.last_poll_time.is_some());

            // The server-side apply is the agent's own: its field manager owns the entry.
            let ds = rig.servers.get(SERVER).await?;
            let managers: Vec<_> =
                ds.metadata.managed_fields.unwrap_or_default().into_iter().filter_map(|m| m.manager).collect();
            assert!(managers.contains(&agent_field_manager(POD)), "{managers:?}");

            let mut latencies = Vec::new();
            for round in 0..3 {
                rig.put_adapter("smb", json!({ "enabled": false })).await?;
                let (_, took) = rig
                    .wait_entry("smb to be reported disabled", Duration::from_secs(10), |e| {
                        let smb = adapter(e, "smb").ok_or_else(|| anyhow::anyhow!("no smb"))?;
                        anyhow::ensure!(!smb.enabled && !smb.running && !smb.is_serving(), "smb still on");
                        Ok(())
                    })
                    .await?;
                latencies.push(took);
                rig.put_adapter("smb", json!({ "enabled": true })).await?;
                let (_, took) = rig
                    .wait_entry("smb to be reported enabled", Duration::from_secs(10), |e| {
                        let smb = adapter(e, "smb").ok_or_else(|| anyhow::anyhow!("no smb"))?;
                        anyhow::ensure!(smb.enabled && smb.running, "smb still off");
                        // Right after the toggle DittoFS's health report is stale; the agent reports no
                        // health then, and enabled+running decide.
                        anyhow::ensure!(smb.is_serving(), "not serving: {smb:?}");
                        Ok(())
                    })
                    .await?;
                latencies.push(took);
                eprintln!("round {round}: toggle latencies so far {latencies:?}");
            }
            let worst = latencies.iter().max().copied().unwrap_or_default();
            eprintln!("MEASURED toggle → status latency: {latencies:?} (worst {worst:?})");
            assert!(worst <= TOGGLE_BUDGET, "a toggle took {worst:?}");

            // Once DittoFS re-checks (its cache lives 5 s), the real health arrives without waiting a full interval.
            rig.wait_entry("smb's fresh health", Duration::from_secs(9), |e| {
                let smb = adapter(e, "smb").ok_or_else(|| anyhow::anyhow!("no smb"))?;
                anyhow::ensure!(smb.health.as_deref() == Some("healthy"), "health {:?}", smb.health);
                Ok(())
            })
            .await?;
            Ok(())
        })
        .await
}

#[tokio::test]
#[ignore = "real-server tier: needs the Kubernetes test binaries and DittoFS; run `make test`"]
async fn port_edits_follow_the_polling_interval_which_changes_without_restart() -> anyhow::Result<()> {
    ControlPlane::shared()
        .with_temp_ns("agent-interval", async |ns| {
            let mut rig = Rig::new(ns, Options::default(), "30s").await?;
            rig.start_agent(rig.config());
            rig.wait_in_sync(Duration::from_secs(20)).await?;

            // A port edit leaves the running set alone, so only a full poll sees it. With 30s it is not
            // seen for a while…
            let new_port = std::net::TcpListener::bind("0.0.0.0:0")?.local_addr()?.port();
            rig.put_adapter("nfs", json!({ "port": new_port })).await?;
            let early = rig
                .wait_entry("the port edit (should not be seen yet)", Duration::from_secs(3), |e| {
                    let nfs = adapter(e, "nfs").ok_or_else(|| anyhow::anyhow!("no nfs"))?;
                    anyhow::ensure!(nfs.port == i32::from(new_port), "old port");
                    Ok(())
                })
                .await;
            // (unless a 30 s poll happened to fall in those 3 s; then the rest of the test still holds)
            eprintln!("port edit seen within 3s at 30s interval: {}", early.is_ok());

            // …then the interval drops to 2s: it takes effect at once, without restart.
            rig.set_interval("2s").await?;
            let (_, took) = rig
                .wait_entry("the port edit with a 2s interval", Duration::from_secs(5), |e| {
                    let nfs = adapter(e, "nfs").ok_or_else(|| anyhow::anyhow!("no nfs"))?;
                    anyhow::ensure!(nfs.port == i32::from(new_port), "old port {}", nfs.port);
                    anyhow::ensure!(e.observed_generation == Some(2), "generation {:?}", e.observed_generation);
                    Ok(())
                })
                .await?;
            eprintln!("MEASURED port edit seen {took:?} after the interval became 2s");

            // Lists now come every ~2 s.
            let lists = || rig.metrics().requests(Endpoint::ListAdapters, "ok");
            let before = lists();
            tokio::time::sleep(Duration::from_secs(10)).await;
            let polled = lists() - before;
            eprintln!("MEASURED {polled} lists in 10s at a 2s interval");
            assert!((4..=7).contains(&polled), "{polled} lists in 10 s");

            // A port edit at 2s is seen within one interval (+ the poll and the write).
            let port2 = std::net::TcpListener::bind("0.0.0.0:0")?.local_addr()?.port();
            rig.put_adapter("nfs", json!({ "port": port2 })).await?;
            let (_, took) = rig
                .wait_entry("the second port edit", Duration::from_secs(4), |e| {
                    let nfs = adapter(e, "nfs").ok_or_else(|| anyhow::anyhow!("no nfs"))?;
                    anyhow::ensure!(nfs.port == i32::from(port2), "old port {}", nfs.port);
                    Ok(())
                })
                .await?;
            eprintln!("MEASURED port edit → status {took:?} at a 2s interval");
            rig.assert_agent_running();
            Ok(())
        })
        .await
}

#[tokio::test]
#[ignore = "real-server tier: needs the Kubernetes test binaries and DittoFS; run `make test`"]
async fn a_quiet_minute_makes_no_status_write_and_few_info_lines() -> anyhow::Result<()> {
    ControlPlane::shared()
        .with_temp_ns("agent-quiet", async |ns| {
            let mut rig = Rig::new(ns, Options::default(), "30s").await?;
            rig.start_agent(rig.config());
            rig.wait_in_sync(Duration::from_secs(20)).await?;
            // Let the health reports settle (a recheck follows the start within 5 s).
            rig.wait_entry("healthy adapters", Duration::from_secs(10), |e| {
                anyhow::ensure!(e.adapters.iter().all(|a| a.health.as_deref() == Some("healthy")), "not settled");
                Ok(())
            })
            .await?;
            tokio::time::sleep(Duration::from_secs(6)).await;

            let rv_before = rig.servers.get(SERVER).await?.metadata.resource_version;
            let writes_before = rig.metrics().status_writes(WriteResult::Done);
            let logged_before = rig.fs.info_requests_logged();
            let counted_before = rig.metrics().info_requests();
            tokio::time::sleep(Duration::from_secs(60)).await;
            let writes = rig.metrics().status_writes(WriteResult::Done) - writes_before;
            let logged = (rig.fs.info_requests_logged() - logged_before) as u64;
            let counted = rig.metrics().info_requests() - counted_before;
            let skipped = rig.metrics().status_writes(WriteResult::Skipped);
            let rv_after = rig.servers.get(SERVER).await?.metadata.resource_version;
            eprintln!(
                "MEASURED quiet minute: {writes} status writes, {logged} INFO lines in DittoFS's log \
                 ({counted} counted by the agent), {skipped} writes skipped in total"
            );
            assert_eq!(writes, 0, "no status write in a quiet minute");
            assert_eq!(rv_before, rv_after, "the DittoServer was not written at all");
            assert_eq!(logged, counted, "the agent counts exactly the requests DittoFS logs at INFO");
            assert!(logged <= 3, "{logged} INFO lines: one list per 30 s (+ at most one refresh)");
            Ok(())
        })
        .await
}
