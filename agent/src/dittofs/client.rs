//! [`Client`]: the [`DittoFs`] calls over hyper, plain HTTP or TLS ([`super::tls`]) on loopback.
//!
//! Every request has a timeout, every body read is capped, and every answer is classified by status code and
//! `Content-Type` (the auth middleware answers text/plain, handlers problem+json:
//! docs/dittofs-api.md#middleware-order-and-status-codes, docs/dittofs-api.md#errors).
//!
//! hyper-rustls rather than reqwest's TLS: enabling reqwest's provider-less rustls feature makes every
//! reqwest client of the same build (the OTLP exporter, the test harness) panic unless a process-wide
//! crypto provider is installed first; here the ring provider is handed to this one client only.

use std::{
    collections::BTreeSet,
    sync::{Arc, Mutex},
    time::Duration,
};

use bytes::Bytes;
use http::{Method, Request, header};
use http_body_util::{BodyExt as _, Full};
use hyper_rustls::{FixedServerNameResolver, HttpsConnector};
use hyper_util::{
    client::legacy::{Client as HyperClient, connect::HttpConnector},
    rt::TokioExecutor,
};
use serde::de::DeserializeOwned;
use serde_json::json;

use super::{
    ApiAdapter, ApiError, ApiSnapshotPolicy, ClientError, DittoFs, Endpoint, Limits, Observer, PolicyBody, TokenPair,
    policy_path,
    tls::{self, TlsFailure, TlsSettings},
    types::ReadyResponse,
};
use crate::{secret::SecretString, text::clean};

/// Largest body of the small answers (login, refresh, users, `/health/ready`).
const SMALL_BODY: usize = 64 << 10;

type Http = HyperClient<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// Client bound to one DittoFS.
#[derive(Debug, Clone)]
pub struct Client {
    transport: Arc<Transport>,
    base: String,
    limits: Limits,
    observer: Arc<dyn Observer>,
    /// The pod's listeners, read through one netlink socket kept open (see [`crate::listeners`]).
    listeners: Arc<Mutex<crate::listeners::Listeners>>,
}

/// The hyper client, rebuilt when the TLS files change (a rotated Secret).
struct Transport {
    tls: Option<TlsSettings>,
    connect_timeout: Duration,
    state: Mutex<State>,
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transport").field("tls", &self.tls).finish_non_exhaustive()
    }
}

struct State {
    /// `None` while the TLS files are unusable: each request tries to load them again.
    http: Option<Http>,
    /// Digest of the TLS files `http` was built from.
    digest: Option<u64>,
}

impl Transport {
    /// The client to use now, building it if the last attempt failed.
    fn http(&self) -> Result<Http, ApiError> {
        let mut state = self.state.lock().expect("transport lock");
        if let Some(http) = &state.http {
            return Ok(http.clone());
        }
        let (http, digest) = self.build()?;
        state.http = Some(http.clone());
        state.digest = digest;
        Ok(http)
    }

    /// After a TLS failure: a Secret the kubelet updated since (new CA, new client certificate) is used
    /// by the next request. Unchanged files keep the client (and its pooled connections).
    fn reload_if_changed(&self) {
        let Some(settings) = &self.tls else { return };
        let mut state = self.state.lock().expect("transport lock");
        if tls::digest(settings).ok() != state.digest {
            tracing::info!(ca = %settings.ca_file.display(), "TLS files changed; reloading them");
            state.http = None;
        }
    }

    fn build(&self) -> Result<(Http, Option<u64>), ApiError> {
        let mut connector = HttpConnector::new();
        connector.enforce_http(false);
        connector.set_connect_timeout(Some(self.connect_timeout));
        connector.set_nodelay(true);
        let (config, resolver, digest) = match &self.tls {
            Some(settings) => {
                let loaded = tls::load(settings)
                    .map_err(|detail| ApiError::Tls { failure: TlsFailure::LocalFiles, detail: clean(&detail) })?;
                (loaded.config, Some(FixedServerNameResolver::new(loaded.server_name)), Some(loaded.digest))
            }
            // Plain HTTP: a configuration without trust roots, so an https:// URL could never be trusted.
            None => (no_trust_config()?, None, None),
        };
        let builder = hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(config).https_or_http();
        let builder = match resolver {
            Some(resolver) => builder.with_server_name_resolver(resolver),
            None => builder,
        };
        let https = builder.enable_http1().wrap_connector(connector);
        let http = HyperClient::builder(TokioExecutor::new())
            // DittoFS closes idle connections after 60 s; reuse one for the fast path.
            .pool_idle_timeout(Duration::from_secs(50))
            .pool_max_idle_per_host(2)
            .build(https);
        Ok((http, digest))
    }
}

fn no_trust_config() -> Result<rustls::ClientConfig, ApiError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| ApiError::Tls { failure: TlsFailure::LocalFiles, detail: e.to_string() })?;
    Ok(builder.with_root_certificates(rustls::RootCertStore::empty()).with_no_client_auth())
}

/// A decoded answer: status, content type and the (bounded) body.
struct Answer {
    status: u16,
    content_type: String,
    body: Vec<u8>,
}

/// One request before it is sent.
struct Req {
    method: Method,
    path: String,
    token: Option<SecretString>,
    body: Option<serde_json::Value>,
}

