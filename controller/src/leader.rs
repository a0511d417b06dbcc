//! Leader election on a `coordination.k8s.io/v1` Lease, so two controller replicas never both write.
//!
//! kube 5 has no leader election, so this is the client-go algorithm in small: a candidate takes the
//! Lease when it is free or when its record has not changed for `lease_duration` *as measured on the
//! candidate's own clock* (no cross-node clock comparison); the leader renews every `retry_period`
//! and gives up — stopping its controller — when it could not renew for `renew_deadline`. Every write
//! is a PUT carrying the read resourceVersion, so two candidates can never both win the same round.
//! On graceful shutdown the leader empties the holder, so a standby takes over at once.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::Client;
use kube::api::{Api, PostParams};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Where and how to elect.
#[derive(Debug, Clone)]
pub struct LeaderElectionConfig {
    /// Name of the Lease.
    pub lease_name: String,
    /// Namespace of the Lease.
    pub lease_namespace: String,
    /// How long a silent leader keeps the Lease (client-go default 15 s).
    pub lease_duration: Duration,
    /// How long a leader keeps leading without a successful renewal (default 10 s).
    pub renew_deadline: Duration,
    /// Pause between attempts (default 2 s).
    pub retry_period: Duration,
}

impl LeaderElectionConfig {
    /// client-go's timings for the named Lease.
    pub fn new(lease_name: impl Into<String>, lease_namespace: impl Into<String>) -> Self {
        Self {
            lease_name: lease_name.into(),
            lease_namespace: lease_namespace.into(),
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }
}

/// The part of a Lease record whose change proves its holder is alive.
type Record = (Option<String>, Option<MicroTime>, Option<i32>);

/// One candidate.
#[derive(Debug)]
pub struct LeaderElector {
    api: Api<Lease>,
    config: LeaderElectionConfig,
    identity: String,
    /// The last record seen and when (on this candidate's clock) it was first seen.
    observed: Option<(Record, Instant)>,
}

impl LeaderElector {
    /// A candidate named `identity`.
    pub fn new(client: Client, config: LeaderElectionConfig, identity: impl Into<String>) -> Self {
        Self {
            api: Api::namespaced(client, &config.lease_namespace),
            config,
            identity: identity.into(),
            observed: None,
        }
    }

    /// The candidate's identity (the Lease holder when it leads).
    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// Waits until this candidate leads (true) or `shutdown` fires (false). `on_attempt` is called
    /// after every attempt that reached the apiserver (used for readiness).
    pub async fn acquire(&mut self, shutdown: &CancellationToken, mut on_attempt: impl FnMut()) -> bool {
        loop {
            match self.try_acquire_or_renew().await {
                Ok(true) => return true,
                Ok(false) => on_attempt(),
                Err(e) => {
                    tracing::warn!(error = %e, "leader election: could not read or write the Lease")
                }
            }
            tokio::select! {
                () = shutdown.cancelled() => return false,
                () = tokio::time::sleep(self.config.retry_period) => {}
            }
        }
    }

    /// Renews until `stop` fires (returns true) or renewals failed for `renew_deadline` (returns false: leadership lost).
    pub async fn hold(&mut self, stop: &CancellationToken) -> bool {
        let mut last_renewal = Instant::now();
        loop {
            tokio::select! {
                () = stop.cancelled() => return true,
                () = tokio::time::sleep(self.config.retry_period) => {}
            }
            let attempt = tokio::time::timeout(self.config.retry_period, self.try_acquire_or_renew()).await;
            match attempt {
                Ok(Ok(true)) => last_renewal = Instant::now(),
                Ok(Ok(false)) => {
                    tracing::warn!("leader election: another candidate holds the Lease");
                    return false;
                }
                Ok(Err(e)) => tracing::warn!(error = %e, "leader election: renewal failed"),
                Err(_) => tracing::warn!("leader election: renewal timed out"),
            }
            if last_renewal.elapsed() >= self.config.renew_deadline {
                return false;
            }
        }
    }

    /// Gives the Lease up (graceful shutdown), so a standby does not wait for it to expire.
    pub async fn release(&mut self) {
        let Ok(Some(mut lease)) = self.api.get_opt(&self.config.lease_name).await else {
            return;
        };
        let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
        if spec.holder_identity.as_deref() != Some(self.identity.as_str()) {
            return;
        }
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(1);
        spec.renew_time = Some(MicroTime(Timestamp::now()));
        match self.api.replace(&self.config.lease_name, &PostParams::default(), &lease).await {
            Ok(_) => tracing::info!("leader election: Lease released"),
            Err(e) => tracing::warn!(error = %e, "leader election: could not release the Lease"),
        }
    }

    /// One round: take or renew the Lease. Ok(true) = this candidate leads now.
    pub async fn try_acquire_or_renew(&mut self) -> Result<bool, kube::Error> {
        let now = MicroTime(Timestamp::now());
        let duration_secs = i32::try_from(self.config.lease_duration.as_secs()).unwrap_or(i32::MAX);
        let Some(mut lease) = self.api.get_opt(&self.config.lease_name).await? else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.config.lease_name.clone()),
                    namespace: Some(self.config.lease_namespace.clone()),
                    ..Default::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(self.identity.clone()),
                    lease_duration_seconds: Some(duration_secs),
                    acquire_time: Some(now.clone()),
                    renew_time: Some(now),
                    lease_transitions: Some(0),
                    ..Default::default()
                }),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(created) => {
                    self.remember(&created);
                    Ok(true)
                }
                Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
                Err(e) => Err(e),
            };
        };
        let spec = lease.spec.clone().unwrap_or_default();
        let holder = spec.holder_identity.clone().filter(|h| !h.is_empty());
        let record: Record = (holder.clone(), spec.renew_time.clone(), spec.lease_transitions);
        let seen_at = match &self.observed {
            Some((old, at)) if *old == record => *at,
            _ => {
                let at = Instant::now();
                self.observed = Some((record, at));
                at
            }
        };
        let mine = holder.as_deref() == Some(self.identity.as_str());
        let held_for = spec
            .lease_duration_seconds
            .map_or(self.config.lease_duration, |s| Duration::from_secs(u64::try_from(s).unwrap_or(0)));
        if holder.is_some() && !mine && seen_at.elapsed() < held_for {
            return Ok(false);
        }
        let transitions = spec.lease_transitions.unwrap_or(0);
        lease.spec = Some(LeaseSpec {
            holder_identity: Some(self.identity.clone()),
            lease_duration_seconds: Some(duration_secs),
            acquire_time: if mine { spec.acquire_time } else { Some(now.clone()) },
            renew_time: Some(now),
            lease_transitions: Some(if mine { transitions } else { transitions + 1 }),
            ..Default::default()
        });
        // The read resourceVersion travels with the PUT: a concurrent writer makes this a 409.
        match self.api.replace(&self.config.lease_name, &PostParams::default(), &lease).await {
            Ok(updated) => {
                if !mine {
                    tracing::info!(previous = ?holder, "leader election: took the Lease");
                }
                self.remember(&updated);
                Ok(true)
            }
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
            Err(e) => Err(e),
        }
    }

    fn remember(&mut self, lease: &Lease) {
        let spec = lease.spec.clone().unwrap_or_default();
        self.observed = Some(((spec.holder_identity, spec.renew_time, spec.lease_transitions), Instant::now()));
    }
}
