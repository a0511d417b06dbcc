//! Users API (`handlers/users.go`): admin-only except reading oneself and changing one's own password.

use std::collections::BTreeMap;

use axum::{http::StatusCode, response::Response};
use jiff::Timestamp;
use serde::Deserialize;

use super::{
    auth::{Claims, UserResponse, issue_tokens},
    decode,
    gojson::Body,
    internal, json, no_content, problem,
};
use crate::{
    App,
    store::{self, DEFAULT_GROUPS, StoreError, User},
};

const INVALID_ROLE: &str = "Invalid role. Must be 'user', 'admin', or 'operator'";
const UNKNOWN_GROUP: &str = "One or more specified groups do not exist";

fn valid_role(role: &str) -> bool {
    matches!(role, "user" | "admin" | "operator")
}

fn groups_exist(groups: &[String]) -> bool {
    groups.iter().all(|g| DEFAULT_GROUPS.contains(&g.as_str()))
}

/// Hashing is CPU-heavy (bcrypt cost 10): keep it off the async workers.
async fn hash(password: String) -> Result<String, StoreError> {
    tokio::task::spawn_blocking(move || store::hash_password(&password)).await.unwrap_or(Err(StoreError::BadPassword))
}

#[derive(Debug, Deserialize)]
pub struct CreateUser {
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    role: String,
    #[serde(default)]
    email: String,
    #[serde(default)]
    display_name: String,
    uid: Option<u32>,
    gid: Option<u32>,
    #[serde(default)]
    groups: Vec<String>,
    #[allow(dead_code)] // read and then lost to GORM's `default:true`, as in the real server
    enabled: Option<bool>,
    #[allow(dead_code)] // type-checked like Go's map[string]SharePermission, then ignored: no shares here
    share_permissions: Option<BTreeMap<String, String>>,
}

/// GORM's `default:true` on `enabled` turns a requested `false` into `true`, as it does for adapters.
pub async fn create(app: &App, body: &Body) -> Response {
    let req: CreateUser = match decode(body) {
        Ok(req) => req,
        Err(r) => return *r,
    };
    if req.username.is_empty() {
        return problem(StatusCode::BAD_REQUEST, "Username is required");
    }
    if req.password.is_empty() {
        return problem(StatusCode::BAD_REQUEST, "Password is required");
    }
    // The real handler hashes before it validates the role, so a short password wins over a bad role.
    let Ok(password_hash) = hash(req.password).await else { return internal("Failed to hash password") };
    let role = if req.role.is_empty() { "user".to_string() } else { req.role };
    if !valid_role(&role) {
        return problem(StatusCode::BAD_REQUEST, INVALID_ROLE);
    }
    if !groups_exist(&req.groups) {
        return problem(StatusCode::BAD_REQUEST, UNKNOWN_GROUP);
    }
    let user = User {
        id: uuid::Uuid::new_v4().to_string(),
        username: req.username,
        password_hash,
        must_change_password: role == "admin",
        role,
        display_name: req.display_name,
        email: req.email,
        uid: req.uid,
        gid: req.gid,
        groups: req.groups,
        enabled: true,
        created_at: Timestamp::now(),
        last_login: None,
    };
    match app.store().create_user(user) {
        Ok(user) => json(StatusCode::CREATED, &UserResponse::from(&user)),
        Err(StoreError::DuplicateUser) => problem(StatusCode::CONFLICT, "User already exists"),
        Err(_) => internal("Failed to create user"),
    }
}

pub fn list(app: &App) -> Response {
    let users: Vec<UserResponse> = app.store().users().map(UserResponse::from).collect();
    json(StatusCode::OK, &users)
}

pub fn get(app: &App, claims: &Claims, username: &str) -> Response {
    if claims.role != "admin" && claims.username != username {
        return problem(StatusCode::FORBIDDEN, "Access denied");
    }
    match app.store().user(username) {
        Some(user) => json(StatusCode::OK, &UserResponse::from(user)),
        None => problem(StatusCode::NOT_FOUND, "User not found"),
    }
}

#[derive(Debug, Deserialize)]
pub struct UpdateUser {
    email: Option<String>,
    display_name: Option<String>,
    role: Option<String>,
    uid: Option<u32>,
    gid: Option<u32>,
    groups: Option<Vec<String>>,
    enabled: Option<bool>,
    #[allow(dead_code)] // type-checked like Go's map[string]SharePermission, then ignored: no shares here
    share_permissions: Option<BTreeMap<String, String>>,
}

