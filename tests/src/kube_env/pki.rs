//! Generates the control plane's PKI in Rust (rcgen): a CA, the apiserver serving cert, an admin client cert, the ServiceAccount signing key pair, and the admin kubeconfig.
//!
//! All keys are ECDSA P-256 in PKCS#8 PEM: the one format that rcgen emits,
//! Go's `keyutil` parses for every flag involved, and rustls (used by kube-rs)
//! accepts as a client identity.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use base64::Engine as _;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
};

/// Issuer and audience of ServiceAccount tokens: the in-cluster default, so
/// tokens look like the ones a real cluster projects into pods.
pub const SERVICE_ACCOUNT_ISSUER: &str = "https://kubernetes.default.svc.cluster.local";
/// Service CIDR handed to the apiserver (configuration only: nothing routes it). A /16: the scale bench's
/// 1,000 servers hold three ClusterIPs each, which a /24 (254 addresses) refuses as "range is full".
pub const SERVICE_CLUSTER_IP_RANGE: &str = "10.0.0.0/16";

/// PEM material written to `<dir>/pki/`, with the paths the server flags need.
#[derive(Debug)]
pub struct Pki {
    /// CA certificate (PEM): trust root for serving and client certs.
    pub ca_cert_pem: String,
    pub ca_cert: PathBuf,
    pub ca_key: PathBuf,
    pub apiserver_cert: PathBuf,
    pub apiserver_key: PathBuf,
    /// Admin client identity (CN=admin, O=system:masters), PEM.
    pub admin_cert_pem: String,
    pub admin_key_pem: String,
    pub sa_private_key: PathBuf,
    pub sa_public_key: PathBuf,
}

impl Pki {
    /// Generates everything and writes it under `dir` (created if needed).
    pub fn generate(dir: &Path) -> anyhow::Result<Pki> {
        std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
        let write = |name: &str, contents: &str| -> anyhow::Result<PathBuf> {
            let path = dir.join(name);
            std::fs::write(&path, contents).with_context(|| format!("write {}", path.display()))?;
            Ok(path)
        };

        let ca_key = KeyPair::generate()?;
        let mut ca_params = CertificateParams::default();
        ca_params.distinguished_name.push(DnType::CommonName, "dittofs-testenv-ca");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages =
            vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        let ca_cert = ca_params.self_signed(&ca_key)?;
        let issuer = Issuer::new(ca_params, &ca_key);

        // rustls checks the IP SAN when the URL host is 127.0.0.1, so it must be
        // an IP entry, not a DNS name; the in-cluster names keep the cert valid
        // for anything that resolves the `kubernetes` Service.
        let mut serving = CertificateParams::new(vec![
            "127.0.0.1".to_owned(),
            "localhost".to_owned(),
            "10.0.0.1".to_owned(),
            "kubernetes".to_owned(),
            "kubernetes.default".to_owned(),
            "kubernetes.default.svc".to_owned(),
            "kubernetes.default.svc.cluster.local".to_owned(),
        ])?;
        serving.distinguished_name.push(DnType::CommonName, "kube-apiserver");
        serving.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
        serving.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let serving_key = KeyPair::generate()?;
        let serving_cert = serving.signed_by(&serving_key, &issuer)?;

        // The apiserver maps a client cert's CN to the user and each O to a
        // group; system:masters bypasses RBAC, as a cluster-admin kubeconfig does.
        let mut admin = CertificateParams::default();
        admin.distinguished_name.push(DnType::CommonName, "admin");
        admin.distinguished_name.push(DnType::OrganizationName, "system:masters");
        admin.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        admin.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let admin_key = KeyPair::generate()?;
        let admin_cert = admin.signed_by(&admin_key, &issuer)?;

        let sa_key = KeyPair::generate()?;

        Ok(Pki {
            ca_cert_pem: ca_cert.pem(),
            ca_cert: write("ca.crt", &ca_cert.pem())?,
            ca_key: write("ca.key", &ca_key.serialize_pem())?,
            apiserver_cert: write("apiserver.crt", &serving_cert.pem())?,
            apiserver_key: write("apiserver.key", &serving_key.serialize_pem())?,
            admin_cert_pem: admin_cert.pem(),
            admin_key_pem: admin_key.serialize_pem(),
            sa_private_key: write("sa.key", &sa_key.serialize_pem())?,
            sa_public_key: write("sa.pub", &sa_key.public_key_pem())?,
        })
    }

    /// An admin kubeconfig for `server` with all material inline, so the file
    /// alone works with `kubectl --kubeconfig` and kube-controller-manager.
    pub fn admin_kubeconfig(&self, server: &str) -> String {
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        format!(
            "apiVersion: v1\n\
             kind: Config\n\
             clusters:\n\
             - name: dittofs-testenv\n  \
               cluster:\n    \
                 server: {server}\n    \
                 certificate-authority-data: {ca}\n\
             users:\n\
             - name: admin\n  \
               user:\n    \
                 client-certificate-data: {cert}\n    \
                 client-key-data: {key}\n\
             contexts:\n\
             - name: dittofs-testenv\n  \
               context:\n    \
                 cluster: dittofs-testenv\n    \
                 user: admin\n    \
                 namespace: default\n\
             current-context: dittofs-testenv\n",
            ca = b64(&self.ca_cert_pem),
            cert = b64(&self.admin_cert_pem),
            key = b64(&self.admin_key_pem),
        )
    }

    /// The CA certificate in DER, as kube-rs wants its root certs.
    pub fn ca_cert_der(&self) -> anyhow::Result<Vec<u8>> {
        pem_body(&self.ca_cert_pem)
    }
}

/// Decodes the base64 body of a single-block PEM string.
fn pem_body(pem: &str) -> anyhow::Result<Vec<u8>> {
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    base64::engine::general_purpose::STANDARD.decode(body).context("decode PEM body")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_all_files_and_kubeconfig() {
        let dir = tempfile::tempdir().unwrap();
        let pki = Pki::generate(dir.path()).unwrap();
        for path in [&pki.ca_cert, &pki.ca_key, &pki.apiserver_cert, &pki.apiserver_key, &pki.sa_private_key] {
            assert!(path.is_file(), "{} missing", path.display());
        }
        assert!(pki.admin_key_pem.starts_with("-----BEGIN PRIVATE KEY-----"), "PKCS#8 expected");
        assert!(pki.ca_cert_der().unwrap().len() > 100);
        let kc = pki.admin_kubeconfig("https://127.0.0.1:6443");
        assert!(kc.contains("server: https://127.0.0.1:6443\n"));
        assert!(kc.contains("current-context: dittofs-testenv\n"));
    }
}
