//! Telemetry set up once for both binaries: logs (JSON or plain), OpenTelemetry traces through the standard
//! `OTEL_*` env vars, the admin server (`/livez`, `/readyz`, Prometheus `/metrics`), SIGTERM handling, and the
//! Kubernetes client with response deadlines ([`kube_client`]).

mod admin;
pub mod kube_client;
mod logging;
pub mod trace;

pub use admin::{Health, serve_admin};
pub use logging::{Guard, LogFormat, init};

use tokio_util::sync::CancellationToken;

/// Errors of the telemetry set-up.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("invalid log filter (RUST_LOG): {0}")]
    Filter(String),
    #[error("tracing subscriber already installed")]
    AlreadyInstalled,
    #[error("OpenTelemetry exporter: {0}")]
    Exporter(String),
    #[error("admin server: {0}")]
    Admin(#[from] std::io::Error),
}

impl TelemetryError {
    /// Stable label for metrics and logs.
    pub fn label(&self) -> &'static str {
        match self {
            TelemetryError::Filter(_) => "log_filter",
            TelemetryError::AlreadyInstalled => "subscriber_installed",
            TelemetryError::Exporter(_) => "otel_exporter",
            TelemetryError::Admin(_) => "admin_server",
        }
    }
}

/// A token cancelled on the first SIGTERM or SIGINT; every long-running task selects on it.
pub fn shutdown_on_signal() -> CancellationToken {
    let token = CancellationToken::new();
    let trigger = token.clone();
    tokio::spawn(async move {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(term) => term,
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM; shutting down");
                trigger.cancel();
                return;
            }
        };
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM received, shutting down"),
            _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received, shutting down"),
        }
        trigger.cancel();
    });
    token
}
