//! Adapters API (`handlers/adapters.go`, `runtime/adapters/service.go`), quirks included: POST starts the
//! adapter and reports `running:false`; GORM's `default:true` turns a created `enabled:false` into true; PUT
//! keeps a running listener when nothing that matters changed; DELETE is the only status-cache eviction.

use std::sync::Arc;

use axum::{
    body::Bytes,
    extract::{Path, State},
    http::StatusCode,
    response::Response,
};
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::{
    auth::{AdapterReader, Admin, Authed},
    decode, internal, json, no_content, problem,
};
use crate::emulator::{
    App,
    runtime::Report,
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

fn row(app: &App, kind: &str) -> Result<AdapterRow, Response> {
    app.store().adapter(kind).cloned().ok_or_else(|| problem(StatusCode::NOT_FOUND, "Adapter not found"))
}

/// The port an adapter binds: its stored port, or the type's default for 0.
fn resolved_port(row: &AdapterRow) -> i64 {
    match (row.port, default_port(&row.kind)) {
        (0, Some(default)) => i64::from(default),
        (port, _) => port,
    }
}

pub async fn list(_reader: AdapterReader, State(app): State<Arc<App>>) -> Response {
    let mut out = Vec::new();
    for row in rows(&app) {
        out.push(response(&app, row, None).await);
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

pub async fn ports(_authed: Authed, State(app): State<Arc<App>>) -> Response {
    let mut out = Vec::new();
    for row in rows(&app) {
        let running = app.runtime.is_running(&row.kind).await;
        out.push(PortResponse { kind: row.kind, port: row.port, enabled: row.enabled, running });
    }
    json(StatusCode::OK, &out)
}

pub async fn get(_admin: Admin, State(app): State<Arc<App>>, Path(kind): Path<String>) -> Response {
    match row(&app, &kind) {
        Ok(row) => json(StatusCode::OK, &response(&app, row, None).await),
        Err(r) => r,
    }
}

pub async fn status(_admin: Admin, State(app): State<Arc<App>>, Path(kind): Path<String>) -> Response {
    match row(&app, &kind) {
        Ok(_) => json(StatusCode::OK, &app.runtime.status(&kind).await),
        Err(r) => r,
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

pub async fn create(_admin: Admin, State(app): State<Arc<App>>, body: Bytes) -> Response {
    let req: CreateAdapter = match decode(&body) {
        Ok(req) => req,
        Err(r) => return r,
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
        config: req.config,
        created_at: now,
        updated_at: now,
    };
    if default_port(&row.kind).is_none() {
        // The factory knows only nfs and smb; the real server rolls the row back.
        return internal("Failed to create adapter");
    }
    let created = app.store().create_adapter(row);
    match created {
        Ok(row) => {
            app.runtime.start(&row.kind, resolved_port(&row)).await;
            json(StatusCode::CREATED, &response(&app, row, Some(false)).await)
        }
        Err(StoreError::DuplicateAdapter) => problem(StatusCode::CONFLICT, "Adapter already exists"),
        Err(_) => internal("Failed to create adapter"),
    }
}

#[derive(Debug, Deserialize)]
pub struct UpdateAdapter {
    enabled: Option<bool>,
    port: Option<i64>,
    config: Option<Map<String, Value>>,
}

pub async fn update(_admin: Admin, State(app): State<Arc<App>>, Path(kind): Path<String>, body: Bytes) -> Response {
    let req: UpdateAdapter = match decode(&body) {
        Ok(req) => req,
        Err(r) => return r,
    };
    let mut row = match row(&app, &kind) {
        Ok(row) => row,
        Err(r) => return r,
    };
    row.enabled = req.enabled.unwrap_or(row.enabled);
    row.port = req.port.unwrap_or(row.port);
    if req.config.is_some() {
        row.config = req.config;
    }
    row.updated_at = Timestamp::now();
    if app.store().save_adapter(row.clone()).is_err() {
        return internal("Failed to update adapter");
    }
    reload(&app, &row).await;
    json(StatusCode::OK, &response(&app, row, None).await)
}

/// `Service.UpdateAdapter`: a running, still-enabled adapter on the same port is left alone (so a failed
/// bind is not retried); anything else is stopped (listener closed before we answer) and started if enabled.
async fn reload(app: &App, row: &AdapterRow) {
    let port = resolved_port(row);
    let current = app.runtime.running_port(&row.kind).await;
    if row.enabled && current == Some(port) {
        return;
    }
    if current.is_some() || app.runtime.is_running(&row.kind).await {
        app.runtime.stop(&row.kind).await;
    }
    if row.enabled {
        app.runtime.start(&row.kind, port).await;
    }
}

pub async fn delete(_admin: Admin, State(app): State<Arc<App>>, Path(kind): Path<String>) -> Response {
    if let Err(r) = row(&app, &kind) {
        return r;
    }
    app.runtime.stop(&kind).await;
    let deleted = app.store().delete_adapter(&kind);
    app.runtime.evict_status(&kind);
    match deleted {
        Ok(_) => no_content(),
        Err(_) => internal("Failed to delete adapter"),
    }
}
