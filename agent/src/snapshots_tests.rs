//! Snapshot-policy syncs against the fake DittoFS: one admin session per change and none without one,
//! deletion of only what the agent wrote, pending shares on the slow retry, one Event per failure.

use std::{sync::Arc, time::Duration};

use dittofs_api::crd::{AgentSnapshotPolicyStatus, AgentStatus, DittoServerStatus, SnapshotPolicyState};
use serde_json::json;
use tokio::time::{Instant, advance};

use super::*;
use crate::{
    config::AgentConfig,
    credentials::fake::FakeStore,
    dittofs::{
        Endpoint,
        fake::{ADMIN, ADMIN_PASSWORD, FakeDittoFs, URL},
    },
    events::Events,
    metrics::Metrics,
    secret::SecretString,
};

const RETRY: Duration = Duration::from_secs(30);

struct Rig {
    fs: FakeDittoFs,
    auth: Auth<FakeDittoFs, FakeStore>,
    snapshots: Snapshots,
    events: tokio::sync::mpsc::Receiver<AgentEvent>,
}

fn rig(admin_password: &str) -> Rig {
    let fs = FakeDittoFs::new();
    fs.state().shares.insert("/archive".into());
    let config = AgentConfig::new("fs-0", "ns", "fs", URL, SecretString::new(admin_password));
    let auth = Auth::new(&config, fs.clone(), FakeStore::with_password("pw"), Arc::new(Metrics::new()));
    let (events, queued) = Events::channel();
    Rig { fs, auth, snapshots: Snapshots::new("fs-0", RETRY, events), events: queued }
}

fn server(policies: serde_json::Value, generation: i64) -> DittoServer {
    let mut s: DittoServer = serde_json::from_value(json!({
        "apiVersion": "dittofs.dittofs.com/v1alpha1", "kind": "DittoServer",
        "metadata": {"name": "fs", "namespace": "ns", "generation": generation},
        "spec": {"storage": {"metadataSize": "1Gi"}, "snapshotPolicies": policies},
    }))
    .unwrap();
    s.status = Some(DittoServerStatus::default());
    s
}

impl Rig {
    async fn sync_if_due(&mut self) -> bool {
        match self.snapshots.due() {
            Some(at) if at <= Instant::now() => {
                self.snapshots.sync(&self.fs, &mut self.auth).await;
                true
            }
            _ => false,
        }
    }

    fn admin_logins(&self) -> usize {
        self.fs.calls(Endpoint::Login).iter().filter(|c| c.user.as_deref() == Some(ADMIN)).count()
    }

    fn events(&mut self) -> Vec<(bool, &'static str)> {
        std::iter::from_fn(|| self.events.try_recv().ok()).map(|e| (e.warning, e.reason)).collect()
    }

    fn state(&self, share: &str) -> Option<SnapshotPolicyState> {
        self.snapshots.report().into_iter().find(|r| r.share == share).map(|r| r.state)
    }
}

#[tokio::test(start_paused = true)]
async fn a_change_is_applied_once_and_a_removal_deletes_it() {
    let mut r = rig(ADMIN_PASSWORD);
    r.snapshots.on_object(&server(json!([]), 1));
    assert!(!r.sync_if_due().await, "no policies: no admin login");
    r.snapshots.on_object(&server(json!([{"share": "archive", "interval": "24h", "keepLast": 3}]), 2));
    assert!(r.sync_if_due().await);
    assert_eq!(r.fs.state().policies["/archive"].keep_last, Some(3));
    assert_eq!(r.state("/archive"), Some(SnapshotPolicyState::Applied));
    assert_eq!(r.events(), [(false, "SnapshotPolicyApplied")]);
    // The same list again (a status write, a resync of the watch): nothing to do.
    r.snapshots.on_object(&server(json!([{"share": "archive", "interval": "24h", "keepLast": 3}]), 2));
    assert!(!r.sync_if_due().await);
    assert_eq!((r.admin_logins(), r.fs.count(Endpoint::PutSnapshotPolicy)), (1, 1));
    // DittoFS came back: checked, but what it holds is what the spec says, so nothing is written.
    r.snapshots.recheck();
    assert!(r.sync_if_due().await);
    assert_eq!((r.admin_logins(), r.fs.count(Endpoint::PutSnapshotPolicy)), (2, 1));

    r.snapshots.on_object(&server(json!([]), 3));
    assert!(r.sync_if_due().await);
    assert!(r.fs.state().policies.is_empty());
    assert!(r.snapshots.report().is_empty());
    assert_eq!(r.events(), [(false, "SnapshotPolicyDeleted")]);
    assert!(!r.sync_if_due().await, "nothing managed, nothing desired: no more admin logins");
}

