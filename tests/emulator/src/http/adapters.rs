//! Adapters API (`handlers/adapters.go`, `runtime/adapters/service.go`), quirks included: POST starts the
//! adapter and reports `running:false`; GORM's `default:true` turns a created `enabled:false` into true; PUT
//! keeps a running listener when the listen address is unchanged; DELETE is the only status-cache eviction;
//! a port over 65535 panics the adapter constructor, which the API answers with a bare 500.

use axum::{http::StatusCode, response::Response};
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::{decode, gojson::Body, gojson::as_go_any, internal, json, no_content, problem, recovered_panic};
use crate::{
    App,
    runtime::{Report, resolved_port},
    store::{AdapterRow, StoreError, default_port},
};

#[derive(Debug, Serialize)]
struct AdapterResponse {
    id: String,
    #[serde(rename = "type")]
    kind: String,
    enabled: bool,
    running: bool,
    port: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    config: Option<Map<String, Value>>,
    created_at: Timestamp,
    updated_at: Timestamp,
    status: Report,
}

async fn response(app: &App, row: AdapterRow, running: Option<bool>) -> AdapterResponse {
    let running = match running {
        Some(r) => r,
        None => app.runtime.is_running(&row.kind).await,
    };
    AdapterResponse {
        status: app.runtime.status(&row.kind).await,
        id: row.id,
        kind: row.kind,
        enabled: row.enabled,
        running,
        port: row.port,
        config: row.config.filter(|c| !c.is_empty()),
        created_at: row.created_at,
        updated_at: row.updated_at,
    }
}

fn rows(app: &App) -> Vec<AdapterRow> {
    app.store().adapters().cloned().collect()
}

/// The row for `{type}`; chi lets an empty type through (`/adapters//status`), the handler refuses it.
fn row(app: &App, kind: &str) -> Result<AdapterRow, Box<Response>> {
    if kind.is_empty() {
        return Err(Box::new(problem(StatusCode::BAD_REQUEST, "Adapter type is required")));
    }
    app.store().adapter(kind).cloned().ok_or_else(|| Box::new(problem(StatusCode::NOT_FOUND, "Adapter not found")))
}

/// A request's `config` as Go holds it after decoding into `map[string]any` (numbers are float64).
fn go_config(config: Option<Map<String, Value>>) -> Option<Map<String, Value>> {
    config.map(|c| c.into_iter().map(|(k, v)| (k, as_go_any(v))).collect())
}

pub async fn list(app: &App) -> Response {
    let mut out = Vec::new();
    for row in rows(app) {
        out.push(response(app, row, None).await);
    }
    json(StatusCode::OK, &out)
}

#[derive(Debug, Serialize)]
struct PortResponse {
    #[serde(rename = "type")]
    kind: String,
    port: i64,
    enabled: bool,
    running: bool,
}

pub async fn ports(app: &App) -> Response {
    let mut out = Vec::new();
    for row in rows(app) {
        let running = app.runtime.is_running(&row.kind).await;
        out.push(PortResponse { kind: row.kind, port: row.port, enabled: row.enabled, running });
    }
    json(StatusCode::OK, &out)
}

pub async fn get(app: &App, kind: &str) -> Response {
    match row(app, kind) {
        Ok(row) => json(StatusCode::OK, &response(app, row, None).await),
        Err(r) => *r,
    }
}

pub async fn status(app: &App, kind: &str) -> Response {
    match row(app, kind) {
        Ok(_) => json(StatusCode::OK, &app.runtime.status(kind).await),
        Err(r) => *r,
    }
}

#[derive(Debug, Deserialize)]
pub struct CreateAdapter {
    #[serde(default, rename = "type")]
    kind: String,
    #[allow(dead_code)] // read and then lost to GORM's `default:true`, as in the real server
    enabled: Option<bool>,
    #[serde(default)]
    port: i64,
    config: Option<Map<String, Value>>,
}

pub async fn create(app: &App, body: &Body) -> Response {
    let req: CreateAdapter = match decode(body) {
        Ok(req) => req,
        Err(r) => return *r,
    };
    if req.kind.is_empty() {
        return problem(StatusCode::BAD_REQUEST, "Adapter type is required");
    }
    let now = Timestamp::now();
    let row = AdapterRow {
        id: uuid::Uuid::new_v4().to_string(),
        kind: req.kind,
        enabled: true,
        port: req.port,
        config: go_config(req.config),
        created_at: now,
        updated_at: now,
    };
    let known = default_port(&row.kind).is_some();
    let created = app.store().create_adapter(row);
    let row = match created {
        Ok(row) => row,
        Err(StoreError::DuplicateAdapter) => return problem(StatusCode::CONFLICT, "Adapter already exists"),
        Err(_) => return internal("Failed to create adapter"),
    };
    if !known {
        // The factory knows only nfs and smb; the real server rolls the row back.
        let _ = app.store().delete_adapter(&row.kind);
        return internal("Failed to create adapter");
    }
    if let Err(panic) = app.runtime.start(&row).await {
        // The constructor panicked mid-request: no rollback, the row stays and nothing runs.
        return recovered_panic(app, &panic.to_string());
    }
    json(StatusCode::CREATED, &response(app, row, Some(false)).await)
}

#[derive(Debug, Deserialize)]
pub struct UpdateAdapter {
    enabled: Option<bool>,
    port: Option<i64>,
    config: Option<Map<String, Value>>,
}

pub async fn update(app: &App, kind: &str, body: &Body) -> Response {
    if kind.is_empty() {
        return problem(StatusCode::BAD_REQUEST, "Adapter type is required");
    }
    let req: UpdateAdapter = match decode(body) {
        Ok(req) => req,
        Err(r) => return *r,
    };
    let mut row = match row(app, kind) {
        Ok(row) => row,
        Err(r) => return *r,
    };
    row.enabled = req.enabled.unwrap_or(row.enabled);
    row.port = req.port.unwrap_or(row.port);
    if req.config.is_some() {
        row.config = go_config(req.config);
    }
    row.updated_at = Timestamp::now();
    if app.store().save_adapter(row.clone()).is_err() {
        return internal("Failed to update adapter");
    }
    if let Err(panic) = reload(app, &row).await {
        return recovered_panic(app, &panic);
    }
    json(StatusCode::OK, &response(app, row, None).await)
}

/// `Service.UpdateAdapter`: a running, still-enabled adapter on the same listen address is left alone (so
/// a failed bind is not retried); anything else is stopped (listener closed before we answer) and started
/// again if enabled.
async fn reload(app: &App, row: &AdapterRow) -> Result<(), String> {
    if row.enabled && app.runtime.same_listen_addr(row).await {
        let port = resolved_port(row);
        app.log.info(
            "Adapter listen address unchanged; preserving listener across reload",
            &[("type", (&row.kind).into()), ("port", port.into())],
        );
        return Ok(());
    }
    app.runtime.stop(&row.kind).await;
    if row.enabled {
        app.runtime.start(row).await.map_err(|e| e.to_string())?;
    }
    Ok(())
}

pub async fn delete(app: &App, kind: &str) -> Response {
    if kind.is_empty() {
        return problem(StatusCode::BAD_REQUEST, "Adapter type is required");
    }
    // The runtime is stopped before the row is looked up, as `Service.DeleteAdapter` does.
    app.runtime.stop(kind).await;
    let deleted = app.store().delete_adapter(kind);
    match deleted {
        Ok(true) => {
            app.runtime.evict_status(kind);
            no_content()
        }
        Ok(false) => problem(StatusCode::NOT_FOUND, "Adapter not found"),
        Err(_) => internal("Failed to delete adapter"),
    }
}
