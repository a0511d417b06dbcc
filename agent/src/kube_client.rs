//! The agent's Kubernetes client: the pod's ServiceAccount, read as every in-cluster client reads it (the
//! kubelet's `KUBERNETES_SERVICE_HOST`/`_PORT`, the mounted `token` and `ca.crt`), over a stack of its own.
//!
//! Not kube's `Config` and `ClientBuilder`: they carry kubeconfig support, exec and OAuth credential plugins
//! (a YAML parser with its error renderer, a JSONPath engine and the regex engine under it) that a sidecar
//! never uses but cannot shed, since which one runs is decided at run time. That is over a megabyte of code,
//! and the binary's code pages are most of the agent's RSS in every DittoFS pod (docs/performance.md,
//! Memory). The stack keeps what kube's default one does for a ServiceAccount — base URI, retry of 429/503/504
//! ([`RetryPolicy::server_retry`]), bearer token re-read from its file, rustls with ring, HTTP/1 — plus the
//! response deadline both binaries use ([`DeadlineLayer`]).
//!
//! The credentials' directory can be moved ([`agent_env::SERVICEACCOUNT_DIR`]) so the agent runs outside a
//! pod exactly as inside one: the test harness writes the projected volume's files there.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dittofs_api::agent_env;
use dittofs_telemetry::kube_client::DeadlineLayer;
use http::{HeaderValue, Request, header::AUTHORIZATION};
use hyper_util::{
    client::legacy::{Client as HyperClient, connect::HttpConnector},
    rt::TokioExecutor,
};
use kube::client::{Body, middleware::BaseUriLayer, retry::RetryPolicy};
use tokio::time::Instant;
use tower::{BoxError, ServiceBuilder, retry::RetryLayer};

use crate::error::AgentError;

/// How long a token read from its file is used before the file is read again. The kubelet rewrites the
/// projected token at 80 % of its lifetime (an hour at the least); client-go re-reads it every minute too.
const TOKEN_REREAD: Duration = Duration::from_secs(60);
/// How long a connection to the apiserver may take to open (kube's default).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// Where the apiserver is and where the ServiceAccount's files are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InCluster {
    pub url: http::Uri,
    pub dir: PathBuf,
}

impl InCluster {
    /// From the environment (through `lookup`): the kubelet's variables and the optional directory override.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, AgentError> {
        let get = |name: &str| lookup(name).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());
        let required = |name: &str| {
            get(name).ok_or_else(|| {
                AgentError::Config(format!("environment variable {name} is not set: the kubelet sets it in a pod"))
            })
        };
        let host = required(agent_env::KUBERNETES_SERVICE_HOST)?;
        let port = required(agent_env::KUBERNETES_SERVICE_PORT)?;
        let port: u16 = port.parse().map_err(|_| {
            AgentError::Config(format!("{}={port:?} is not a port", agent_env::KUBERNETES_SERVICE_PORT))
        })?;
        let bracketed = match host.parse::<std::net::IpAddr>() {
            Ok(std::net::IpAddr::V6(ip)) => format!("[{ip}]"),
            _ => host.clone(),
        };
        let url = format!("https://{bracketed}:{port}").parse().map_err(|e| {
            AgentError::Config(format!("{}={host:?} is not a host: {e}", agent_env::KUBERNETES_SERVICE_HOST))
        })?;
        let dir = get(agent_env::SERVICEACCOUNT_DIR).unwrap_or_else(|| agent_env::SERVICEACCOUNT_DIR_DEFAULT.into());
        Ok(Self { url, dir: PathBuf::from(dir) })
    }

    /// The client, acting as the ServiceAccount in `namespace`. The CA bundle and the token are read now,
    /// so a missing or unusable one is a clear error at start rather than a failed request later.
    pub fn client(&self, namespace: &str) -> Result<kube::Client, AgentError> {
        let roots = crate::dittofs::ca_bundle(&self.dir.join("ca.crt"))
            .map_err(|e| AgentError::Config(format!("cluster CA bundle: {e}")))?;
        let token = TokenFile::open(self.dir.join("token"))?;
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|e| AgentError::Config(format!("TLS versions: {e}")))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let mut connector = HttpConnector::new();
        connector.enforce_http(false);
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(CONNECT_TIMEOUT));
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_only()
            .enable_http1()
            .wrap_connector(connector);
        let http: HyperClient<_, Body> = HyperClient::builder(TokioExecutor::new()).build(https);
        let service = ServiceBuilder::new()
            .layer(DeadlineLayer::default())
            .layer(BaseUriLayer::new(self.url.clone()))
            .layer(RetryLayer::new(RetryPolicy::server_retry()))
            .map_err(BoxError::from)
            .map_request(move |req| token.authorize(req))
            .service(http);
        Ok(kube::Client::new(service, namespace))
    }
}

/// The ServiceAccount token, re-read from its file every [`TOKEN_REREAD`] so the kubelet's rotation is
/// followed. A read that fails keeps the last token: it stays valid for a while, and the apiserver's 401
/// says when it no longer is.
#[derive(Debug, Clone)]
struct TokenFile {
    path: PathBuf,
    current: Arc<Mutex<(HeaderValue, Instant)>>,
}

impl TokenFile {
    fn open(path: PathBuf) -> Result<Self, AgentError> {
        let header = read_token(&path).map_err(AgentError::Config)?;
        Ok(Self { path, current: Arc::new(Mutex::new((header, Instant::now()))) })
    }

    /// `req` with `Authorization: Bearer <token>`.
    fn authorize(&self, mut req: Request<Body>) -> Request<Body> {
        let header = {
            let mut current = self.current.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            if current.1.elapsed() >= TOKEN_REREAD {
                // A few bytes of tmpfs, once a minute: a blocking read costs less than a task hop.
                match read_token(&self.path) {
                    Ok(header) => current.0 = header,
                    Err(e) => tracing::warn!(error = %e, "keeping the last ServiceAccount token"),
                }
                current.1 = Instant::now();
            }
            current.0.clone()
        };
        req.headers_mut().insert(AUTHORIZATION, header);
        req
    }
}

/// The header for the token in `path`; the error names the file, never its content.
fn read_token(path: &Path) -> Result<HeaderValue, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read the ServiceAccount token {}: {e}", path.display()))?;
    let token = text.trim();
    if token.is_empty() {
        return Err(format!("the ServiceAccount token {} is empty", path.display()));
    }
    let mut header = HeaderValue::try_from(format!("Bearer {token}"))
        .map_err(|_| format!("the ServiceAccount token {} is not a header value", path.display()))?;
    header.set_sensitive(true);
    Ok(header)
}

#[cfg(test)]
#[path = "kube_client_tests.rs"]
mod tests;
