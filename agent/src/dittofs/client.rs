//! [`Client`]: the [`DittoFs`] calls over reqwest (plain HTTP on loopback).
//!
//! Every request has a timeout, every body read is capped, and every answer is classified by status code and
//! `Content-Type` (the auth middleware answers text/plain, handlers problem+json:
//! docs/dittofs-api.md#middleware-order-and-status-codes, docs/dittofs-api.md#errors).

use std::{collections::BTreeSet, sync::Arc, time::Duration};

use reqwest::{Method, RequestBuilder, header};
use serde::de::DeserializeOwned;
use serde_json::json;

use super::{ApiAdapter, ApiError, ClientError, DittoFs, Endpoint, Limits, Observer, TokenPair, types::ReadyResponse};
use crate::{secret::SecretString, text::clean};

/// Largest body of the small answers (login, refresh, users, `/health/ready`).
const SMALL_BODY: usize = 64 << 10;

/// Client bound to one DittoFS.
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    limits: Limits,
    observer: Arc<dyn Observer>,
}

/// A decoded answer: status, content type and the (bounded) body.
struct Answer {
    status: u16,
    content_type: String,
    body: Vec<u8>,
}

impl Client {
    pub fn new(base: &str, limits: &Limits, observer: Arc<dyn Observer>) -> Result<Client, ClientError> {
        let http = reqwest::Client::builder()
            .connect_timeout(limits.connect_timeout)
            // DittoFS closes idle connections after 60 s; reuse one for the 1 s fast path.
            .pool_idle_timeout(Duration::from_secs(50))
            .pool_max_idle_per_host(2)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("dittofs-agent/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ClientError(e.to_string()))?;
        Ok(Client { http, base: base.trim_end_matches('/').to_owned(), limits: limits.clone(), observer })
    }

    fn request(&self, method: Method, path: &str, token: Option<&SecretString>) -> RequestBuilder {
        let mut req =
            self.http.request(method, format!("{}{path}", self.base)).header(header::ACCEPT, "application/json");
        if let Some(token) = token {
            req = req.bearer_auth(token.expose());
        }
        req
    }

    /// Sends with a timeout covering the whole exchange and reads at most `limit` body bytes.
    async fn send(
        &self,
        endpoint: Endpoint,
        req: RequestBuilder,
        timeout: Duration,
        limit: usize,
    ) -> Result<Answer, ApiError> {
        if self.base.starts_with("https://") {
            // Reported in the status (reason TLSUnsupported) rather than crash-looping the container.
            return Err(ApiError::TlsUnsupported);
        }
        let started = std::time::Instant::now();
        let result = tokio::time::timeout(timeout, exchange(req.timeout(timeout), timeout, limit))
            .await
            .unwrap_or(Err(ApiError::Timeout(timeout)));
        let outcome = match &result {
            Ok(a) => status_class(a.status),
            Err(e) => e.label(),
        };
        self.observer.request(endpoint, outcome, started.elapsed());
        result
    }
}

impl DittoFs for Client {
    fn base_url(&self) -> &str {
        &self.base
    }

    async fn health_ready(&self) -> Result<BTreeSet<String>, ApiError> {
        let req = self.request(Method::GET, "/health/ready", None);
        let answer = self.send(Endpoint::HealthReady, req, self.limits.ready_timeout, SMALL_BODY).await?;
        let ready: ReadyResponse = decode(expect(answer, 200)?)?;
        ready.running_types().map_err(ApiError::Malformed)
    }

    fn listening_ports(&self) -> Option<BTreeSet<u16>> {
        crate::listeners::listening_ports()
    }

    async fn login(&self, username: &str, password: &SecretString) -> Result<TokenPair, ApiError> {
        let body = json!({ "username": username, "password": password.expose() });
        let req = self.request(Method::POST, "/api/v1/auth/login", None).json(&body);
        let answer = self.send(Endpoint::Login, req, self.limits.auth_timeout, SMALL_BODY).await?;
        decode_pair(expect(answer, 200)?)
    }

    async fn refresh(&self, refresh_token: &SecretString) -> Result<TokenPair, ApiError> {
        let body = json!({ "refresh_token": refresh_token.expose() });
        let req = self.request(Method::POST, "/api/v1/auth/refresh", None).json(&body);
        let answer = self.send(Endpoint::Refresh, req, self.limits.auth_timeout, SMALL_BODY).await?;
        decode_pair(expect(answer, 200)?)
    }

