//! TLS to DittoFS: the rustls client configuration (ring only, TLS ≥ 1.2, the server's CA as the only trust
//! root, an optional client certificate for mutual TLS) and the classification of handshake failures.
//!
//! The agent dials loopback (`https://127.0.0.1:<port>`) but verifies the certificate against the `-api`
//! Service name (`<cr>-api.<ns>.svc`), the name a cert-manager user issues for: the address carries no
//! name, so the name to check is fixed instead of taken from the URL. Verification is never skipped.

use std::{
    hash::{Hash as _, Hasher as _},
    path::PathBuf,
    sync::Arc,
};

use rustls::{
    AlertDescription, CertificateError, ClientConfig, RootCertStore,
    pki_types::{CertificateDer, PrivateKeyDer, ServerName, pem::PemObject as _},
};

use crate::text::clean;

/// Where the agent finds its trust root and client certificate, and the name the server must prove.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSettings {
    /// PEM bundle of the CA(s) DittoFS's certificate must chain to (the cert Secret's `ca.crt`).
    pub ca_file: PathBuf,
    /// DNS name the certificate must carry (`<cr>-api.<ns>.svc`).
    pub server_name: String,
    /// Client certificate and key, presented when DittoFS requires one (mutual TLS).
    pub client_identity: Option<(PathBuf, PathBuf)>,
}

/// Why a TLS connection to DittoFS failed. Each has a stable metric label and status reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsFailure {
    /// The certificate does not chain to the configured CA (or its signature is bad).
    Untrusted,
    /// The certificate (or one of its chain) is expired or not valid yet.
    Expired,
    /// The certificate does not name the `-api` Service.
    NameMismatch,
    /// DittoFS refused the handshake over the client certificate: none presented, or not one it trusts.
    ClientCertRejected,
    /// The agent's own files (CA, client certificate or key) are missing or unusable.
    LocalFiles,
    /// Any other handshake failure (e.g. DittoFS serves plain HTTP, or no common protocol version).
    Handshake,
}

impl TlsFailure {
    pub fn label(self) -> &'static str {
        match self {
            TlsFailure::Untrusted => "tls_untrusted",
            TlsFailure::Expired => "tls_expired",
            TlsFailure::NameMismatch => "tls_name_mismatch",
            TlsFailure::ClientCertRejected => "tls_client_cert_rejected",
            TlsFailure::LocalFiles => "tls_files_unusable",
            TlsFailure::Handshake => "tls_handshake",
        }
    }

    pub fn reason(self) -> &'static str {
        match self {
            TlsFailure::Untrusted => "TLSUntrusted",
            TlsFailure::Expired => "TLSExpired",
            TlsFailure::NameMismatch => "TLSNameMismatch",
            TlsFailure::ClientCertRejected => "TLSClientCertRejected",
            TlsFailure::LocalFiles => "TLSFilesUnusable",
            TlsFailure::Handshake => "TLSHandshakeFailed",
        }
    }

    /// Every label, for the metric reader.
    pub const LABELS: [&'static str; 6] = [
        "tls_untrusted",
        "tls_expired",
        "tls_name_mismatch",
        "tls_client_cert_rejected",
        "tls_files_unusable",
        "tls_handshake",
    ];
}

/// The loaded client configuration and a digest of the files it came from (to notice a rotation).
pub(super) struct Loaded {
    pub config: ClientConfig,
    pub server_name: ServerName<'static>,
    pub digest: u64,
}

/// Digest of the files' contents: a rotated Secret changes it. Not a secret (SipHash of the bytes).
pub(super) fn digest(settings: &TlsSettings) -> Result<u64, String> {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    let mut files = vec![&settings.ca_file];
    if let Some((cert, key)) = &settings.client_identity {
        files.extend([cert, key]);
    }
    for path in files {
        // io::Error's text carries the OS reason, never the content.
        let bytes = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        bytes.hash(&mut hasher);
    }
    Ok(hasher.finish())
}

/// The CA certificates of a PEM bundle (DittoFS's, and the cluster's for the agent's Kubernetes client); the
/// error names the file, never its content.
pub fn ca_bundle(ca: &std::path::Path) -> Result<RootCertStore, String> {
    let mut roots = RootCertStore::empty();
    let certs = CertificateDer::pem_file_iter(ca).map_err(|e| format!("cannot read {}: {e}", ca.display()))?;
    for cert in certs {
        let cert = cert.map_err(|e| format!("{} is not a PEM bundle: {e}", ca.display()))?;
        roots.add(cert).map_err(|e| format!("{}: unusable CA certificate: {e}", ca.display()))?;
    }
    if roots.is_empty() {
        return Err(format!("{} holds no CA certificate", ca.display()));
    }
    Ok(roots)
}

/// Reads the files and builds the rustls configuration; the error names the file, never its content.
pub(super) fn load(settings: &TlsSettings) -> Result<Loaded, String> {
    let digest = digest(settings)?;
    let server_name = ServerName::try_from(settings.server_name.clone())
        .map_err(|_| format!("{:?} is not a DNS name", settings.server_name))?;
    let roots = ca_bundle(&settings.ca_file)?;
    // ring only, chosen here rather than through a process-wide default; TLS 1.2 at the least.
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| format!("TLS versions: {e}"))?
        .with_root_certificates(roots);
    let config = match &settings.client_identity {
        None => builder.with_no_client_auth(),
        Some((cert_file, key_file)) => {
            let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert_file)
                .and_then(|certs| certs.collect())
                .map_err(|e| format!("client certificate {}: {e}", cert_file.display()))?;
            if chain.is_empty() {
                return Err(format!("{} holds no certificate", cert_file.display()));
            }
            let key = PrivateKeyDer::from_pem_file(key_file)
                .map_err(|e| format!("client key {}: {e}", key_file.display()))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| format!("client certificate {} and key do not fit: {e}", cert_file.display()))?
        }
    };
    Ok(Loaded { config, server_name, digest })
}

