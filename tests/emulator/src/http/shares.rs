//! Stores and shares (`handlers/metadata_stores.go`, `block_stores.go`, `shares.go`), as far as a test needs
//! them to create a share for a snapshot policy: `POST /store/metadata`, `POST /store/block/{kind}`,
//! `POST /shares` and `DELETE /shares/{name}`, all admin-only. The stores hold no data (nothing is served
//! over NFS or SMB here); the answers have the real shapes, defaults and error texts. Listing, reading and
//! updating stores and shares answer 501.

use axum::{http::StatusCode, response::Response};
use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::{decode, gojson::Body, internal, json, no_content, problem};
use crate::{
    App,
    store::{ShareRow, StoreError, StoreRow},
};

/// `normalizeShareName`: the URL parameter path-unescaped (chi hands it over raw when the path held an
/// escaped slash), with exactly one leading slash.
pub fn normalize_share_name(name: &str) -> String {
    format!("/{}", super::percent_decode(name).trim_start_matches('/'))
}

#[derive(Debug, Deserialize)]
pub struct CreateStore {
    #[serde(default)]
    name: String,
    #[serde(default, rename = "type")]
    store_type: String,
}

/// `health.Report` of a store or share just created (no probe has failed yet).
#[derive(Serialize)]
struct Health {
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    message: Option<&'static str>,
    checked_at: Timestamp,
}

#[derive(Serialize)]
struct StoreResponse<'a> {
    id: &'a str,
    name: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    kind: &'a str,
    #[serde(rename = "type")]
    store_type: &'a str,
    created_at: Timestamp,
    status: Health,
}

/// The block-store types of each kind (`models.BlockStoreKind` validation).
fn valid_block_type(kind: &str, store_type: &str) -> bool {
    matches!((kind, store_type), ("local", "fs" | "memory") | ("remote", "s3" | "memory"))
}

/// `POST /store/metadata` (`kind` empty) and `POST /store/block/{kind}`.
pub fn create_store(app: &App, kind: Option<&str>, body: &Body) -> Response {
    if let Some(kind) = kind
        && !matches!(kind, "local" | "remote")
    {
        return problem(StatusCode::BAD_REQUEST, "Invalid block store kind: must be 'local' or 'remote'");
    }
    let req: CreateStore = match decode(body) {
        Ok(req) => req,
        Err(r) => return *r,
    };
    if req.name.is_empty() {
        return problem(StatusCode::BAD_REQUEST, "Store name is required");
    }
    if req.store_type.is_empty() {
        return problem(StatusCode::BAD_REQUEST, "Store type is required");
    }
    let kind = kind.unwrap_or_default();
    if !kind.is_empty() && !valid_block_type(kind, &req.store_type) {
        let detail = format!("Store type '{}' is not valid for kind '{kind}'", req.store_type);
        return problem(StatusCode::BAD_REQUEST, &detail);
    }
    let row = StoreRow {
        id: uuid::Uuid::new_v4().to_string(),
        name: req.name,
        kind: kind.to_owned(),
        store_type: req.store_type,
        created_at: Timestamp::now(),
    };
    let row = match app.store().create_store(row) {
        Ok(row) => row,
        Err(StoreError::DuplicateStore) if kind.is_empty() => {
            return problem(StatusCode::CONFLICT, "Metadata store already exists");
        }
        Err(StoreError::DuplicateStore) => return problem(StatusCode::CONFLICT, "Block store already exists"),
        Err(_) => return internal("Failed to create store"),
    };
    let message = (row.store_type == "memory" && !kind.is_empty()).then_some("in-memory store is always healthy");
    let status = Health { status: "healthy", message, checked_at: Timestamp::now() };
    let response = StoreResponse {
        id: &row.id,
        name: &row.name,
        kind: &row.kind,
        store_type: &row.store_type,
        created_at: row.created_at,
        status,
    };
    json(StatusCode::CREATED, &response)
}

#[derive(Debug, Deserialize)]
pub struct CreateShare {
    #[serde(default)]
    name: String,
    #[serde(default)]
    metadata_store_id: String,
    #[serde(default)]
    local_block_store: String,
    #[serde(default)]
    read_only: bool,
    #[serde(default)]
    default_permission: String,
}

