//! The emulator's HTTP surface: routes, request logging, fault injection and the two error body styles.
//!
//! Handler errors are `application/problem+json`; auth middleware errors are Go `http.Error` plain text
//! (reference §1.5, §4). Every non-`/health*` request is logged at INFO as "API request completed".

mod adapters;
mod auth;
mod health;
mod users;

use std::{sync::Arc, time::Instant};

use axum::{
    Router,
    body::{Body, Bytes},
    extract::{DefaultBodyLimit, Request, State},
    http::{HeaderValue, StatusCode, header},
    middleware::{self, Next},
    response::{IntoResponse, Response},
    routing::{any, get, post},
};
use serde::{Serialize, de::DeserializeOwned};

use super::{App, faults};

/// `maxRequestBodyBytes` of the real handlers.
const MAX_BODY: usize = 1 << 20;

pub fn router(app: Arc<App>) -> Router {
    let api = Router::new()
        .route("/auth/login", post(auth::login))
        .route("/auth/refresh", post(auth::refresh))
        .route("/auth/me", get(auth::me))
        .route("/users", get(users::list).post(users::create))
        .route("/users/", post(users::create))
        .route("/users/me/password", post(users::change_own_password))
        .route("/users/{username}", get(users::get).put(users::update).delete(users::delete))
        .route("/users/{username}/password", post(users::reset_password))
        .route("/adapters", get(adapters::list).post(adapters::create))
        .route("/adapters/ports", get(adapters::ports))
        .route("/adapters/{kind}", get(adapters::get).put(adapters::update).delete(adapters::delete))
        .route("/adapters/{kind}/status", get(adapters::status))
        .route("/adapters/{kind}/settings", any(not_emulated))
        .route("/adapters/{kind}/settings/{*rest}", any(not_emulated));
    // Admin-only areas the operator role must be refused on; their contents are not emulated.
    let api = ["shares", "store", "settings", "clients", "mounts", "grace"].iter().fold(api, |api, area| {
        api.route(&format!("/{area}"), any(not_emulated)).route(&format!("/{area}/{{*rest}}"), any(not_emulated))
    });
    Router::new()
        .route("/", get(|| async { (StatusCode::TEMPORARY_REDIRECT, [(header::LOCATION, "/health")]) }))
        .route("/health", get(health::live))
        .route("/health/ready", get(health::ready))
        .nest("/api/v1", api)
        .fallback(|| async { text(StatusCode::NOT_FOUND, "404 page not found") })
        .layer(DefaultBodyLimit::max(8 * MAX_BODY))
        .layer(middleware::from_fn_with_state(app.clone(), inject_faults))
        .layer(middleware::from_fn_with_state(app.clone(), log_requests))
        .with_state(app)
}

/// Admin-gated routes whose behaviour the emulator does not implement: honest 501 instead of a fake answer.
async fn not_emulated(_admin: auth::Admin) -> Response {
    problem(StatusCode::NOT_IMPLEMENTED, "not implemented by dittofs-emulator")
}

async fn log_requests(State(app): State<Arc<App>>, req: Request, next: Next) -> Response {
    let start = Instant::now();
    let (method, path) = (req.method().to_string(), req.uri().path().to_string());
    let request_id = app.next_request_id();
    let response = next.run(req).await;
    let status = response.status().as_u16().to_string();
    let duration = format!("{:?}", start.elapsed());
    let attrs = [
        ("request_id", request_id.as_str()),
        ("method", method.as_str()),
        ("path", path.as_str()),
        ("status", status.as_str()),
        ("duration", duration.as_str()),
    ];
    if path.starts_with("/health") {
        app.log.debug("API request completed", &attrs);
    } else {
        app.log.info("API request completed", &attrs);
    }
    response
}

async fn inject_faults(State(app): State<Arc<App>>, req: Request, next: Next) -> Response {
    let Some(file) = &app.config.faults_file else { return next.run(req).await };
    let action = match faults::find(file, req.method().as_str(), req.uri().path()) {
        Ok(action) => action,
        Err(e) => return problem(StatusCode::INTERNAL_SERVER_ERROR, &format!("dittofs-emulator faults file: {e}")),
    };
    let Some(action) = action else { return next.run(req).await };
    app.log.warn("Injecting fault", &[("path", req.uri().path()), ("fault", &format!("{action:?}"))]);
    match action {
        faults::Action::Status(code) => {
            problem(StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR), "injected fault")
        }
        faults::Action::Garbage => json_bytes(StatusCode::OK, Bytes::from_static(b"{\"adapters\": [tru")),
        faults::Action::Delay(d) => {
            tokio::time::sleep(d).await;
            next.run(req).await
        }
        faults::Action::Oversize(size) => {
            let mut body = Vec::with_capacity(size.max(2));
            body.push(b'[');
            body.resize(size.saturating_sub(1).max(1), b' ');
            body.push(b']');
            json_bytes(StatusCode::OK, body.into())
        }
    }
}

/// A Go `http.Error` response: plain text with a trailing newline.
pub(crate) fn text(status: StatusCode, message: &str) -> Response {
    let mut response = (status, format!("{message}\n")).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    headers.insert("x-content-type-options", HeaderValue::from_static("nosniff"));
    response
}

/// An RFC 7807 problem as written by `handlers/problem.go`.
pub(crate) fn problem(status: StatusCode, detail: &str) -> Response {
    let body = serde_json::json!({
        "type": "about:blank",
        "title": status.canonical_reason().unwrap_or("Error"),
        "status": status.as_u16(),
        "detail": detail,
    });
    let mut response = json_bytes(status, format!("{body}\n").into());
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/problem+json"));
    response
}

pub(crate) fn json<T: Serialize>(status: StatusCode, value: &T) -> Response {
    let mut body = serde_json::to_vec(value).expect("response types always serialize");
    body.push(b'\n');
    json_bytes(status, body.into())
}

fn json_bytes(status: StatusCode, body: Bytes) -> Response {
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

pub(crate) fn no_content() -> Response {
    StatusCode::NO_CONTENT.into_response()
}

/// `decodeJSONBody`: 413 problem over 1 MiB, 400 "Invalid request body" for anything that is not the JSON shape.
pub(crate) fn decode<T: DeserializeOwned>(body: &Bytes) -> Result<T, Response> {
    if body.len() > MAX_BODY {
        return Err(problem(StatusCode::PAYLOAD_TOO_LARGE, "request body exceeds the 1 MiB limit"));
    }
    serde_json::from_slice(body).map_err(|_| problem(StatusCode::BAD_REQUEST, "Invalid request body"))
}

/// Maps a database failure to the handler's generic 500.
pub(crate) fn internal(detail: &str) -> Response {
    problem(StatusCode::INTERNAL_SERVER_ERROR, detail)
}
