//! The emulator's HTTP surface: chi-style dispatch, request logging, fault injection and the response styles.
//!
//! Handler errors are `application/problem+json`; middleware refusals and chi's 404 are Go `http.Error` plain
//! text (docs/dittofs-api.md#middleware-order-and-status-codes and docs/dittofs-api.md#errors); 405 is an empty
//! body with `Allow` headers. Every request outside `/health` and `/health/…` is logged at INFO as "API request
//! completed" (`/healthz` included), health probes at DEBUG (docs/dittofs-api.md#transport-and-request-logging).

mod adapters;
mod auth;
mod gojson;
mod health;
mod routes;
mod shares;
mod snapshot_policies;
mod users;

use std::{
    sync::{Arc, OnceLock},
    time::Instant,
};

use axum::{
    Router,
    body::{Body, Bytes, HttpBody},
    extract::{Request, State},
    http::{HeaderValue, Method, StatusCode, header},
    middleware::{self, Next},
    response::{IntoResponse, Response},
};
use futures::StreamExt;
use serde::Serialize;

use self::{
    gojson::{Body as ReqBody, DecodeError, MAX_BODY},
    routes::{Endpoint, Target},
};
use super::{App, faults, log::go_duration};

pub fn router(app: Arc<App>) -> Router {
    Router::new()
        .fallback(dispatch)
        .layer(middleware::from_fn_with_state(app.clone(), inject_faults))
        .layer(middleware::from_fn_with_state(app.clone(), log_requests))
        .with_state(app)
}

