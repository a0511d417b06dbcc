//! The adapter runtime: real TCP listeners for running adapters and the 5 s-cached health reports.
//!
//! Mirrors `pkg/controlplane/runtime`: an adapter is "running" while the runtime holds an entry for its type,
//! even when binding failed (the entry is never removed), and health reports are cached per type for 5 s,
//! invalidated only by DELETE — so `status` can contradict `running` for a few seconds after a toggle.
//! Ports resolve as the real factory and adapters do: 0 is the type default (12049/12445), a negative port
//! is the adapter's own default (NFS 2049, SMB 12445), and a port over 65535 makes the constructor panic.

use std::{
    collections::HashMap,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use jiff::Timestamp;
use serde::Serialize;
use tokio::{net::TcpListener, sync::Mutex, task::JoinHandle};

use super::{log::Log, store::AdapterRow};

/// `health.StatusCacheTTL`.
const STATUS_TTL: Duration = Duration::from_secs(5);

/// `health.Report` as serialized by the real server.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub status: &'static str,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub message: String,
    pub checked_at: Timestamp,
}

/// What the real adapter constructors panic with; the API answers a bare 500 and a restart crashes.
#[derive(Debug, thiserror::Error)]
#[error("invalid {protocol} config: invalid port {port}: must be 0-65535")]
pub struct InvalidPort {
    protocol: String,
    port: i64,
}

#[derive(Debug)]
struct Running {
    /// The adapter's own idea of its port (`adapter.Port()`), after its defaults.
    listen: i64,
    bind_address: String,
    bound: Arc<AtomicBool>,
    task: JoinHandle<()>,
}

#[derive(Debug)]
pub struct Runtime {
    running: Mutex<HashMap<String, Running>>,
    status_cache: std::sync::Mutex<HashMap<String, (Report, Instant)>>,
    log: Arc<Log>,
}

fn protocol_name(kind: &str) -> String {
    kind.to_uppercase()
}

/// `bind_address` from the adapter's config; only SMB binds it, but every type compares it on reload.
pub fn bind_address(row: &AdapterRow) -> String {
    let address = row.config.as_ref().and_then(|c| c.get("bind_address")).and_then(|v| v.as_str());
    address.unwrap_or_default().to_string()
}

/// The port the factory hands the adapter (`resolvePort`): 0 means the type's default.
pub fn resolved_port(row: &AdapterRow) -> i64 {
    match (row.port, super::store::default_port(&row.kind)) {
        (0, Some(default)) => i64::from(default),
        (port, _) => port,
    }
}

/// The port the adapter really listens on, after its own `applyDefaults`.
fn listen_port(kind: &str, port: i64) -> i64 {
    match (kind, port) {
        ("nfs", p) if p <= 0 => 2049,
        ("smb", p) if p <= 0 => 12445,
        (_, p) => p,
    }
}

/// Go's `net.Listen` wording for the failures a test can provoke.
fn listen_error(address: &str, e: &std::io::Error) -> String {
    let why = match e.kind() {
        std::io::ErrorKind::AddrInUse => "bind: address already in use".to_string(),
        std::io::ErrorKind::AddrNotAvailable => "bind: cannot assign requested address".to_string(),
        std::io::ErrorKind::PermissionDenied => "bind: permission denied".to_string(),
        _ => e.to_string(),
    };
    format!("listen tcp {address}: {why}")
}

impl Runtime {
    pub fn new(log: Arc<Log>) -> Self {
        Runtime { running: Mutex::default(), status_cache: Default::default(), log }
    }

    pub async fn is_running(&self, kind: &str) -> bool {
        self.running.lock().await.contains_key(kind)
    }

    /// Types with a runtime entry, bind failures included (`/health/ready` counts those too).
    pub async fn running_types(&self) -> Vec<String> {
        self.running.lock().await.keys().cloned().collect()
    }

