//! The agent's discovery against DittoFS (emulator, or the real server with `DITTOFS_BIN`) and a real
//! apiserver, the agent acting with its own ServiceAccount bound to the controller's per-instance Role:
//! toggles reach the status within ~1.5 s through the fast path, port edits within one polling interval,
//! a changed `pollingInterval` applies without restart, idle polls make no status write, and a quiet agent
//! still refreshes its poll time every third of `reportMaxAgeSeconds` (the controller's freshness limit).

use std::time::Duration;

use dittofs_agent::{
    Metrics,
    metrics::{PollKind, WriteResult},
    poller::HEALTH_PERIOD,
};
use dittofs_api::constants::{DEFAULT_FAST_PATH_INTERVAL, agent_field_manager};
use dittofs_tests::{
    agent_world::{POD, Rig, SERVER, adapter},
    dittofs::Options,
    kube_env::ControlPlane,
};
use kube::api::{Patch, PatchParams};
use serde_json::json;

fn fast_polls(m: &Metrics) -> u64 {
    m.polls(PollKind::Ready, "ok")
}

fn full_polls(m: &Metrics) -> u64 {
    m.polls(PollKind::Full, "ok")
}

/// Lists awaited to measure the polling rate, and idle lists awaited to show that idle polls write nothing.
const LISTS: u64 = 4;
const IDLE_LISTS: u64 = 3;

/// The issue asked for ~1.5 s when the fast path ran every second: a period + a poll + a write is the worst case,
/// and the period is a quarter of a second now.
const TOGGLE_BUDGET: Duration = Duration::from_millis(2_500);