#[tokio::test(start_paused = true)]
async fn only_policies_the_agent_wrote_are_deleted_even_after_a_restart() {
    let mut r = rig(ADMIN_PASSWORD);
    r.fs.state().shares.insert("/human".into());
    r.fs.state().policies.insert(
        "/human".into(),
        PolicyBody::of(&serde_json::from_value(json!({"share": "/human", "interval": "1h"})).unwrap()),
    );
    r.fs.state().policies.insert(
        "/archive".into(),
        PolicyBody::of(&serde_json::from_value(json!({"share": "/archive", "interval": "1h"})).unwrap()),
    );
    // A restarted agent: its entry says it wrote /archive's policy.
    let mut s = server(json!([]), 4);
    let managed = AgentSnapshotPolicyStatus {
        share: "/archive".into(),
        state: SnapshotPolicyState::Applied,
        managed: true,
        observed_generation: Some(3),
        message: None,
    };
    s.status.as_mut().unwrap().agents =
        vec![AgentStatus { pod_name: "fs-0".into(), snapshot_policies: vec![managed], ..Default::default() }];
    r.snapshots.on_object(&s);
    assert!(r.sync_if_due().await);
    let left: Vec<String> = r.fs.state().policies.keys().cloned().collect();
    assert_eq!(left, ["/human"], "the policy nobody declared is left alone");
}

#[tokio::test(start_paused = true)]
async fn a_missing_share_is_pending_on_the_slow_retry_then_applied() {
    let mut r = rig(ADMIN_PASSWORD);
    r.snapshots.on_object(&server(json!([{"share": "/later", "interval": "@daily"}]), 1));
    assert!(r.sync_if_due().await);
    assert_eq!(r.state("/later"), Some(SnapshotPolicyState::Pending));
    assert!(r.events().is_empty(), "pending is no failure");
    advance(RETRY - Duration::from_secs(1)).await;
    assert!(!r.sync_if_due().await, "not before the retry period");
    advance(Duration::from_secs(1)).await;
    assert!(r.sync_if_due().await);
    assert_eq!(r.state("/later"), Some(SnapshotPolicyState::Pending));
    r.fs.state().shares.insert("/later".into());
    advance(RETRY).await;
    assert!(r.sync_if_due().await);
    assert_eq!(r.state("/later"), Some(SnapshotPolicyState::Applied));
    advance(RETRY * 4).await;
    assert!(!r.sync_if_due().await, "applied: no more retries");
    assert_eq!(r.admin_logins(), 3);
}

#[tokio::test(start_paused = true)]
async fn a_refusal_is_one_warning_and_no_retry_until_something_changes() {
    let mut r = rig(ADMIN_PASSWORD);
    let refused = ApiError::Unexpected { status: 400, message: "invalid interval: time: invalid duration".into() };
    r.fs.fail_next(Endpoint::PutSnapshotPolicy, refused.clone());
    r.snapshots.on_object(&server(json!([{"share": "/archive", "interval": "9999999999h"}]), 1));
    assert!(r.sync_if_due().await);
    assert_eq!(r.state("/archive"), Some(SnapshotPolicyState::Failed));
    assert_eq!(r.events(), [(true, "SnapshotPolicyFailed")]);
    advance(ADMIN_RETRY * 2).await;
    assert!(!r.sync_if_due().await, "a refusal is not retried by itself");
    // DittoFS restarted and refuses the same entry the same way: the status keeps it, no second Event.
    r.fs.fail_next(Endpoint::PutSnapshotPolicy, refused);
    r.snapshots.recheck();
    assert!(r.sync_if_due().await);
    assert!(r.events().is_empty());
    r.snapshots.on_object(&server(json!([{"share": "/archive", "interval": "24h"}]), 2));
    assert!(r.sync_if_due().await);
    assert_eq!(r.state("/archive"), Some(SnapshotPolicyState::Applied));
}

#[tokio::test(start_paused = true)]
async fn a_refused_admin_fails_every_entry_once_and_retries_slowly() {
    let mut r = rig("wrong");
    r.snapshots.on_object(&server(json!([{"share": "/archive", "interval": "1h"}]), 1));
    assert!(r.sync_if_due().await);
    assert_eq!(r.state("/archive"), Some(SnapshotPolicyState::Failed));
    assert_eq!(r.events(), [(true, "SnapshotPolicyFailed")]);
    advance(RETRY).await;
    assert!(!r.sync_if_due().await);
    advance(ADMIN_RETRY).await;
    assert!(r.sync_if_due().await);
    assert!(r.events().is_empty(), "the same failure again");
    assert_eq!(r.fs.count(Endpoint::PutSnapshotPolicy), 0);
}