    /// `sameListenAddr`: the running entry binds what `row` asks for, so a reload keeps the listener.
    pub async fn same_listen_addr(&self, row: &AdapterRow) -> bool {
        let running = self.running.lock().await;
        running.get(&row.kind).is_some_and(|r| r.bind_address == bind_address(row) && r.listen == resolved_port(row))
    }

    /// Registers the adapter and binds its listener in the background, like `registerAndRunAdapterLocked`.
    /// A bind failure leaves the entry in place with status "not started"; an out-of-range port is refused
    /// before anything is registered, as the real constructor's panic is.
    pub async fn start(&self, row: &AdapterRow) -> Result<(), InvalidPort> {
        let port = listen_port(&row.kind, resolved_port(row));
        let protocol = protocol_name(&row.kind);
        if port > 65535 {
            return Err(InvalidPort { protocol, port });
        }
        let mut running = self.running.lock().await;
        if running.contains_key(&row.kind) {
            return Ok(());
        }
        let bind_address = bind_address(row);
        self.log.info("Adapter started", &[("type", (&row.kind).into()), ("port", row.port.into())]);
        let bound = Arc::new(AtomicBool::new(false));
        let (log, flag, host) = (self.log.clone(), bound.clone(), bind_address.clone());
        let task = tokio::spawn(async move {
            log.info("Starting adapter", &[("protocol", (&protocol).into()), ("port", port.into())]);
            let address = format!("{host}:{port}");
            let bind_to = if host.is_empty() { format!("0.0.0.0:{port}") } else { address.clone() };
            match TcpListener::bind(bind_to.as_str()).await {
                Ok(listener) => {
                    flag.store(true, Ordering::SeqCst);
                    log.info(&format!("{protocol} server listening"), &[("port", port.into())]);
                    // Connections are accepted and dropped: the emulator speaks no file protocol.
                    while let Ok((stream, _)) = listener.accept().await {
                        drop(stream);
                    }
                }
                Err(e) => {
                    let error =
                        format!("failed to create {protocol} listener on port {port}: {}", listen_error(&address, &e));
                    log.error("Adapter failed", &[("protocol", (&protocol).into()), ("error", (&error).into())]);
                }
            }
        });
        running.insert(row.kind.clone(), Running { listen: port, bind_address, bound, task });
        Ok(())
    }

    /// Stops the adapter and waits until its listener is closed.
    pub async fn stop(&self, kind: &str) {
        let entry = self.running.lock().await.remove(kind);
        if let Some(entry) = entry {
            self.log.info("Stopping adapter", &[("type", kind.into())]);
            entry.task.abort();
            let _ = entry.task.await;
            self.log.info("Adapter stopped", &[("type", kind.into())]);
        }
    }

    /// Drops the cached report (only DELETE does this in the real server).
    pub fn evict_status(&self, kind: &str) {
        self.status_cache.lock().expect("status cache lock").remove(kind);
    }

    /// The adapter's health report, served from a 5 s cache.
    pub async fn status(&self, kind: &str) -> Report {
        if let Some((report, at)) = self.status_cache.lock().expect("status cache lock").get(kind)
            && at.elapsed() < STATUS_TTL
        {
            return report.clone();
        }
        let report = self.probe(kind).await;
        self.status_cache.lock().expect("status cache lock").insert(kind.to_string(), (report.clone(), Instant::now()));
        report
    }

    async fn probe(&self, kind: &str) -> Report {
        let bound = self.running.lock().await.get(kind).map(|r| r.bound.load(Ordering::SeqCst));
        let (status, message) = match bound {
            None => ("unknown", format!("adapter {kind} not running")),
            Some(false) => ("unknown", format!("{} adapter has not started yet", protocol_name(kind))),
            Some(true) => ("healthy", String::new()),
        };
        Report { status, message, checked_at: Timestamp::now() }
    }

    /// Stops every adapter (graceful shutdown).
    pub async fn stop_all(&self) {
        let kinds: Vec<String> = self.running.lock().await.keys().cloned().collect();
        for kind in kinds {
            self.stop(&kind).await;
        }
    }
}
