//! `/health` (liveness, always 200) and `/health/ready` (running adapter types), unauthenticated.

use std::sync::Arc;

use axum::{extract::State, http::StatusCode, response::Response};
use jiff::Timestamp;
use serde_json::json;

use super::json;
use crate::emulator::App;

/// Go's `Duration.String()` for whole seconds: `24s`, `1m2s`, `3h0m5s`.
fn go_uptime(secs: u64) -> String {
    match (secs / 3600, secs / 60 % 60, secs % 60) {
        (0, 0, s) => format!("{s}s"),
        (0, m, s) => format!("{m}m{s}s"),
        (h, m, s) => format!("{h}h{m}m{s}s"),
    }
}

pub async fn live(State(app): State<Arc<App>>) -> Response {
    let uptime = app.started.elapsed().as_secs();
    json(
        StatusCode::OK,
        &json!({
            "status": "healthy",
            "timestamp": Timestamp::now(),
            "data": {
                "control_plane_db": "reachable",
                "service": "dittofs",
                "started_at": app.started_at,
                "uptime": go_uptime(uptime),
                "uptime_sec": uptime,
            },
        }),
    )
}

pub async fn ready(State(app): State<Arc<App>>) -> Response {
    let types = app.runtime.running_types().await;
    json(
        StatusCode::OK,
        &json!({
            "status": "healthy",
            "timestamp": Timestamp::now(),
            "data": {
                "adapters": { "running": types.len(), "types": types },
                "grace_period": { "active": false, "expected_clients": 0, "reclaimed_clients": 0, "remaining_seconds": 0 },
                "metadata_stores": 0,
                "shares": 0,
            },
        }),
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn uptime_matches_go() {
        assert_eq!(super::go_uptime(24), "24s");
        assert_eq!(super::go_uptime(62), "1m2s");
        assert_eq!(super::go_uptime(3605), "1h0m5s");
    }
}
