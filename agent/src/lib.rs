//! dittofs-agent: the sidecar in every DittoFS pod. It is the only component that talks to DittoFS: on
//! loopback, with a least-privilege `operator` account it provisions itself (and sets back to `operator`
//! when someone changed its role), it watches the adapters and writes what it sees into its own entry of
//! the DittoServer's `status.agents`. The bootstrap admin password reaches it as a file of a Secret volume
//! mounted into its container only, read when the admin is needed.
//!
//! [`run`] is the whole agent; `main` only reads the environment, sets up telemetry and calls it, and
//! tests call it in-process with a ServiceAccount-token client, exactly as the container runs.
//!
//! Modules, each using only those before it: [`secret`] (redaction) and [`text`] (shaping DittoFS's texts);
//! [`listeners`] (the pod's listening ports); [`dittofs`] (the API client, a leaf that knows nothing of the
//! agent); [`error`], [`metrics`] (which
//! observes the client), [`config`], [`kube_client`] (the ServiceAccount's Kubernetes client); [`credentials`] (the credentials Secret), [`discovery`] (API list →
//! report, pure), [`events`] (the Events on the DittoServer), [`auth`] (account and tokens);
//! [`snapshots`] (spec.snapshotPolicies applied in short admin sessions); [`status`] (the entry and its
//! server-side apply); [`poller`] (the loop); and [`run`] here.

pub mod auth;
mod backoff;
pub mod config;
pub mod credentials;
pub mod discovery;
pub mod dittofs;
pub mod error;
pub mod events;
pub mod kube_client;
pub mod listeners;
pub mod metrics;
pub mod poller;
/// Passwords and tokens never shown in `Debug` (shared with the controller).
pub use dittofs_api::secret;
pub mod snapshots;
pub mod status;
pub mod text;

use std::sync::Arc;

use dittofs_api::DittoServer;
use dittofs_telemetry::Health;
use futures::StreamExt as _;
use kube::{
    Api,
    runtime::{WatchStreamExt as _, watcher},
};
use prometheus_client::registry::Registry;

pub use config::{AdminPassword, AgentConfig, SecretKeyRef, Timings};
pub use error::AgentError;
pub use metrics::Metrics;
pub use secret::SecretString;
/// Re-exported so callers of [`run`] need no direct tokio-util dependency.
pub use tokio_util::sync::CancellationToken;

/// Runs the agent until `shutdown` is cancelled. `kube` must act as the pod's ServiceAccount: it needs
/// get/list/watch on its DittoServer, patch on its status, get/patch on the credentials Secret, and
/// create on `events.k8s.io` events in its namespace (the auth Events; never patch: see [`events`]) —
/// nothing else (no `update`: the token pair is written with a merge patch).
pub async fn run(config: AgentConfig, kube: kube::Client, shutdown: CancellationToken) -> Result<(), AgentError> {
    run_with_metrics(config, kube, shutdown, Arc::new(Metrics::new())).await
}

/// [`run`] with metrics the caller keeps a handle on (tests read them directly).
pub async fn run_with_metrics(
    config: AgentConfig,
    kube: kube::Client,
    shutdown: CancellationToken,
    metrics: Arc<Metrics>,
) -> Result<(), AgentError> {
    config.validate()?;
    let health = Arc::new(Health::default());
    let admin = match config.admin_addr {
        Some(addr) => {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|e| AgentError::Admin(format!("cannot listen on {addr}: {e}")))?;
            let mut registry = Registry::default();
            metrics.register(&mut registry);
            tracing::info!(%addr, "admin server (/livez, /readyz, /metrics)");
            Some(tokio::spawn(dittofs_telemetry::serve_admin(listener, registry, health.clone(), shutdown.clone())))
        }
        None => None,
    };
    tracing::info!(
        pod = config.pod_name,
        server = config.server_name,
        namespace = config.namespace,
        dittofs = config.dittofs_url,
        tls_server_name = config.tls.as_ref().map(|t| t.server_name.as_str()),
        admin_password = config.admin_password_source(),
        "agent starting"
    );

    let limits = config.timings.client_limits();
    let client = dittofs::Client::new(&config.dittofs_url, config.tls.clone(), &limits, metrics.clone())?;
    let store = credentials::Store::new(kube.clone(), &config.namespace, config.credentials_secret());
    let events = events::Events::spawn(kube.clone(), &config.pod_name, shutdown.clone());
    let snapshots = snapshots::Snapshots::new(&config.pod_name, config.timings.snapshot_retry, events.clone());
    let mut auth = auth::Auth::new(&config, client.clone(), store, metrics.clone()).with_events(events);
    auth.restore().await;
    let writer =
        status::Writer::new(kube.clone(), &config.namespace, &config.server_name, &config.pod_name, metrics.clone());

    // Only this object: the Role grants list/watch on its name, which needs the field selector.
    let servers: Api<DittoServer> = Api::namespaced(kube, &config.namespace);
    let selector = format!("metadata.name={}", config.server_name);
    let objects = watcher(servers, watcher::Config::default().fields(&selector)).default_backoff().boxed();

    let poller =
        poller::Poller::new(client, auth, writer, metrics, health, config.timings.clone(), config.server_name.clone())
            .with_snapshots(snapshots);
    poller.run(objects, shutdown.clone()).await;

    // The poller returns once `shutdown` is cancelled, which also stops the admin server.
    if let Some(admin) = admin {
        match admin.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(AgentError::Admin(e.to_string())),
            Err(e) => return Err(AgentError::Admin(e.to_string())),
        }
    }
    Ok(())
}
