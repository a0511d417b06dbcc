//! spec.snapshotPolicies on the real apiserver, applied by the agent to DittoFS (the emulator, or the real
//! `dfs` with `DITTOFS_BIN`) and read back through DittoFS's own API as admin: an entry is applied, a change is
//! applied once, a removal deletes it (and leaves a policy someone made by hand), a missing share is pending
//! until it exists, a policy DittoFS refuses is one Warning Event and a failed entry, and a DittoFS that
//! restarts is checked (and one with a fresh database given the policy again). Throughout, the
//! agent's own account stays `operator`: the policies go through short admin sessions only.

use std::time::Duration;

use dittofs_agent::{AgentConfig, Metrics, dittofs::Endpoint, events::REPORTER, metrics::PollKind};
use dittofs_api::{
    conditions::events as reasons,
    crd::{AgentSnapshotPolicyStatus, AgentStatus, SnapshotPolicyState},
    names,
};
use dittofs_tests::{
    agent_world::{Rig, SERVER},
    dittofs::Options,
    kube_env::{ControlPlane, wait_until},
    objects::events_for,
    shares::{create_share, policies, put_policy},
};
use kube::api::{Patch, PatchParams};
use serde_json::{Value, json};

/// Retries of a pending share every second, and a 1 s fast path: the tests wait for cycles, not for time.
fn quick(mut config: AgentConfig) -> AgentConfig {
    config.timings.snapshot_retry = Duration::from_secs(1);
    config.timings.ready_interval = Duration::from_secs(1);
    config
}

async fn set_policies(rig: &Rig, list: Value) -> anyhow::Result<i64> {
    let patch = json!({ "spec": { "snapshotPolicies": list } });
    let ds = rig.servers.patch(SERVER, &PatchParams::default(), &Patch::Merge(&patch)).await?;
    Ok(ds.metadata.generation.unwrap_or_default())
}

fn policy<'a>(entry: &'a AgentStatus, share: &str) -> anyhow::Result<&'a AgentSnapshotPolicyStatus> {
    entry.snapshot_policies.iter().find(|p| p.share == share).ok_or_else(|| anyhow::anyhow!("no entry for {share}"))
}

/// Waits until the entry reports `share` in `state` for generation `generation`; returns its report.
async fn wait_state(
    rig: &Rig,
    share: &str,
    state: SnapshotPolicyState,
    generation: i64,
) -> anyhow::Result<AgentSnapshotPolicyStatus> {
    let what = format!("{share} {state:?} at generation {generation}");
    let (p, _) = rig
        .wait_entry(&what, Duration::from_secs(30), |e| {
            let p = policy(e, share)?;
            anyhow::ensure!(p.state == state && p.observed_generation == Some(generation), "{p:?}");
            Ok(p.clone())
        })
        .await?;
    Ok(p)
}

async fn agent_events(rig: &Rig, reason: &str) -> anyhow::Result<Vec<String>> {
    let all = events_for(rig.admin.clone(), &rig.ns, SERVER).await?;
    Ok(all
        .into_iter()
        .filter(|e| e.reason.as_deref() == Some(reason) && e.reporting_controller.as_deref() == Some(REPORTER))
        .map(|e| e.note.unwrap_or_default())
        .collect())
}

async fn wait_events(rig: &Rig, reason: &str, n: usize) -> anyhow::Result<Vec<String>> {
    wait_until(&format!("{n} {reason} Event(s)"), Duration::from_secs(10), async || {
        let notes = agent_events(rig, reason).await?;
        anyhow::ensure!(notes.len() >= n, "{} so far", notes.len());
        Ok(notes)
    })
    .await
}

/// Lets the agent run `n` more full polls: time for anything it would wrongly repeat.
async fn polls(rig: &Rig, n: u64) -> anyhow::Result<()> {
    let ok = |m: &Metrics| m.polls(PollKind::Full, "ok");
    rig.wait_count("more full polls", ok(rig.metrics()) + n, Duration::from_secs(20), ok).await?;
    Ok(())
}

/// The agent's DittoFS account, as admin reads it, and the role of the token pair it mirrored.
async fn assert_operator(rig: &Rig) -> anyhow::Result<()> {
    let admin = rig.fs.admin().await?;
    let user = admin.get(&format!("/api/v1/users/{}", names::OPERATOR_USERNAME)).await?.expect_status(200)?.json()?;
    assert_eq!(user["role"], "operator", "{user}");
    let token = rig.secret_key(names::ACCESS_TOKEN_KEY).await?.expect("the agent mirrored its token");
    let me = rig.fs.api().with_token(Some(&token)).get("/api/v1/auth/me").await?.expect_status(200)?.json()?;
    assert_eq!((me["username"].as_str(), me["role"].as_str()), (Some(names::OPERATOR_USERNAME), Some("operator")));
    // And that token may not touch the policies itself.
    rig.fs.api().with_token(Some(&token)).get("/api/v1/snapshot-policies").await?.expect_status(403)?;
    Ok(())
}