/// The TLS failure in an error's source chain, with rustls's wording; `None` if it is not a TLS failure.
///
/// tokio-rustls wraps rustls's error in an `io::Error`, and hyper-rustls wraps that in another; an
/// `io::Error`'s `source()` skips the error it wraps, so each one met is opened, however deep.
pub(super) fn classify(error: &(dyn std::error::Error + 'static)) -> Option<(TlsFailure, String)> {
    let mut next = Some(error);
    while let Some(err) = next {
        let mut candidate = Some(err);
        while let Some(c) = candidate {
            if let Some(tls) = c.downcast_ref::<rustls::Error>() {
                return Some((failure_of(tls), clean(&tls.to_string())));
            }
            candidate = c.downcast_ref::<std::io::Error>().and_then(|io| io.get_ref()).map(|e| e as _);
        }
        next = err.source();
    }
    None
}

fn failure_of(error: &rustls::Error) -> TlsFailure {
    match error {
        rustls::Error::InvalidCertificate(cert) => match cert {
            CertificateError::Expired
            | CertificateError::ExpiredContext { .. }
            | CertificateError::NotValidYet
            | CertificateError::NotValidYetContext { .. } => TlsFailure::Expired,
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
                TlsFailure::NameMismatch
            }
            _ => TlsFailure::Untrusted,
        },
        // What a server that refuses the client's certificate (or its absence) answers: Go sends
        // certificate_required (TLS 1.3) or bad_certificate; rustls servers also unknown_ca.
        rustls::Error::AlertReceived(
            AlertDescription::CertificateRequired
            | AlertDescription::BadCertificate
            | AlertDescription::UnknownCA
            | AlertDescription::CertificateUnknown
            | AlertDescription::UnsupportedCertificate
            | AlertDescription::CertificateExpired
            | AlertDescription::CertificateRevoked
            | AlertDescription::AccessDenied,
        ) => TlsFailure::ClientCertRejected,
        _ => TlsFailure::Handshake,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rustls_errors_map_to_distinct_failures_through_an_io_error() {
        let cases = [
            (rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer), TlsFailure::Untrusted),
            (rustls::Error::InvalidCertificate(CertificateError::BadSignature), TlsFailure::Untrusted),
            (rustls::Error::InvalidCertificate(CertificateError::Expired), TlsFailure::Expired),
            (rustls::Error::InvalidCertificate(CertificateError::NotValidYet), TlsFailure::Expired),
            (rustls::Error::InvalidCertificate(CertificateError::NotValidForName), TlsFailure::NameMismatch),
            (rustls::Error::AlertReceived(AlertDescription::CertificateRequired), TlsFailure::ClientCertRejected),
            (rustls::Error::AlertReceived(AlertDescription::BadCertificate), TlsFailure::ClientCertRejected),
            (rustls::Error::AlertReceived(AlertDescription::ProtocolVersion), TlsFailure::Handshake),
            (rustls::Error::NoCertificatesPresented, TlsFailure::Handshake),
        ];
        let mut reasons = std::collections::BTreeSet::new();
        for (error, want) in cases {
            // As tokio-rustls hands it over, wrapped again by hyper-rustls, below a wrapper that only names
            // its source (hyper's "client error (Connect)").
            let io = std::io::Error::new(std::io::ErrorKind::InvalidData, error);
            let outer = std::io::Error::other(Wrapper(std::io::Error::other(io)));
            let (got, text) = classify(&outer).expect("a TLS failure");
            assert_eq!(got, want, "{text}");
            reasons.insert(got.reason());
        }
        assert_eq!(reasons.len(), 5, "{reasons:?}");
        assert!(classify(&std::io::Error::from(std::io::ErrorKind::ConnectionRefused)).is_none());
        for failure in [TlsFailure::LocalFiles, TlsFailure::Handshake, TlsFailure::Untrusted] {
            assert!(TlsFailure::LABELS.contains(&failure.label()));
        }
    }

    #[derive(Debug)]
    struct Wrapper(std::io::Error);

    impl std::fmt::Display for Wrapper {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("client error (Connect)")
        }
    }

    impl std::error::Error for Wrapper {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }

    #[test]
    fn unusable_files_are_named_without_their_content() {
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.crt");
        let settings = TlsSettings { ca_file: ca.clone(), server_name: "fs-api.ns.svc".into(), client_identity: None };
        assert!(load(&settings).err().unwrap().contains("ca.crt"));
        std::fs::write(&ca, "not a certificate secret-ish-text").unwrap();
        let e = load(&settings).err().unwrap();
        assert!(e.contains("no CA certificate") && !e.contains("secret-ish"), "{e}");
        let bad_name = TlsSettings { server_name: "not a name".into(), ..settings };
        assert!(load(&bad_name).err().unwrap().contains("not a DNS name"));
    }
}
