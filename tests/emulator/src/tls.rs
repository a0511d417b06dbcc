//! Native TLS of the API, as DittoFS v0.29.0 serves it (`internal/tlsconfig/tlsconfig.go`): HTTPS when
//! `controlplane.tls.cert_file` and `key_file` are both set, TLS 1.2 at the least (`min_version` "1.2" or
//! "1.3"), the certificate re-read at a handshake when either file's modification time moved (the
//! `CertReloader`: a rotated Secret needs no restart), and with `client_ca` a client certificate signed by
//! it required and verified (`RequireAndVerifyClientCert`; the CA file is read once, at start).
//!
//! rustls with ring, like the rest of the workspace. Handshakes run on their own tasks, as Go's per-connection
//! goroutines do, so a client that stalls its handshake holds up no other; Go's 10 s read timeout bounds it.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::{Duration, SystemTime},
};

use anyhow::Context as _;
use rustls::{
    RootCertStore, ServerConfig,
    crypto::CryptoProvider,
    pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject as _},
    server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier},
    sign::CertifiedKey,
};
use tokio::{net::TcpListener, sync::mpsc};
use tokio_rustls::{TlsAcceptor, server::TlsStream};

use crate::{config::TlsConfig, log::Log};

/// Go's `http.Server` read timeout, which also bounds the handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The server configuration of `cfg`; an unreadable or unusable file stops the start, as in DittoFS.
pub fn server_config(cfg: &TlsConfig) -> anyhow::Result<ServerConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let versions: &[&rustls::SupportedProtocolVersion] = match cfg.min_version.as_deref() {
        Some("1.3") => &[&rustls::version::TLS13],
        _ => &[&rustls::version::TLS13, &rustls::version::TLS12],
    };
    let builder = ServerConfig::builder_with_provider(provider.clone()).with_protocol_versions(versions)?;
    let reloader = CertReloader::new(&cfg.cert_file, &cfg.key_file, provider.clone())?;
    let builder = match &cfg.client_ca {
        None => builder.with_no_client_auth(),
        Some(path) => {
            let mut roots = RootCertStore::empty();
            let certs = CertificateDer::pem_file_iter(path)
                .with_context(|| format!("read client CA file {}", path.display()))?;
            for cert in certs {
                roots.add(cert?).with_context(|| format!("client CA file {}", path.display()))?;
            }
            anyhow::ensure!(!roots.is_empty(), "client CA file {} contains no valid PEM certificate", path.display());
            // Mandatory client authentication: a client without a certificate is refused.
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider).build()?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder.with_cert_resolver(Arc::new(reloader));
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// The certificate and key, re-read when either file's modification time moved.
#[derive(Debug)]
struct CertReloader {
    cert_file: PathBuf,
    key_file: PathBuf,
    provider: Arc<CryptoProvider>,
    loaded: Mutex<(Arc<CertifiedKey>, Option<SystemTime>, Option<SystemTime>)>,
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

impl CertReloader {
    fn new(cert_file: &Path, key_file: &Path, provider: Arc<CryptoProvider>) -> anyhow::Result<CertReloader> {
        let (mtimes, key) = ((modified(cert_file), modified(key_file)), load(cert_file, key_file, &provider)?);
        Ok(CertReloader {
            cert_file: cert_file.into(),
            key_file: key_file.into(),
            provider,
            loaded: Mutex::new((Arc::new(key), mtimes.0, mtimes.1)),
        })
    }
}

fn load(cert_file: &Path, key_file: &Path, provider: &CryptoProvider) -> anyhow::Result<CertifiedKey> {
    let context = || format!("load TLS key pair (cert={} key={})", cert_file.display(), key_file.display());
    let chain: Vec<CertificateDer<'static>> =
        CertificateDer::pem_file_iter(cert_file).and_then(|c| c.collect()).with_context(context)?;
    anyhow::ensure!(!chain.is_empty(), "{}: no certificate", context());
    let key = PrivateKeyDer::from_pem_file(key_file).with_context(context)?;
    CertifiedKey::from_der(chain, key, provider).with_context(context)
}

impl ResolvesServerCert for CertReloader {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let mut loaded = self.loaded.lock().expect("cert lock");
        let (cert_mod, key_mod) = (modified(&self.cert_file), modified(&self.key_file));
        let newer = |now: Option<SystemTime>, then: Option<SystemTime>| now.is_some_and(|n| then.is_none_or(|t| n > t));
        // Like Go's reloader: a half-written or broken pair keeps serving the previous one.
        if (newer(cert_mod, loaded.1) || newer(key_mod, loaded.2))
            && let Ok(key) = load(&self.cert_file, &self.key_file, &self.provider)
        {
            *loaded = (Arc::new(key), cert_mod, key_mod);
        }
        Some(loaded.0.clone())
    }
}

/// An `axum::serve` listener that hands over connections once their handshake is done.
#[derive(Debug)]
pub struct TlsListener {
    local: SocketAddr,
    ready: mpsc::Receiver<(TlsStream<tokio::net::TcpStream>, SocketAddr)>,
}

impl TlsListener {
    /// Accepts on `tcp` and runs each handshake on its own task; failed handshakes are logged at DEBUG
    /// (Go's `http: TLS handshake error` goes to the server's error log, not the request log).
    pub fn new(tcp: TcpListener, config: ServerConfig, log: Arc<Log>) -> std::io::Result<TlsListener> {
        let local = tcp.local_addr()?;
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let (tx, ready) = mpsc::channel(64);
        tokio::spawn(async move {
            loop {
                let (stream, peer) = match tcp.accept().await {
                    Ok(accepted) => accepted,
                    Err(_) => {
                        // Out of file descriptors and the like: Go's server backs off 5 ms at first too.
                        tokio::time::sleep(Duration::from_millis(5)).await;
                        continue;
                    }
                };
                if tx.is_closed() {
                    return;
                }
                let (acceptor, tx, log) = (acceptor.clone(), tx.clone(), log.clone());
                tokio::spawn(async move {
                    let remote = peer.to_string();
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(tls)) => {
                            let _ = tx.send((tls, peer)).await;
                        }
                        Ok(Err(e)) => {
                            let error = e.to_string();
                            log.debug(
                                "TLS handshake error",
                                &[("remote", (&remote).into()), ("error", (&error).into())],
                            );
                        }
                        Err(_) => log.debug("TLS handshake timeout", &[("remote", (&remote).into())]),
                    }
                });
            }
        });
        Ok(TlsListener { local, ready })
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<tokio::net::TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(conn) => conn,
            // The accept task only ends when this listener is gone.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        Ok(self.local)
    }
}
