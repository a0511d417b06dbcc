//! `/health` (liveness, always 200) and `/health/ready` (running adapter types), unauthenticated.
//!
//! Bodies are the real `handlers.Response` struct (`status`, `timestamp`, `data`) around a Go map, so `data`
//! keys come out sorted; `started_at` has whole seconds and `uptime` is rounded, as `health.go` formats them.

use axum::{http::StatusCode, response::Response};
use jiff::Timestamp;
use serde::Serialize;
use serde_json::{Value, json};

use super::json;
use crate::{App, log::go_duration};

#[derive(Serialize)]
struct Health {
    status: &'static str,
    timestamp: Timestamp,
    data: Value,
}

pub fn live(app: &App) -> Response {
    let uptime = app.started.elapsed();
    // `uptime.Round(time.Second)`: halves round away from zero.
    let rounded = std::time::Duration::from_secs((uptime.as_millis() as u64 + 500) / 1000);
    // `Format(time.RFC3339)` drops the fraction.
    let started_at = Timestamp::from_second(app.started_at.as_second()).unwrap_or(app.started_at);
    let data = json!({
        "control_plane_db": "reachable",
        "service": "dittofs",
        "started_at": started_at,
        "uptime": go_duration(rounded),
        "uptime_sec": uptime.as_secs(),
    });
    json(StatusCode::OK, &Health { status: "healthy", timestamp: Timestamp::now(), data })
}

pub async fn ready(app: &App) -> Response {
    let types = app.runtime.running_types().await;
    let data = json!({
        "adapters": { "running": types.len(), "types": types },
        "grace_period": { "active": false, "expected_clients": 0, "reclaimed_clients": 0, "remaining_seconds": 0 },
        "metadata_stores": 0,
        "shares": 0,
    });
    json(StatusCode::OK, &Health { status: "healthy", timestamp: Timestamp::now(), data })
}
