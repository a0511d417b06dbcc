//! The DittoFS controller: turns each `DittoServer` into a DittoFS StatefulSet with the agent injected,
//! plus its Secrets, config, RBAC, Services and baseline NetworkPolicy, and — from the adapters the
//! agents report in `status.agents` — one Service and NetworkPolicy per running adapter and its
//! `adapter-*` container ports ([`reconcile::adapters`]). It never dials DittoFS.
//!
//! Entry points: [`run`] (the binary: flags, telemetry, admin server, SIGTERM) and [`Controller`]
//! (a client + [`Config`] + a cancellation token; what tests run in-process).

pub mod apply;
pub mod cache;
pub mod cli;
pub mod config;
pub mod desired;
pub mod discovery;
pub mod error;
pub mod events;
pub mod leader;
pub mod metrics;
pub mod raw;
pub mod reconcile;
mod runtime;
pub mod synced;

pub use cli::Cli;
pub use config::Config;
pub use desired::rbac::agent_rbac;
pub use error::Error;
pub use leader::LeaderElectionConfig;
pub use metrics::Metrics;
pub use runtime::Controller;
/// Re-exported so callers of [`Controller::run`] need no tokio-util of their own.
pub use tokio_util::sync::CancellationToken;

use dittofs_telemetry::LogFormat;
use prometheus_client::registry::Registry;

/// Why the binary stopped.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// Logging, tracing or the admin server could not start.
    #[error(transparent)]
    Telemetry(#[from] dittofs_telemetry::TelemetryError),
    /// No Kubernetes client configuration (in-cluster or kubeconfig).
    #[error("kubernetes client: {0}")]
    Client(#[from] kube::Error),
    /// The admin address could not be bound.
    #[error("bind the admin server on {addr}: {source}")]
    Bind {
        /// The address.
        addr: std::net::SocketAddr,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The controller failed.
    #[error(transparent)]
    Controller(#[from] Error),
}

/// Runs the binary: `crd` prints the CRD; otherwise telemetry, the admin server and the controller
/// until SIGTERM (or SIGINT), after which in-flight reconciles finish and the Lease is released.
pub async fn run(cli: Cli) -> Result<(), RunError> {
    if let Some(cli::Command::Crd) = cli.command {
        print!("{}", dittofs_api::crd_yaml());
        return Ok(());
    }
    let format = match cli.log_format {
        cli::LogFormatArg::Json => LogFormat::Json,
        cli::LogFormatArg::Plain => LogFormat::Plain,
    };
    let _guard = dittofs_telemetry::init("dittofs-controller", format)?;
    let shutdown = dittofs_telemetry::shutdown_on_signal();
    let client = dittofs_telemetry::kube_client::kube_client().await?;
    let controller = Controller::new(client, cli.config());

    let mut registry = Registry::default();
    controller.metrics().register(&mut registry);
    let listener = tokio::net::TcpListener::bind(cli.admin_addr)
        .await
        .map_err(|source| RunError::Bind { addr: cli.admin_addr, source })?;
    tracing::info!(addr = %cli.admin_addr, "admin server listening");
    let admin = tokio::spawn(dittofs_telemetry::serve_admin(listener, registry, controller.health(), shutdown.clone()));
    let result = controller.run(shutdown.clone()).await;
    shutdown.cancel();
    match admin.await {
        Ok(Err(e)) => tracing::warn!(error = %e, "admin server"),
        Err(e) => tracing::warn!(error = %e, "admin server task"),
        Ok(Ok(())) => {}
    }
    result?;
    tracing::info!("stopped");
    Ok(())
}
