//! Login, refresh and `me`, and the auth middleware as extractors: `JWTAuth` → `RequirePasswordChange` → role.
//!
//! Middleware refusals are plain text (Go `http.Error`); handler errors are problems. Authorization reads the
//! role from the token's claims, so a deleted user's access token keeps working until it expires.

use std::sync::Arc;

use axum::{
    body::Bytes,
    extract::{FromRequestParts, State},
    http::{StatusCode, header, request::Parts},
    response::Response,
};
use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};

use super::{decode, internal, json, problem, text};
use crate::emulator::{
    App,
    jwt::{Claims, TokenError},
    store::{self, User},
};

/// `UserResponse`: the sanitized user, with the real omitempty rules.
#[derive(Debug, Serialize)]
pub struct UserResponse {
    id: String,
    username: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    display_name: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    email: String,
    role: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    uid: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    gid: Option<u32>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    groups: Vec<String>,
    enabled: bool,
    must_change_password: bool,
    created_at: Timestamp,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_login: Option<Timestamp>,
}

impl From<&User> for UserResponse {
    fn from(u: &User) -> Self {
        UserResponse {
            id: u.id.clone(),
            username: u.username.clone(),
            display_name: u.display_name.clone(),
            email: u.email.clone(),
            role: u.role.clone(),
            uid: u.uid,
            gid: u.gid,
            groups: u.groups.clone(),
            enabled: u.enabled,
            must_change_password: u.must_change_password,
            created_at: u.created_at,
            last_login: u.last_login,
        }
    }
}

#[derive(Debug, Serialize)]
pub struct LoginResponse {
    access_token: String,
    refresh_token: String,
    token_type: &'static str,
    expires_in: i64,
    expires_at: Timestamp,
    user: UserResponse,
}

/// Issues a fresh access/refresh pair for `user`.
pub fn issue_tokens(app: &App, user: &User) -> LoginResponse {
    let now = Timestamp::now();
    let claims = |token_type: &str, ttl: std::time::Duration| Claims {
        iss: "dittofs".into(),
        sub: user.username.clone(),
        exp: now.as_second() + ttl.as_secs() as i64,
        iat: now.as_second(),
        uid: user.id.clone(),
        username: user.username.clone(),
        role: user.role.clone(),
        groups: user.groups.clone(),
        token_type: token_type.into(),
        must_change_password: user.must_change_password,
    };
    let access_ttl = app.config.access_ttl;
    LoginResponse {
        access_token: app.signer.sign(&claims("access", access_ttl)),
        refresh_token: app.signer.sign(&claims("refresh", app.config.refresh_ttl)),
        token_type: "Bearer",
        expires_in: access_ttl.as_secs() as i64,
        expires_at: now + SignedDuration::try_from(access_ttl).expect("token lifetimes fit"),
        user: UserResponse::from(user),
    }
}

#[derive(Debug, Deserialize)]
struct LoginRequest {
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
}

pub async fn login(State(app): State<Arc<App>>, body: Bytes) -> Response {
    let req: LoginRequest = match decode(&body) {
        Ok(req) => req,
        Err(r) => return r,
    };
    if req.username.is_empty() || req.password.is_empty() {
        return problem(StatusCode::BAD_REQUEST, "Username and password are required");
    }
    let Some(user) = app.store().user(&req.username).cloned() else {
        return problem(StatusCode::UNAUTHORIZED, "Invalid username or password");
    };
    // bcrypt is slow on purpose: verify outside the store lock.
    let hash = user.password_hash.clone();
    let password = req.password;
    let ok = tokio::task::spawn_blocking(move || store::verify_password(&password, &hash)).await.unwrap_or(false);
    if !ok {
        return problem(StatusCode::UNAUTHORIZED, "Invalid username or password");
    }
    if !user.enabled {
        return problem(StatusCode::FORBIDDEN, "User account is disabled");
    }
    let updated = app.store().update_user(&user.username, |u| u.last_login = Some(Timestamp::now()));
    match updated {
        Ok(Some(user)) => json(StatusCode::OK, &issue_tokens(&app, &user)),
        _ => internal("Authentication failed"),
    }
}