impl Client {
    /// A client of `base` (`http://127.0.0.1:<port>`, or `https://…` with `tls`). TLS files that cannot be
    /// used now are not an error here: each request reports them ([`TlsFailure::LocalFiles`]) and tries again.
    pub fn new(
        base: &str,
        tls: Option<TlsSettings>,
        limits: &Limits,
        observer: Arc<dyn Observer>,
    ) -> Result<Client, ClientError> {
        let base = base.trim_end_matches('/').to_owned();
        if base.starts_with("https://") != tls.is_some() {
            return Err(ClientError(format!("{base} needs TLS settings exactly when it is an https:// URL")));
        }
        let transport = Transport {
            tls,
            connect_timeout: limits.connect_timeout,
            state: Mutex::new(State { http: None, digest: None }),
        };
        if let Err(e) = transport.http() {
            tracing::warn!(error = %e, "DittoFS TLS settings are not usable yet; retried at every request");
        }
        let listeners = Arc::default();
        Ok(Client { transport: Arc::new(transport), base, limits: limits.clone(), observer, listeners })
    }

    fn request(&self, method: Method, path: &str, token: Option<&SecretString>) -> Req {
        Req { method, path: path.to_owned(), token: token.cloned(), body: None }
    }

    /// Sends with a timeout covering the whole exchange and reads at most `limit` body bytes.
    async fn send(&self, endpoint: Endpoint, req: Req, timeout: Duration, limit: usize) -> Result<Answer, ApiError> {
        let started = std::time::Instant::now();
        let result = match self.transport.http() {
            Ok(http) => tokio::time::timeout(timeout, self.exchange(&http, req, limit))
                .await
                .unwrap_or(Err(ApiError::Timeout(timeout))),
            Err(e) => Err(e),
        };
        if matches!(result, Err(ApiError::Tls { .. })) {
            self.transport.reload_if_changed();
        }
        let outcome = match &result {
            Ok(a) => status_class(a.status),
            Err(e) => e.label(),
        };
        self.observer.request(endpoint, outcome, started.elapsed());
        result
    }

    async fn exchange(&self, http: &Http, req: Req, limit: usize) -> Result<Answer, ApiError> {
        let url = format!("{}{}", self.base, req.path);
        let mut builder = Request::builder()
            .method(req.method)
            .uri(&url)
            .header(header::ACCEPT, "application/json")
            .header(header::USER_AGENT, concat!("dittofs-agent/", env!("CARGO_PKG_VERSION")));
        if let Some(token) = &req.token {
            builder = builder.header(header::AUTHORIZATION, format!("Bearer {}", token.expose()));
        }
        let body = match &req.body {
            Some(value) => {
                builder = builder.header(header::CONTENT_TYPE, "application/json");
                Full::new(Bytes::from(serde_json::to_vec(value).map_err(|e| ApiError::Malformed(e.to_string()))?))
            }
            None => Full::new(Bytes::new()),
        };
        // Request::builder only fails on a malformed URL or header, which config validation rules out.
        let request = builder.body(body).map_err(|e| ApiError::Transport(clean(&e.to_string())))?;
        let resp = http.request(request).await.map_err(|e| ApiError::from_transport(&e, &url))?;
        let status = resp.status().as_u16();
        let headers = resp.headers();
        let content_type =
            headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default().to_ascii_lowercase();
        let length = headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
        if length.is_some_and(|len| len > limit as u64) {
            return Err(ApiError::Malformed(format!("HTTP {status} body larger than {limit} bytes")));
        }
        let mut incoming = resp.into_body();
        let mut body = Vec::new();
        while let Some(frame) = incoming.frame().await {
            let frame = frame.map_err(|e| ApiError::from_transport(&e, &url))?;
            let Ok(chunk) = frame.into_data() else { continue };
            if body.len() + chunk.len() > limit {
                return Err(ApiError::Malformed(format!("HTTP {status} body larger than {limit} bytes")));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Answer { status, content_type, body })
    }
}

impl Req {
    fn json(mut self, body: &serde_json::Value) -> Req {
        self.body = Some(body.clone());
        self
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
        // A panic while the lock was held left nothing half-written that matters: the next dump starts afresh.
        self.listeners.lock().unwrap_or_else(std::sync::PoisonError::into_inner).listening_ports()
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

    async fn list_snapshot_policies(&self, admin: &SecretString) -> Result<Vec<ApiSnapshotPolicy>, ApiError> {
        let req = self.request(Method::GET, "/api/v1/snapshot-policies", Some(admin));
        let (timeout, limit) = (self.limits.mutation_timeout, self.limits.max_body_bytes);
        let answer = self.send(Endpoint::ListSnapshotPolicies, req, timeout, limit).await?;
        decode(expect(answer, 200)?)
    }

    async fn put_snapshot_policy(&self, admin: &SecretString, share: &str, body: &PolicyBody) -> Result<(), ApiError> {
        let body = serde_json::to_value(body).map_err(|e| ApiError::Malformed(e.to_string()))?;
        let req = self.request(Method::PUT, &policy_path(share), Some(admin)).json(&body);
        let answer = self.send(Endpoint::PutSnapshotPolicy, req, self.limits.mutation_timeout, SMALL_BODY).await?;
        expect(answer, 200).map(drop)
    }

    async fn delete_snapshot_policy(&self, admin: &SecretString, share: &str) -> Result<(), ApiError> {
        let req = self.request(Method::DELETE, &policy_path(share), Some(admin));
        let answer = self.send(Endpoint::DeleteSnapshotPolicy, req, self.limits.mutation_timeout, SMALL_BODY).await?;
        expect(answer, 204).map(drop)
    }
}

fn status_class(status: u16) -> &'static str {
    match status {
        200..=299 => "ok",
        401 => "unauthorized",
        403 => "forbidden",
        404 => "not_found",
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