#[tokio::test]
#[ignore = "real-server tier: needs the Kubernetes test binaries and DittoFS; run `make test`"]
async fn a_policy_is_applied_a_change_once_and_a_removal_deletes_only_it() -> anyhow::Result<()> {
    ControlPlane::shared()
        .with_temp_ns("agent-snap-apply", async |ns| {
            let mut rig = Rig::new(ns, Options::default(), "1s").await?;
            let admin = rig.fs.admin().await?;
            create_share(&admin, "/archive").await?;
            // A policy someone made by hand on a share the spec does not name: never the agent's to touch.
            create_share(&admin, "/human").await?;
            put_policy(&admin, "/human", &json!({"interval": "6h"})).await?;

            let generation =
                set_policies(&rig, json!([{"share": "archive", "interval": "24h", "keepLast": 3}])).await?;
            let metrics = rig.start_agent(quick(rig.config()));
            let applied = wait_state(&rig, "/archive", SnapshotPolicyState::Applied, generation).await?;
            assert!(applied.managed && applied.message.is_none(), "{applied:?}");
            let stored = &policies(&admin).await?["/archive"];
            assert_eq!((stored["interval"].as_str(), stored["keep_last"].as_i64()), (Some("24h0m0s"), Some(3)));
            wait_events(&rig, reasons::SNAPSHOT_POLICY_APPLIED, 1).await?;
            assert_operator(&rig).await?;

            // A change: written once, whatever the agent does next.
            let generation =
                set_policies(&rig, json!([{"share": "/archive", "interval": "@hourly", "ttl": "72h"}])).await?;
            wait_state(&rig, "/archive", SnapshotPolicyState::Applied, generation).await?;
            let stored = &policies(&admin).await?["/archive"];
            assert_eq!((stored["interval"].as_str(), stored["ttl"].as_str()), (Some("1h0m0s"), Some("72h0m0s")));
            assert_eq!(stored["keep_last"], 0);
            polls(&rig, 3).await?;
            assert_eq!(metrics.requests(Endpoint::PutSnapshotPolicy, "ok"), 2, "one PUT per change");
            assert_eq!(wait_events(&rig, reasons::SNAPSHOT_POLICY_APPLIED, 2).await?.len(), 2);

            // Removed from the spec: deleted from DittoFS, gone from the entry; the hand-made one stays.
            let generation = set_policies(&rig, Value::Null).await?;
            rig.wait_entry("the entry without policies", Duration::from_secs(30), |e| {
                anyhow::ensure!(e.snapshot_policies.is_empty() && e.observed_generation == Some(generation), "{e:?}");
                Ok(())
            })
            .await?;
            let left = policies(&admin).await?;
            assert_eq!(left.keys().collect::<Vec<_>>(), ["/human"]);
            assert_eq!(left["/human"]["interval"], "6h0m0s");
            let notes = wait_events(&rig, reasons::SNAPSHOT_POLICY_DELETED, 1).await?;
            assert!(notes[0].contains("/archive"), "{notes:?}");
            assert_operator(&rig).await?;
            // Nothing left to apply: no more admin sessions.
            let sessions = metrics.requests(Endpoint::ListSnapshotPolicies, "ok");
            polls(&rig, 3).await?;
            assert_eq!(metrics.requests(Endpoint::ListSnapshotPolicies, "ok"), sessions);
            Ok(())
        })
        .await
}

#[tokio::test]
#[ignore = "real-server tier: needs the Kubernetes test binaries and DittoFS; run `make test`"]
async fn a_missing_share_is_pending_then_applied_once_it_exists() -> anyhow::Result<()> {
    ControlPlane::shared()
        .with_temp_ns("agent-snap-pending", async |ns| {
            let mut rig = Rig::new(ns, Options::default(), "1s").await?;
            let generation = set_policies(&rig, json!([{"share": "/later", "interval": "@daily"}])).await?;
            let metrics = rig.start_agent(quick(rig.config()));
            let pending = wait_state(&rig, "/later", SnapshotPolicyState::Pending, generation).await?;
            assert!(pending.message.as_deref().is_some_and(|m| m.contains("does not exist")), "{pending:?}");
            assert!(!pending.managed);
            // Retried on its slow cadence, and a missing share is no failure.
            let tried = |m: &Metrics| m.requests(Endpoint::PutSnapshotPolicy, "not_found");
            rig.wait_count("retries of the pending share", 3, Duration::from_secs(20), tried).await?;
            assert!(agent_events(&rig, reasons::SNAPSHOT_POLICY_FAILED).await?.is_empty());

            let admin = rig.fs.admin().await?;
            create_share(&admin, "later").await?;
            wait_state(&rig, "/later", SnapshotPolicyState::Applied, generation).await?;
            assert_eq!(policies(&admin).await?["/later"]["interval"], "24h0m0s");
            let retries = tried(&metrics);
            polls(&rig, 3).await?;
            assert_eq!(tried(&metrics), retries, "applied: no more retries");
            assert_eq!(metrics.requests(Endpoint::PutSnapshotPolicy, "ok"), 1);
            assert_operator(&rig).await?;
            Ok(())
        })
        .await
}