/// The real order: fields are written first (a uid another user holds fails the write with 500), then the
/// groups are replaced — so an unknown group is a 400 that still leaves the other fields changed.
pub fn update(app: &App, username: &str, body: &Body) -> Response {
    let req: UpdateUser = match decode(body) {
        Ok(req) => req,
        Err(r) => return *r,
    };
    if app.store().user(username).is_none() {
        return problem(StatusCode::NOT_FOUND, "User not found");
    }
    if req.role.as_deref().is_some_and(|r| !valid_role(r)) {
        return problem(StatusCode::BAD_REQUEST, INVALID_ROLE);
    }
    let updated = app.store().update_user(username, |u| {
        u.email = req.email.unwrap_or(u.email.clone());
        u.display_name = req.display_name.unwrap_or(u.display_name.clone());
        u.role = req.role.unwrap_or(u.role.clone());
        u.uid = req.uid.or(u.uid);
        u.gid = req.gid.or(u.gid);
        u.enabled = req.enabled.unwrap_or(u.enabled);
    });
    match updated {
        Ok(Some(_)) => {}
        Ok(None) => return problem(StatusCode::NOT_FOUND, "User not found"),
        Err(_) => return internal("Failed to update user"),
    }
    if let Some(groups) = req.groups {
        if !groups_exist(&groups) {
            return problem(StatusCode::BAD_REQUEST, UNKNOWN_GROUP);
        }
        if app.store().update_user(username, |u| u.groups = groups).is_err() {
            return internal("Failed to update user groups");
        }
    }
    match app.store().user(username) {
        Some(user) => json(StatusCode::OK, &UserResponse::from(user)),
        None => internal("Failed to reload user"),
    }
}

pub fn delete(app: &App, key: &str) -> Response {
    let mut store = app.store();
    let Some(username) = store.user_by_name_or_id(key).map(|u| u.username.clone()) else {
        return problem(StatusCode::NOT_FOUND, "User not found");
    };
    // Guarded by name even when addressed by id (`store/users.go` DeleteUser).
    if username == "admin" {
        return problem(StatusCode::FORBIDDEN, "Cannot delete admin user");
    }
    match store.delete_user(&username) {
        Ok(_) => no_content(),
        Err(_) => internal("Failed to delete user"),
    }
}

#[derive(Debug, Deserialize)]
pub struct ChangePassword {
    #[serde(default)]
    current_password: String,
    #[serde(default)]
    new_password: String,
}

/// Admin reset; sets must-change again only for admins.
pub async fn reset_password(app: &App, username: &str, body: &Body) -> Response {
    // chi lets `/users//password` through with an empty name.
    if username.is_empty() {
        return problem(StatusCode::BAD_REQUEST, "Username is required");
    }
    let req: ChangePassword = match decode(body) {
        Ok(req) => req,
        Err(r) => return *r,
    };
    if req.new_password.is_empty() {
        return problem(StatusCode::BAD_REQUEST, "New password is required");
    }
    if app.store().user(username).is_none() {
        return problem(StatusCode::NOT_FOUND, "User not found");
    }
    let Ok(password_hash) = hash(req.new_password).await else { return internal("Failed to hash password") };
    let updated = app.store().update_user(username, |u| {
        u.password_hash = password_hash;
        u.must_change_password = u.role == "admin";
    });
    match updated {
        Ok(Some(_)) => no_content(),
        Ok(None) => problem(StatusCode::NOT_FOUND, "User not found"),
        Err(_) => internal("Failed to update password"),
    }
}

/// `POST /users/me/password`: returns a fresh token pair, since old tokens keep the must-change claim.
pub async fn change_own_password(app: &App, claims: &Claims, body: &Body) -> Response {
    let req: ChangePassword = match decode(body) {
        Ok(req) => req,
        Err(r) => return *r,
    };
    if req.new_password.is_empty() {
        return problem(StatusCode::BAD_REQUEST, "New password is required");
    }
    let Some(user) = app.store().user(&claims.username).cloned() else {
        return problem(StatusCode::UNAUTHORIZED, "User not found");
    };
    if !user.must_change_password {
        if req.current_password.is_empty() {
            return problem(StatusCode::BAD_REQUEST, "Current password is required");
        }
        let (current, hash_of_current) = (req.current_password, user.password_hash.clone());
        let ok = tokio::task::spawn_blocking(move || store::verify_password(&current, &hash_of_current))
            .await
            .unwrap_or(false);
        if !ok {
            return problem(StatusCode::UNAUTHORIZED, "Current password is incorrect");
        }
    }
    let Ok(password_hash) = hash(req.new_password).await else { return internal("Failed to hash password") };
    let updated = app.store().update_user(&user.username, |u| {
        u.password_hash = password_hash;
        u.must_change_password = false;
    });
    match updated {
        Ok(Some(user)) => json(StatusCode::OK, &issue_tokens(app, &user)),
        _ => internal("Failed to update password"),
    }
}