#[tokio::test]
#[ignore = "real-server tier: needs the Kubernetes test binaries and DittoFS; run `make test`"]
async fn adapter_toggles_reach_the_status_within_a_second_or_so() -> anyhow::Result<()> {
    ControlPlane::shared()
        .with_temp_ns("agent-toggle", async |ns| {
            let (rig, entry) = Rig::in_sync(ns, Options::default(), "30s").await?;
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
                let took = rig
                    .wait_adapter("smb to be reported disabled", Duration::from_secs(10), "smb", |smb| {
                        anyhow::ensure!(!smb.enabled && !smb.running && !smb.is_serving(), "smb still on");
                        Ok(())
                    })
                    .await?;
                latencies.push(took);
                rig.put_adapter("smb", json!({ "enabled": true })).await?;
                let took = rig
                    .wait_adapter("smb to be reported enabled", Duration::from_secs(10), "smb", |smb| {
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
            rig.wait_adapter("smb's fresh health", Duration::from_secs(9), "smb", |smb| {
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
async fn port_edits_are_seen_at_the_next_sample_and_the_interval_changes_without_restart() -> anyhow::Result<()> {
    ControlPlane::shared()
        .with_temp_ns("agent-interval", async |ns| {
            let (rig, _) = Rig::in_sync(ns, Options::default(), "30s").await?;

            // A port edit leaves the running set alone and `/health/ready` shows no ports, but DittoFS closes
            // the adapter's old listener before it answers the PUT: the fast path sees that port stop
            // listening and lists at once, although the interval is 30s.
            let new_port = std::net::TcpListener::bind("0.0.0.0:0")?.local_addr()?.port();
            let full = full_polls(rig.metrics());
            rig.put_adapter("nfs", json!({ "port": new_port })).await?;
            let took = rig
                .wait_adapter("the port edit at a 30s interval", TOGGLE_BUDGET, "nfs", |nfs| {
                    anyhow::ensure!(nfs.port == i32::from(new_port), "old port {}", nfs.port);
                    Ok(())
                })
                .await?;
            assert!(full_polls(rig.metrics()) > full, "reported without a list after the edit");
            eprintln!("MEASURED port edit → status {took:?} at a 30s interval");

            // The interval drops to 2s: it takes effect at once, without restart.
            rig.set_interval("2s").await?;
            rig.wait_entry("the new generation", Duration::from_secs(5), |e| {
                anyhow::ensure!(e.observed_generation == Some(2), "generation {:?}", e.observed_generation);
                Ok(())
            })
            .await?;

            // Lists now come every ~2 s, each one INFO line in DittoFS's log. Between two of them the fast path
            // samples every 250 ms, but asks DittoFS (`/health/ready`) only once a second while the pod's
            // listeners stay as they are: about two requests per list.
            let (fast, full, logged) =
                (fast_polls(rig.metrics()), full_polls(rig.metrics()), rig.fs.info_requests_logged());
            rig.wait_count("four lists", full + LISTS, Duration::from_secs(12), full_polls).await?;
            let per_list = (fast_polls(rig.metrics()) - fast) as f64 / LISTS as f64;
            let lines = rig.fs.info_requests_logged() - logged;
            let period = HEALTH_PERIOD.max(DEFAULT_FAST_PATH_INTERVAL);
            let expected = Duration::from_secs(2).as_secs_f64() / period.as_secs_f64();
            eprintln!("MEASURED {per_list:.2} /health/ready requests per list at a 2s interval (expected {expected})");
            assert!((expected * 0.5..=expected * 1.3).contains(&per_list), "{per_list:.2} requests per list");
            assert!(lines as u64 >= LISTS, "{lines} INFO lines for {LISTS} lists");
            rig.assert_agent_running();
            Ok(())
        })
        .await
}

#[tokio::test]
#[ignore = "real-server tier: needs the Kubernetes test binaries and DittoFS; run `make test`"]
async fn idle_polls_make_no_status_write_and_one_info_line_each() -> anyhow::Result<()> {
    ControlPlane::shared()
        .with_temp_ns("agent-quiet", async |ns| {
            let (rig, _) = Rig::in_sync(ns, Options::default(), "2s").await?;
            rig.wait_steady().await?;

            let rv_before = rig.servers.get(SERVER).await?.metadata.resource_version;
            let writes_before = rig.metrics().status_writes(WriteResult::Done);
            let (full, fast) = (full_polls(rig.metrics()), fast_polls(rig.metrics()));
            let logged_before = rig.fs.info_requests_logged();
            let counted_before = rig.metrics().info_requests();
            // K idle cycles: K lists, each followed by a write the agent skips because nothing changed.
            let skipped = rig.metrics().status_writes(WriteResult::Skipped);
            rig.wait_count("idle lists", full + IDLE_LISTS, Duration::from_secs(20), full_polls).await?;
            let skipped_target = skipped + IDLE_LISTS;
            rig.wait_count("their skipped writes", skipped_target, Duration::from_secs(2), |m| {
                m.status_writes(WriteResult::Skipped)
            })
            .await?;
            let lists = full_polls(rig.metrics()) - full;
            let writes = rig.metrics().status_writes(WriteResult::Done) - writes_before;
            let logged = (rig.fs.info_requests_logged() - logged_before) as u64;
            let counted = rig.metrics().info_requests() - counted_before;
            let fast = fast_polls(rig.metrics()) - fast;
            let rv_after = rig.servers.get(SERVER).await?.metadata.resource_version;
            eprintln!(
                "MEASURED {lists} idle lists, {fast} fast-path polls: {writes} status writes, {logged} INFO lines in \
                 DittoFS's log ({counted} counted by the agent)"
            );
            assert_eq!(writes, 0, "no status write while idle");
            assert_eq!(rv_before, rv_after, "the DittoServer was not written at all");
            assert_eq!(logged, counted, "the agent counts exactly the requests DittoFS logs at INFO");
            assert_eq!(logged, lists, "one INFO line per list, none for the fast path ({fast} polls)");
            Ok(())
        })
        .await
}

#[tokio::test]
#[ignore = "real-server tier: needs the Kubernetes test binaries and DittoFS; run `make test`"]
async fn a_quiet_agent_still_refreshes_its_poll_time_for_the_controller() -> anyhow::Result<()> {
    ControlPlane::shared()
        .with_temp_ns("agent-heartbeat", async |ns| {
            let (rig, first) = Rig::in_sync(ns, Options::default(), "10m").await?;
            // The controller distrusts reports older than 30 s: the agent polls and rewrites every 10 s,
            // whatever the 10-minute polling interval says, although DittoFS changes nothing.
            let patch = json!({"spec": {"adapterServices": {"reportMaxAgeSeconds": 30}}});
            rig.servers.patch(SERVER, &PatchParams::default(), &Patch::Merge(&patch)).await?;
            let since = first.last_poll_time.clone().expect("polled").0;
            let flags = |e: &dittofs_api::crd::AgentStatus| -> Vec<(String, i32, bool, bool)> {
                e.adapters.iter().map(|a| (a.r#type.clone(), a.port, a.enabled, a.running)).collect()
            };
            for beat in 1..=2i64 {
                rig.wait_entry("a newer poll time", Duration::from_secs(30), |e| {
                    let polled = e.last_poll_time.as_ref().expect("polled").0;
                    anyhow::ensure!(polled.as_second() >= since.as_second() + 9 * beat, "last poll {polled}");
                    anyhow::ensure!(flags(e) == flags(&first), "the adapters changed");
                    Ok(())
                })
                .await?;
            }
            Ok(())
        })
        .await
}