    async fn create_user(
        &self,
        admin: &SecretString,
        username: &str,
        password: &SecretString,
        role: &str,
    ) -> Result<(), ApiError> {
        let body = json!({ "username": username, "password": password.expose(), "role": role });
        let req = self.request(Method::POST, "/api/v1/users", Some(admin)).json(&body);
        let answer = self.send(Endpoint::CreateUser, req, self.limits.mutation_timeout, SMALL_BODY).await?;
        expect(answer, 201).map(drop)
    }

    async fn reset_password(
        &self,
        admin: &SecretString,
        username: &str,
        password: &SecretString,
    ) -> Result<(), ApiError> {
        let body = json!({ "new_password": password.expose() });
        let path = format!("/api/v1/users/{username}/password");
        let req = self.request(Method::POST, &path, Some(admin)).json(&body);
        let answer = self.send(Endpoint::ResetPassword, req, self.limits.mutation_timeout, SMALL_BODY).await?;
        expect(answer, 204).map(drop)
    }

    async fn set_role(&self, admin: &SecretString, username: &str, role: &str) -> Result<(), ApiError> {
        let req =
            self.request(Method::PUT, &format!("/api/v1/users/{username}"), Some(admin)).json(&json!({ "role": role }));
        let answer = self.send(Endpoint::UpdateUser, req, self.limits.mutation_timeout, SMALL_BODY).await?;
        expect(answer, 200).map(drop)
    }

    async fn list_adapters(&self, token: &SecretString) -> Result<Vec<ApiAdapter>, ApiError> {
        let req = self.request(Method::GET, "/api/v1/adapters", Some(token));
        let (timeout, limit) = (self.limits.poll_timeout, self.limits.max_body_bytes);
        let answer = self.send(Endpoint::ListAdapters, req, timeout, limit).await?;
        decode(expect(answer, 200)?)
    }
}

async fn exchange(req: RequestBuilder, timeout: Duration, limit: usize) -> Result<Answer, ApiError> {
    let mut resp = req.send().await.map_err(|e| ApiError::from_reqwest(&e, timeout))?;
    let status = resp.status().as_u16();
    let content_type =
        resp.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default().to_ascii_lowercase();
    if resp.content_length().is_some_and(|len| len > limit as u64) {
        return Err(ApiError::Malformed(format!("HTTP {status} body larger than {limit} bytes")));
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| ApiError::from_reqwest(&e, timeout))? {
        if body.len() + chunk.len() > limit {
            return Err(ApiError::Malformed(format!("HTTP {status} body larger than {limit} bytes")));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Answer { status, content_type, body })
}

fn status_class(status: u16) -> &'static str {
    match status {
        200..=299 => "ok",
        401 => "unauthorized",
        403 => "forbidden",
        409 => "conflict",
        400..=499 => "client_error",
        500..=599 => "server_error",
        _ => "unexpected_status",
    }
}

/// The answer if it has the expected status, else the classified error.
fn expect(answer: Answer, want: u16) -> Result<Answer, ApiError> {
    if answer.status == want {
        Ok(answer)
    } else {
        Err(ApiError::from_status(answer.status, &answer.content_type, &answer.body))
    }
}

/// JSON body of a success; anything but `application/json` or a body of the wrong shape is malformed.
fn decode<T: DeserializeOwned>(answer: Answer) -> Result<T, ApiError> {
    if !answer.content_type.starts_with("application/json") {
        return Err(ApiError::Malformed(format!(
            "HTTP {} with content type {:?}, not JSON",
            answer.status, answer.content_type
        )));
    }
    serde_json::from_slice(&answer.body).map_err(|e| ApiError::Malformed(clean(&e.to_string())))
}

/// A login or refresh answer. serde's error text may quote values, so it is not passed on here.
fn decode_pair(answer: Answer) -> Result<TokenPair, ApiError> {
    let pair: TokenPair = decode(answer).map_err(|e| match e {
        ApiError::Malformed(_) => ApiError::Malformed("login answer is not a LoginResponse".into()),
        other => other,
    })?;
    if pair.access.is_empty() || pair.refresh.is_empty() {
        return Err(ApiError::Malformed("login answer without tokens".into()));
    }
    Ok(pair)
}