#[derive(Debug, Deserialize)]
struct RefreshRequest {
    #[serde(default)]
    refresh_token: String,
}

pub async fn refresh(State(app): State<Arc<App>>, body: Bytes) -> Response {
    let req: RefreshRequest = match decode(&body) {
        Ok(req) => req,
        Err(r) => return r,
    };
    if req.refresh_token.is_empty() {
        return problem(StatusCode::BAD_REQUEST, "Refresh token is required");
    }
    let claims = match app.signer.verify(&req.refresh_token, Timestamp::now().as_second()) {
        Ok(c) if c.token_type == "refresh" => c,
        Err(TokenError::Expired) => return problem(StatusCode::UNAUTHORIZED, "Refresh token has expired"),
        _ => return problem(StatusCode::UNAUTHORIZED, "Invalid refresh token"),
    };
    let Some(user) = app.store().user(&claims.username).cloned() else {
        return problem(StatusCode::UNAUTHORIZED, "User not found");
    };
    if !user.enabled {
        return problem(StatusCode::FORBIDDEN, "User account is disabled");
    }
    json(StatusCode::OK, &issue_tokens(&app, &user))
}

pub async fn me(State(app): State<Arc<App>>, Ungated(claims): Ungated) -> Response {
    match app.store().user(&claims.username) {
        Some(user) => json(StatusCode::OK, &UserResponse::from(user)),
        None => problem(StatusCode::UNAUTHORIZED, "User not found"),
    }
}

/// `JWTAuth`: a valid, unexpired access token.
fn authenticate(parts: &Parts, app: &App) -> Result<Claims, Response> {
    let token = parts
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, token)| scheme.eq_ignore_ascii_case("bearer") && !token.is_empty())
        .map(|(_, token)| token.to_string())
        .ok_or_else(|| text(StatusCode::UNAUTHORIZED, "Authorization header required"))?;
    match app.signer.verify(&token, Timestamp::now().as_second()) {
        Ok(claims) if claims.token_type == "access" => Ok(claims),
        _ => Err(text(StatusCode::UNAUTHORIZED, "Invalid or expired token")),
    }
}

/// `RequirePasswordChange`: the claim, not the database row, decides.
fn require_password_set(claims: Claims) -> Result<Claims, Response> {
    if claims.must_change_password {
        let u = &claims.username;
        return Err(text(
            StatusCode::FORBIDDEN,
            &format!(
                "account {u:?} must set a new password before performing other operations; run 'dfsctl user change-password' (as {u:?}) to set one"
            ),
        ));
    }
    Ok(claims)
}

/// Authenticated, exempt from the must-change-password gate (`/auth/me`, `/users/me/password`).
#[derive(Debug)]
pub struct Ungated(pub Claims);

/// Authenticated and past the must-change-password gate.
#[derive(Debug)]
pub struct Authed(pub Claims);

/// `RequireAdmin`.
#[derive(Debug)]
pub struct Admin;

/// `RequireRole("admin", "operator")`, used only by `GET /api/v1/adapters`.
#[derive(Debug)]
pub struct AdapterReader;

impl FromRequestParts<Arc<App>> for Ungated {
    type Rejection = Response;
    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> Result<Self, Response> {
        authenticate(parts, app).map(Ungated)
    }
}

impl FromRequestParts<Arc<App>> for Authed {
    type Rejection = Response;
    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> Result<Self, Response> {
        authenticate(parts, app).and_then(require_password_set).map(Authed)
    }
}

impl FromRequestParts<Arc<App>> for Admin {
    type Rejection = Response;
    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> Result<Self, Response> {
        let claims = authenticate(parts, app).and_then(require_password_set)?;
        if claims.role != "admin" {
            return Err(text(StatusCode::FORBIDDEN, "Admin access required"));
        }
        Ok(Admin)
    }
}

impl FromRequestParts<Arc<App>> for AdapterReader {
    type Rejection = Response;
    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> Result<Self, Response> {
        let claims = authenticate(parts, app).and_then(require_password_set)?;
        if claims.role != "admin" && claims.role != "operator" {
            return Err(text(StatusCode::FORBIDDEN, "Insufficient permissions"));
        }
        Ok(AdapterReader)
    }
}