/// Routes as chi would, runs the gates in chain order, then the handler.
async fn dispatch(State(app): State<Arc<App>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    // Read before answering, refusals included: hyper drops a keep-alive connection whose request body was
    // left unread, where Go drains it and keeps the connection for the client's next request.
    let body = read_body(body).await;
    let route = routes::route(parts.method.as_str(), &routing_path(parts.uri.path()));
    let mut claims = None;
    for gate in &route.gates {
        if let Err(refusal) = auth::check(*gate, &app, &parts.headers, &mut claims) {
            return *refusal;
        }
    }
    let endpoint = match route.target {
        Target::Endpoint(endpoint) => endpoint,
        Target::NotFound => return text(StatusCode::NOT_FOUND, "404 page not found"),
        Target::MethodNotAllowed(allowed) => {
            let mut response = StatusCode::METHOD_NOT_ALLOWED.into_response();
            for method in allowed {
                response.headers_mut().append(header::ALLOW, HeaderValue::from_static(method));
            }
            return response;
        }
    };
    let mut response = handle(&app, endpoint, claims, &body).await;
    // Go's decoder stopped at 1 MiB and the server then closes the connection rather than drain the rest.
    if body.over_limit && response.status() != StatusCode::PAYLOAD_TOO_LARGE {
        response.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

async fn handle(app: &App, endpoint: Endpoint, claims: Option<auth::Claims>, body: &ReqBody) -> Response {
    use Endpoint as E;
    // Every gated endpoint has claims; the real handlers answer this if the middleware were missing.
    let claims = claims.ok_or_else(|| problem(StatusCode::UNAUTHORIZED, "Authentication required"));
    match (endpoint, claims) {
        (E::Redirect, _) => redirect("/health"),
        (E::Live, _) => health::live(app),
        (E::Ready, _) => health::ready(app).await,
        (E::Login, _) => auth::login(app, body).await,
        (E::Refresh, _) => auth::refresh(app, body).await,
        (E::ListPorts, _) => adapters::ports(app).await,
        (E::ListAdapters, _) => adapters::list(app).await,
        (E::CreateAdapter, _) => adapters::create(app, body).await,
        (E::GetAdapter(kind), _) => adapters::get(app, &kind).await,
        (E::UpdateAdapter(kind), _) => adapters::update(app, &kind, body).await,
        (E::DeleteAdapter(kind), _) => adapters::delete(app, &kind).await,
        (E::AdapterStatus(kind), _) => adapters::status(app, &kind).await,
        (E::ListUsers, _) => users::list(app),
        (E::CreateUser, _) => users::create(app, body).await,
        (E::UpdateUser(name), _) => users::update(app, &name, body),
        (E::DeleteUser(key), _) => users::delete(app, &key),
        (E::ResetPassword(name), _) => users::reset_password(app, &name, body).await,
        (E::CreateMetadataStore, _) => shares::create_store(app, None, body),
        (E::CreateBlockStore(kind), _) => shares::create_store(app, Some(&kind), body),
        (E::CreateShare, _) => shares::create_share(app, body),
        (E::DeleteShare(name), _) => shares::delete_share(app, &name),
        (E::PutSnapshotPolicy(name), _) => snapshot_policies::upsert(app, &name, body),
        (E::GetSnapshotPolicy(name), _) => snapshot_policies::get(app, &name),
        (E::DeleteSnapshotPolicy(name), _) => snapshot_policies::delete(app, &name),
        (E::ListSnapshotPolicies, _) => snapshot_policies::list(app),
        (E::NotEmulated, _) => problem(StatusCode::NOT_IMPLEMENTED, "not implemented by dittofs-emulator"),
        (_, Err(refusal)) => refusal,
        (E::Me, Ok(claims)) => auth::me(app, &claims),
        (E::GetUser(name), Ok(claims)) => users::get(app, &claims, &name),
        (E::ChangeOwnPassword, Ok(claims)) => users::change_own_password(app, &claims, body).await,
    }
}

/// The path chi routes on: Go's decoded `URL.Path`, unless re-escaping it would not give the raw path back
/// (then `RawPath`, undecoded), exactly as `url.URL.setPath` decides.
fn routing_path(raw: &str) -> String {
    let decoded = percent_decode(raw);
    if go_escape_path(&decoded) == raw { decoded } else { raw.to_string() }
}

/// `URL.Path` as Go logs it.
fn decoded_path(raw: &str) -> String {
    percent_decode(raw)
}

fn percent_decode(raw: &str) -> String {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok());
        match (bytes[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Go's `escape(s, encodePath)`.
fn go_escape_path(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for byte in path.bytes() {
        if byte.is_ascii_alphanumeric() || b"-_.~$&+,/:;=@".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// Keeps the first 1 MiB, as `http.MaxBytesReader` lets the decoder see, and notes whether there was more.
/// The rest is read and dropped (up to a bound) so the client gets the answer rather than a reset.
async fn read_body(body: Body) -> ReqBody {
    const DRAIN: usize = 8 * MAX_BODY;
    let mut stream = body.into_data_stream();
    let (mut out, mut seen) = (ReqBody::default(), 0);
    while let Some(Ok(chunk)) = stream.next().await {
        seen += chunk.len();
        let room = MAX_BODY.saturating_sub(out.bytes.len());
        out.bytes.extend_from_slice(&chunk[..room.min(chunk.len())]);
        out.over_limit = seen > MAX_BODY;
        if seen > DRAIN {
            break;
        }
    }
    out
}

/// chi's `middleware.RequestID` prefix: `hostname/` + 10 random base64 characters.
fn request_id_prefix() -> &'static str {
    static PREFIX: OnceLock<String> = OnceLock::new();
    PREFIX.get_or_init(|| {
        use base64::Engine;
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .ok()
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "localhost".into());
        let random: String = base64::engine::general_purpose::STANDARD
            .encode(rand::random::<[u8; 12]>())
            .chars()
            .filter(|c| *c != '+' && *c != '/')
            .take(10)
            .collect();
        format!("{host}/{random}")
    })
}

async fn log_requests(State(app): State<Arc<App>>, req: Request, next: Next) -> Response {
    let start = Instant::now();
    let (method, path) = (req.method().to_string(), decoded_path(req.uri().path()));
    let counter = app.next_request_number();
    // chi takes the caller's X-Request-Id when there is one.
    let request_id = match req.headers().get("x-request-id").and_then(|v| v.to_str().ok()) {
        Some(id) if !id.is_empty() => id.to_string(),
        _ => format!("{}-{counter:06}", request_id_prefix()),
    };
    let head = req.method() == Method::HEAD;
    let response = next.run(req).await;
    let bytes = if head { 0 } else { response.body().size_hint().exact().unwrap_or_default() };
    let duration = go_duration(start.elapsed());
    let attrs = [
        ("request_id", (&request_id).into()),
        ("method", (&method).into()),
        ("path", (&path).into()),
        ("status", i64::from(response.status().as_u16()).into()),
        ("bytes", i64::try_from(bytes).unwrap_or(i64::MAX).into()),
        ("duration", (&duration).into()),
    ];
    if path == "/health" || path.starts_with("/health/") {
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
    app.log.warn("Injecting fault", &[("path", req.uri().path().into()), ("fault", (&format!("{action:?}")).into())]);
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

/// `http.Redirect` for a GET: the status, `Location` and Go's little HTML body.
fn redirect(to: &'static str) -> Response {
    let body = format!("<a href=\"{to}\">Temporary Redirect</a>.\n\n");
    let mut response = (StatusCode::TEMPORARY_REDIRECT, body).into_response();
    response.headers_mut().insert(header::LOCATION, HeaderValue::from_static(to));
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    response
}

/// `handlers.Problem`, fields in the Go struct's order.
#[derive(Serialize)]
struct Problem<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    title: &'static str,
    status: u16,
    detail: &'a str,
}

/// The titles of the `handlers/problem.go` helpers (Go's status texts, not the http crate's).
fn title(status: StatusCode) -> &'static str {
    match status.as_u16() {
        413 => "Request Entity Too Large",
        _ => status.canonical_reason().unwrap_or("Error"),
    }
}

/// An RFC 7807 problem as written by `handlers/problem.go`.
pub(crate) fn problem(status: StatusCode, detail: &str) -> Response {
    let body = gojson::encode(&Problem { kind: "about:blank", title: title(status), status: status.as_u16(), detail });
    let mut response = json_bytes(status, body.into());
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/problem+json"));
    response
}

/// `WriteJSON`: Go's encoding (HTML-safe strings, Go floats, struct field order) and a trailing newline.
pub(crate) fn json<T: Serialize + ?Sized>(status: StatusCode, value: &T) -> Response {
    json_bytes(status, gojson::encode(value).into())
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

/// What chi's `Recoverer` sends when a handler panics: a bare 500.
pub(crate) fn recovered_panic(app: &App, message: &str) -> Response {
    app.log.error("panic recovered", &[("panic", message.into())]);
    StatusCode::INTERNAL_SERVER_ERROR.into_response()
}

/// `decodeJSONBody`: 413 problem when the value does not end inside 1 MiB, else 400 "Invalid request body".
pub(crate) fn decode<T: serde::de::DeserializeOwned>(body: &ReqBody) -> Result<T, Box<Response>> {
    gojson::decode(body).map_err(|e| {
        Box::new(match e {
            DecodeError::TooLarge => problem(StatusCode::PAYLOAD_TOO_LARGE, &e.to_string()),
            DecodeError::Invalid => problem(StatusCode::BAD_REQUEST, &e.to_string()),
        })
    })
}

/// Maps a database failure to the handler's generic 500.
pub(crate) fn internal(detail: &str) -> Response {
    problem(StatusCode::INTERNAL_SERVER_ERROR, detail)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_decode_as_go_routes_them() {
        assert_eq!(routing_path("/api/v1/users/a%20b"), "/api/v1/users/a b");
        assert_eq!(routing_path("/api/v1/users/a%2Fb"), "/api/v1/users/a%2Fb", "an encoded slash stays raw");
        assert_eq!(routing_path("/api/v1/adapters"), "/api/v1/adapters");
        assert_eq!(decoded_path("/x%2Fy"), "/x/y");
    }
}
