//! TLS for the harness's DittoFS: certificates made with rcgen (a CA, a server certificate for the `-api`
//! Service name, expired or misnamed ones for the refusal tests), the files DittoFS's `controlplane.tls`
//! block names, and an HTTPS transport for the harness's own API client ([`crate::dittofs_client::Api`]).
//!
//! The harness client speaks TLS through hyper-rustls with ring, as the agent does, not through reqwest's
//! rustls feature (which makes every reqwest client of the build panic without a process-wide provider).

use std::sync::Arc;

use anyhow::Context as _;
use hyper_rustls::{FixedServerNameResolver, HttpsConnector};
use hyper_util::client::legacy::{Client as HyperClient, connect::HttpConnector};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    date_time_ymd,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, pem::PemObject as _};

/// A certificate authority that issues certificates for tests.
pub struct Ca {
    params: CertificateParams,
    key: KeyPair,
    /// The CA certificate, PEM (what a cert-manager Secret holds as `ca.crt`).
    pub pem: String,
}

impl std::fmt::Debug for Ca {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ca").finish_non_exhaustive()
    }
}

/// How long an issued certificate is valid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Validity {
    /// rcgen's default: 1975 to 4096.
    Current,
    /// Expired since 2021.
    Expired,
}

/// A certificate and its key, PEM.
#[derive(Debug, Clone)]
pub struct Issued {
    pub cert_pem: String,
    pub key_pem: String,
}

impl Ca {
    pub fn new(name: &str) -> anyhow::Result<Ca> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::default();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::DigitalSignature];
        let pem = params.self_signed(&key)?.pem();
        Ok(Ca { params, key, pem })
    }

    /// A certificate for `dns_names` usable as a server and, as a cert-manager Certificate with
    /// `usages: [server auth, client auth]`, as a client: the agent presents the cert Secret's own
    /// certificate under mutual TLS.
    pub fn issue(&self, dns_names: &[&str], validity: Validity) -> anyhow::Result<Issued> {
        let mut params = CertificateParams::new(dns_names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>())?;
        params.distinguished_name.push(DnType::CommonName, dns_names.first().copied().unwrap_or("dittofs"));
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
        if validity == Validity::Expired {
            params.not_before = date_time_ymd(2020, 1, 1);
            params.not_after = date_time_ymd(2021, 1, 1);
        }
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &Issuer::new(self.params.clone(), &self.key))?;
        Ok(Issued { cert_pem: cert.pem(), key_pem: key.serialize_pem() })
    }
}

/// DittoFS's side: the certificate it serves and, for mutual TLS, the CA of the clients it accepts.
#[derive(Debug, Clone)]
pub struct ServerTls {
    pub cert: Issued,
    pub client_ca_pem: Option<String>,
}

/// A client's side: the CA it trusts, the name it checks, the certificate it presents.
#[derive(Debug, Clone)]
pub struct ClientTls {
    pub ca_pem: String,
    pub server_name: String,
    pub identity: Option<Issued>,
}

/// A harness DittoFS serving TLS: its own files and what the harness's client (and by default the
/// agent) trusts and presents.
#[derive(Debug, Clone)]
pub struct HarnessTls {
    pub server: ServerTls,
    pub client: ClientTls,
}

impl HarnessTls {
    /// DittoFS with a certificate of `ca` for `server_name`; with `mutual`, clients must present a
    /// certificate of `ca`, and the client presents the server's own (as the agent does).
    pub fn new(ca: &Ca, server_name: &str, mutual: bool) -> anyhow::Result<HarnessTls> {
        let cert = ca.issue(&[server_name], Validity::Current)?;
        Ok(HarnessTls {
            server: ServerTls { cert: cert.clone(), client_ca_pem: mutual.then(|| ca.pem.clone()) },
            client: ClientTls {
                ca_pem: ca.pem.clone(),
                server_name: server_name.to_owned(),
                identity: mutual.then_some(cert),
            },
        })
    }
}

/// The `-api` Service name a certificate must carry: `<cr>-api.<ns>.svc`.
pub fn api_service_name(server: &str, namespace: &str) -> String {
    format!("{}.{namespace}.svc", dittofs_api::names::api_service(server))
}

/// An HTTPS client of `trust` (ring, TLS ≥ 1.2), dialling the URL's address and checking `server_name`.
pub(crate) type Https = HyperClient<HttpsConnector<HttpConnector>, reqwest::Body>;

pub(crate) fn https_client(trust: &ClientTls) -> anyhow::Result<Https> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(trust.ca_pem.as_bytes()) {
        roots.add(cert?)?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_root_certificates(roots);
    let config = match &trust.identity {
        None => builder.with_no_client_auth(),
        Some(id) => {
            let chain = CertificateDer::pem_slice_iter(id.cert_pem.as_bytes()).collect::<Result<Vec<_>, _>>()?;
            builder.with_client_auth_cert(chain, PrivateKeyDer::from_pem_slice(id.key_pem.as_bytes())?)?
        }
    };
    let name = ServerName::try_from(trust.server_name.clone()).context("server name")?;
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(config)
        .https_only()
        .with_server_name_resolver(FixedServerNameResolver::new(name))
        .enable_http1()
        .wrap_connector(http);
    Ok(HyperClient::builder(hyper_util::rt::TokioExecutor::new()).build(https))
}

/// Whether a TLS failure (a rustls error) is in the chain: the server answered the handshake, so it runs.
pub fn is_tls_failure(error: &anyhow::Error) -> bool {
    // hyper-rustls wraps tokio-rustls's io::Error in another, and io::Error::source() skips what it wraps.
    error.chain().any(|e| {
        let mut candidate: Option<&(dyn std::error::Error + 'static)> = Some(e);
        while let Some(c) = candidate {
            if c.downcast_ref::<rustls::Error>().is_some() {
                return true;
            }
            candidate = c.downcast_ref::<std::io::Error>().and_then(|io| io.get_ref()).map(|e| e as _);
        }
        false
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issues_current_and_expired_certificates_for_the_api_service_name() {
        let ca = Ca::new("test-ca").unwrap();
        let name = api_service_name("fs", "ns");
        assert_eq!(name, "fs-api.ns.svc");
        let good = ca.issue(&[&name], Validity::Current).unwrap();
        let expired = ca.issue(&[&name], Validity::Expired).unwrap();
        assert!(good.cert_pem.starts_with("-----BEGIN CERTIFICATE-----"));
        assert_ne!(good.cert_pem, expired.cert_pem);
        assert!(expired.key_pem.starts_with("-----BEGIN PRIVATE KEY-----"));
    }
}