#[tokio::test]
#[ignore = "real-server tier: needs the Kubernetes test binaries and DittoFS; run `make test`"]
async fn a_policy_dittofs_refuses_is_one_warning_and_a_failed_entry() -> anyhow::Result<()> {
    ControlPlane::shared()
        .with_temp_ns("agent-snap-refused", async |ns| {
            let mut rig = Rig::new(ns, Options::default(), "1s").await?;
            create_share(&rig.fs.admin().await?, "/archive").await?;
            // Past Go's 292-year limit: the CRD's format rule lets it through, DittoFS's parser does not.
            let generation = set_policies(&rig, json!([{"share": "/archive", "interval": "9999999999h"}])).await?;
            let metrics = rig.start_agent(quick(rig.config()));
            let failed = wait_state(&rig, "/archive", SnapshotPolicyState::Failed, generation).await?;
            let message = failed.message.unwrap_or_default();
            assert!(message.contains("invalid interval") && message.contains("9999999999h"), "{message}");
            let notes = wait_events(&rig, reasons::SNAPSHOT_POLICY_FAILED, 1).await?;
            assert!(notes[0].contains("/archive") && notes[0].contains("invalid interval"), "{notes:?}");

            // Not retried by itself, and no second Event while it stays refused.
            polls(&rig, 4).await?;
            assert_eq!(metrics.requests(Endpoint::PutSnapshotPolicy, "client_error"), 1);
            assert_eq!(agent_events(&rig, reasons::SNAPSHOT_POLICY_FAILED).await?.len(), 1);
            assert!(policies(&rig.fs.admin().await?).await?.is_empty());

            // Fixed in the spec: applied.
            let generation = set_policies(&rig, json!([{"share": "/archive", "interval": "48h"}])).await?;
            wait_state(&rig, "/archive", SnapshotPolicyState::Applied, generation).await?;
            assert_eq!(policies(&rig.fs.admin().await?).await?["/archive"]["interval"], "48h0m0s");
            assert_operator(&rig).await?;
            Ok(())
        })
        .await
}

#[tokio::test]
#[ignore = "real-server tier: needs the Kubernetes test binaries and DittoFS; run `make test`"]
async fn a_restart_is_checked_and_a_reset_database_gets_the_policy_again() -> anyhow::Result<()> {
    ControlPlane::shared()
        .with_temp_ns("agent-snap-reset", async |ns| {
            let mut rig = Rig::new(ns, Options::default(), "1s").await?;
            create_share(&rig.fs.admin().await?, "/archive").await?;
            let generation = set_policies(&rig, json!([{"share": "/archive", "interval": "6h"}])).await?;
            let metrics = rig.start_agent(quick(rig.config()));
            wait_state(&rig, "/archive", SnapshotPolicyState::Applied, generation).await?;
            let checks = |m: &Metrics| m.requests(Endpoint::ListSnapshotPolicies, "ok");
            let silent = |m: &Metrics| m.polls(PollKind::Ready, "refused");

            // A restart keeps the database: the agent checks, finds the policy as written, writes nothing.
            let (checked, gone) = (checks(&metrics), silent(&metrics));
            rig.fs.stop().await?;
            rig.wait_count("the fast path to find DittoFS gone", gone + 1, Duration::from_secs(10), silent).await?;
            rig.fs.start_again().await?;
            rig.wait_count("a check after the restart", checked + 1, Duration::from_secs(20), checks).await?;
            assert_eq!(metrics.requests(Endpoint::PutSnapshotPolicy, "ok"), 1);

            // A fresh database has neither the share nor the policy: pending until the share is back, then
            // applied again, without any change of the spec.
            let gone = silent(&metrics);
            rig.fs.stop().await?;
            rig.wait_count("the fast path to find DittoFS gone", gone + 1, Duration::from_secs(10), silent).await?;
            rig.fs.reset_database().await?;
            let pending = wait_state(&rig, "/archive", SnapshotPolicyState::Pending, generation).await?;
            assert!(pending.managed, "still the agent's to delete: {pending:?}");
            create_share(&rig.fs.admin().await?, "/archive").await?;
            wait_state(&rig, "/archive", SnapshotPolicyState::Applied, generation).await?;
            assert_eq!(policies(&rig.fs.admin().await?).await?["/archive"]["interval"], "6h0m0s");
            assert_eq!(metrics.requests(Endpoint::PutSnapshotPolicy, "ok"), 2);
            assert_operator(&rig).await?;
            Ok(())
        })
        .await
}