/// `ShareResponse` of a share just created: the real defaults of every field a create leaves unset.
#[derive(Serialize)]
struct ShareResponse<'a> {
    id: &'a str,
    name: &'a str,
    metadata_store_id: &'a str,
    local_block_store_id: &'a str,
    remote_block_store_id: Option<&'a str>,
    read_only: bool,
    enabled: bool,
    encrypt_data: bool,
    default_permission: &'a str,
    retention_policy: &'static str,
    used_bytes: i64,
    physical_bytes: i64,
    usage_percent: i64,
    acl_flag_inherited_canonicalization: bool,
    access_based_enumeration: bool,
    change_notify_disabled: bool,
    streams_disabled: bool,
    continuous_availability: bool,
    allow_mfsymlink: bool,
    trash_enabled: bool,
    trash_retention_days: i64,
    trash_restrict_to_admin: bool,
    trash_max_bytes: i64,
    created_at: Timestamp,
    updated_at: Timestamp,
    status: Health,
}

/// `POST /shares`: the name normalized, the stores looked up by name or id, `default_permission` "none"
/// unless given.
pub fn create_share(app: &App, body: &Body) -> Response {
    let req: CreateShare = match decode(body) {
        Ok(req) => req,
        Err(r) => return *r,
    };
    if req.name.is_empty() {
        return problem(StatusCode::BAD_REQUEST, "Share name is required");
    }
    let name = normalize_share_name(&req.name);
    if req.metadata_store_id.is_empty() {
        return problem(StatusCode::BAD_REQUEST, "Metadata store ID is required");
    }
    if req.local_block_store.is_empty() {
        return problem(StatusCode::BAD_REQUEST, "Local block store is required");
    }
    let mut store = app.store();
    let Some(meta) = store.store("", &req.metadata_store_id).cloned() else {
        return problem(StatusCode::BAD_REQUEST, &format!("Metadata store not found: {}", req.metadata_store_id));
    };
    let Some(local) = store.store("local", &req.local_block_store).cloned() else {
        return problem(StatusCode::BAD_REQUEST, &format!("Local block store not found: {}", req.local_block_store));
    };
    let permission = if req.default_permission.is_empty() { "none".to_owned() } else { req.default_permission };
    if !matches!(permission.as_str(), "none" | "read" | "read-write" | "admin") {
        let detail = format!("Invalid default_permission: {permission} (want none|read|read-write|admin)");
        return problem(StatusCode::BAD_REQUEST, &detail);
    }
    let now = Timestamp::now();
    let row = ShareRow {
        id: uuid::Uuid::new_v4().to_string(),
        name,
        metadata_store_id: meta.id,
        local_block_store_id: local.id,
        read_only: req.read_only,
        default_permission: permission,
        created_at: now,
        updated_at: now,
    };
    let row = match store.create_share(row) {
        Ok(row) => row,
        Err(StoreError::DuplicateShare) => return problem(StatusCode::CONFLICT, "Share already exists"),
        Err(_) => return internal("Failed to create share"),
    };
    drop(store);
    let response = ShareResponse {
        id: &row.id,
        name: &row.name,
        metadata_store_id: &row.metadata_store_id,
        local_block_store_id: &row.local_block_store_id,
        remote_block_store_id: None,
        read_only: row.read_only,
        enabled: true,
        encrypt_data: false,
        default_permission: &row.default_permission,
        retention_policy: "lru",
        used_bytes: 0,
        physical_bytes: 0,
        usage_percent: 0,
        acl_flag_inherited_canonicalization: true,
        access_based_enumeration: false,
        change_notify_disabled: false,
        streams_disabled: false,
        continuous_availability: false,
        allow_mfsymlink: false,
        trash_enabled: false,
        trash_retention_days: 0,
        trash_restrict_to_admin: false,
        trash_max_bytes: 0,
        created_at: row.created_at,
        updated_at: row.updated_at,
        status: Health { status: "healthy", message: None, checked_at: Timestamp::now() },
    };
    json(StatusCode::CREATED, &response)
}

/// `DELETE /shares/{name}`: its snapshot policy goes with it.
pub fn delete_share(app: &App, raw: &str) -> Response {
    let name = normalize_share_name(raw);
    if name == "/" {
        return problem(StatusCode::BAD_REQUEST, "Share name is required");
    }
    match app.store().delete_share(&name) {
        Ok(true) => no_content(),
        Ok(false) => problem(StatusCode::NOT_FOUND, "Share not found"),
        Err(_) => internal("Failed to delete share"),
    }
}
