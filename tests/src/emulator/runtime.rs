//! The adapter runtime: real TCP listeners for running adapters and the 5 s-cached health reports.
//!
//! Mirrors `pkg/controlplane/runtime`: an adapter is "running" while the runtime holds an entry for its type,
//! even when binding failed (the entry is never removed), and health reports are cached per type for 5 s,
//! invalidated only by DELETE — so `status` can contradict `running` for a few seconds after a toggle.

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

use super::log::Log;

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

#[derive(Debug)]
struct Running {
    port: i64,
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

impl Runtime {
    pub fn new(log: Arc<Log>) -> Self {
        Runtime { running: Mutex::default(), status_cache: Default::default(), log }
    }

    pub async fn is_running(&self, kind: &str) -> bool {
        self.running.lock().await.contains_key(kind)
    }

    pub async fn running_port(&self, kind: &str) -> Option<i64> {
        self.running.lock().await.get(kind).map(|r| r.port)
    }

    /// Types with a runtime entry, bind failures included (`/health/ready` counts those too).
    pub async fn running_types(&self) -> Vec<String> {
        self.running.lock().await.keys().cloned().collect()
    }

    /// Registers the adapter and binds its listener in the background, like `registerAndRunAdapterLocked`.
    /// Ports outside 1..=65535 fail to bind, as they would in Go: the entry stays, status stays "not started".
    pub async fn start(&self, kind: &str, port: i64) {
        let mut running = self.running.lock().await;
        if running.contains_key(kind) {
            return;
        }
        let bound = Arc::new(AtomicBool::new(false));
        let (log, flag, name) = (self.log.clone(), bound.clone(), kind.to_string());
        let task = tokio::spawn(async move {
            let bind = match u16::try_from(port) {
                Ok(p) if p > 0 => TcpListener::bind(("0.0.0.0", p)).await,
                _ => Err(std::io::Error::new(std::io::ErrorKind::InvalidInput, "invalid port")),
            };
            match bind {
                Ok(listener) => {
                    flag.store(true, Ordering::SeqCst);
                    log.info("Adapter started", &[("type", &name), ("port", &port.to_string())]);
                    // Connections are accepted and dropped: the emulator speaks no file protocol.
                    while let Ok((stream, _)) = listener.accept().await {
                        drop(stream);
                    }
                }
                Err(e) => log.error("Adapter failed", &[("type", &name), ("port", &port.to_string()), ("error", &e.to_string())]),
            }
        });
        running.insert(kind.to_string(), Running { port, bound, task });
    }

    /// Stops the adapter and waits until its listener is closed.
    pub async fn stop(&self, kind: &str) {
        let entry = self.running.lock().await.remove(kind);
        if let Some(entry) = entry {
            entry.task.abort();
            let _ = entry.task.await;
            self.log.info("Adapter stopped", &[("type", kind)]);
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
