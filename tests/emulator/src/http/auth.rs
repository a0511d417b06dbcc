//! Login, refresh and `me`, and the auth middleware (`JWTAuth` → `RequirePasswordChange` → role) as gates.
//!
//! Middleware refusals are plain text (Go `http.Error`); handler errors are problems. Authorization reads the
//! role from the token's claims, so a deleted user's access token keeps working until it expires.

use axum::{
    http::{HeaderMap, StatusCode, header},
    response::Response,
};
use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};

use super::{decode, gojson::Body, internal, json, problem, routes::Gate, text};
pub use crate::jwt::Claims;
use crate::{
    App,
    jwt::TokenError,
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
    let expiry = |ttl: std::time::Duration| now + SignedDuration::try_from(ttl).expect("token lifetimes fit");
    // `jwt.NewNumericDate` truncates the exact expiry to the second.
    let claims = |token_type: &str, ttl: std::time::Duration| Claims {
        iss: "dittofs".into(),
        sub: user.username.clone(),
        exp: expiry(ttl).as_second(),
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
        expires_at: expiry(access_ttl),
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

/// `ValidateCredentials` checks `enabled` before the password, so a disabled account is 403 even with a
/// wrong password.
pub async fn login(app: &App, body: &Body) -> Response {
    let req: LoginRequest = match decode(body) {
        Ok(req) => req,
        Err(r) => return *r,
    };
    if req.username.is_empty() || req.password.is_empty() {
        return problem(StatusCode::BAD_REQUEST, "Username and password are required");
    }
    let Some(user) = app.store().user(&req.username).cloned() else {
        return problem(StatusCode::UNAUTHORIZED, "Invalid username or password");
    };
    if !user.enabled {
        return problem(StatusCode::FORBIDDEN, "User account is disabled");
    }
    // bcrypt is slow on purpose: verify outside the store lock.
    let hash = user.password_hash.clone();
    let password = req.password;
    let ok = tokio::task::spawn_blocking(move || store::verify_password(&password, &hash)).await.unwrap_or(false);
    if !ok {
        return problem(StatusCode::UNAUTHORIZED, "Invalid username or password");
    }
    let updated = app.store().update_user(&user.username, |u| u.last_login = Some(Timestamp::now()));
    match updated {
        Ok(Some(user)) => json(StatusCode::OK, &issue_tokens(app, &user)),
        _ => internal("Authentication failed"),
    }
}

#[derive(Debug, Deserialize)]
struct RefreshRequest {
    #[serde(default)]
    refresh_token: String,
}

pub async fn refresh(app: &App, body: &Body) -> Response {
    let req: RefreshRequest = match decode(body) {
        Ok(req) => req,
        Err(r) => return *r,
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
    json(StatusCode::OK, &issue_tokens(app, &user))
}

pub fn me(app: &App, claims: &Claims) -> Response {
    match app.store().user(&claims.username) {
        Some(user) => json(StatusCode::OK, &UserResponse::from(user)),
        None => problem(StatusCode::UNAUTHORIZED, "User not found"),
    }
}

/// `JWTAuth`: `Authorization: <bearer, any case> <token>`; an empty token is a bad token, not a missing one.
fn authenticate(headers: &HeaderMap, app: &App) -> Result<Claims, Box<Response>> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token)
        .ok_or_else(|| Box::new(text(StatusCode::UNAUTHORIZED, "Authorization header required")))?;
    match app.signer.verify(token, Timestamp::now().as_second()) {
        Ok(claims) if claims.token_type == "access" => Ok(claims),
        _ => Err(Box::new(text(StatusCode::UNAUTHORIZED, "Invalid or expired token"))),
    }
}

/// Runs one middleware of the chain; `claims` carries what `JWTAuth` put in the request context.
/// Refusals are boxed: a `Response` is too large to travel in an `Err` cheaply.
pub fn check(gate: Gate, app: &App, headers: &HeaderMap, claims: &mut Option<Claims>) -> Result<(), Box<Response>> {
    if gate == Gate::Jwt {
        *claims = Some(authenticate(headers, app)?);
        return Ok(());
    }
    let Some(claims) = claims.as_ref() else {
        return Err(Box::new(text(StatusCode::UNAUTHORIZED, "Authentication required")));
    };
    match gate {
        Gate::Jwt => Ok(()),
        // The claim, not the database row, decides.
        Gate::PasswordChanged if claims.must_change_password => {
            let u = &claims.username;
            Err(Box::new(text(
                StatusCode::FORBIDDEN,
                &format!(
                    "account {u:?} must set a new password before performing other operations; run 'dfsctl user change-password' (as {u:?}) to set one"
                ),
            )))
        }
        Gate::PasswordChanged => Ok(()),
        Gate::Admin if claims.role != "admin" => Err(Box::new(text(StatusCode::FORBIDDEN, "Admin access required"))),
        Gate::AdapterReader if claims.role != "admin" && claims.role != "operator" => {
            Err(Box::new(text(StatusCode::FORBIDDEN, "Insufficient permissions")))
        }
        Gate::Admin | Gate::AdapterReader => Ok(()),
    }
}
