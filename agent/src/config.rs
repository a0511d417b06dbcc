//! The agent's configuration: what the controller's pod template puts in the environment
//! ([`dittofs_api::agent_env`]), plus timings that tests shorten.
//!
//! The bootstrap admin password is not in the environment in a pod: `DITTOFS_ADMIN_PASSWORD_FILE` names
//! a file of a Secret volume mounted into the agent container only, read when the admin is needed
//! ([`AdminPassword::read`]). `DITTOFS_ADMIN_PASSWORD` (the value itself) remains for running the agent
//! outside Kubernetes; the file wins when both are set.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use dittofs_api::{agent_env, constants};

use crate::{
    dittofs::{Limits, TlsSettings},
    error::{AdminPasswordError, AgentError},
    secret::SecretString,
};

/// Where the admin password came from, so a refused login can say which Secret to fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretKeyRef {
    pub name: String,
    pub key: String,
}

/// The bootstrap admin password, or where to read it. `Debug` is safe: a value is a [`SecretString`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdminPassword {
    /// A file (in a pod: the Secret volume), read at every use, so a rotated Secret — which the kubelet
    /// updates in the volume — is picked up by the next attempt after DittoFS refused the old one.
    File(PathBuf),
    /// The value itself (`DITTOFS_ADMIN_PASSWORD` outside Kubernetes, or a test).
    Value(SecretString),
}

impl AdminPassword {
    /// The password, byte for byte as the kubelet wrote the Secret value (no trimming: a password may end
    /// in a space or a newline). A missing file reads as empty: the volume is optional, and an empty
    /// password is reported as missing by the caller when the admin is actually needed.
    pub fn read(&self) -> Result<SecretString, AdminPasswordError> {
        let path = match self {
            AdminPassword::Value(value) => return Ok(value.clone()),
            AdminPassword::File(path) => path,
        };
        // A blocking read is fine here: a few bytes of tmpfs, and only when the admin is needed (rare).
        let bytes = match std::fs::read(path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(SecretString::default()),
            // io::Error's text carries the OS reason, never the file's content.
            Err(e) => return Err(AdminPasswordError::Unreadable { path: display(path), detail: e.to_string() }),
        };
        String::from_utf8(bytes).map(SecretString::new).map_err(|_| AdminPasswordError::NotText { path: display(path) })
    }
}

fn display(path: &Path) -> String {
    path.display().to_string()
}

/// Everything the agent needs to run. `Debug` is safe: the password is a [`SecretString`].
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// This pod's name: the key of the agent's `status.agents` entry and part of its field manager.
    pub pod_name: String,
    /// Namespace of the pod, the DittoServer and the credentials Secret.
    pub namespace: String,
    /// Name of the DittoServer this pod serves.
    pub server_name: String,
    /// DittoFS control-plane URL, on loopback in a pod (`http://127.0.0.1:8080`, `https://` when DittoFS
    /// serves TLS itself).
    pub dittofs_url: String,
    /// Trust root, expected name and client certificate for an `https://` URL; `None` for plain HTTP.
    pub tls: Option<TlsSettings>,
    /// Bootstrap admin user (DittoFS hard-codes `admin`).
    pub admin_username: String,
    /// Bootstrap admin password (or its file); used only to create, reset or repair the `k8s-operator` account.
    pub admin_password: AdminPassword,
    /// The Secret and key the admin password comes from (named in the refused-login message).
    pub admin_secret: Option<SecretKeyRef>,
    /// Address of `/livez`, `/readyz` and `/metrics`; `None` serves nothing (in-process tests).
    pub admin_addr: Option<SocketAddr>,
    /// Intervals, timeouts and bounds.
    pub timings: Timings,
}

/// Intervals, timeouts and bounds. The defaults are the production values.
#[derive(Debug, Clone, PartialEq)]
pub struct Timings {
    /// Period of the fast path (`GET /health/ready`, logged by DittoFS only at DEBUG) while the DittoServer
    /// does not set `spec.adapterDiscovery.fastPathInterval`.
    pub ready_interval: Duration,
    /// Timeout of one `/health/ready` request.
    pub ready_timeout: Duration,
    /// Timeout of one adapter list.
    pub poll_timeout: Duration,
    /// Timeout of login and refresh (bcrypt makes a login take a moment).
    pub auth_timeout: Duration,
    /// Timeout of user creation, password reset and role change (DittoFS's own write timeout is 10 s, its
    /// handler timeout 30 s).
    pub mutation_timeout: Duration,
    /// Fraction of the access-token lifetime after which it is refreshed.
    pub refresh_fraction: f64,
    /// First and largest delay between failed authentication attempts.
    pub auth_backoff_min: Duration,
    pub auth_backoff_max: Duration,
    /// Largest response body read from DittoFS.
    pub max_body_bytes: usize,
    /// Shortest gap between two full polls triggered by the fast path (flapping guard). One default
    /// fast-path period: at 500 ms, a toggle landing just after the recheck list that follows an enable
    /// waited up to 500 ms more (the bench's p99 tail), while samples are 250 ms apart anyway.
    pub min_poll_gap: Duration,
    /// How long the first status write waits for the DittoServer to be seen (for its generation).
    pub first_object_wait: Duration,
    /// Period of the retries of a snapshot policy whose share does not exist yet (or that DittoFS did not
    /// answer): each one is an admin login, so it is slow (the Go operator's 30 s requeue).
    pub snapshot_retry: Duration,
}

impl Default for Timings {
    fn default() -> Self {
        Timings {
            ready_interval: constants::DEFAULT_FAST_PATH_INTERVAL,
            ready_timeout: Duration::from_secs(2),
            poll_timeout: Duration::from_secs(5),
            auth_timeout: Duration::from_secs(10),
            mutation_timeout: Duration::from_secs(35),
            refresh_fraction: 0.8,
            auth_backoff_min: Duration::from_secs(2),
            auth_backoff_max: Duration::from_secs(300),
            max_body_bytes: 1 << 20,
            min_poll_gap: constants::DEFAULT_FAST_PATH_INTERVAL,
            first_object_wait: Duration::from_secs(5),
            snapshot_retry: Duration::from_secs(30),
        }
    }
}

/// The fast-path period of [`agent_env::FAST_PATH_INTERVAL`]: a Go duration within
/// [`constants::FAST_PATH_RANGE`], or the default when unset.
fn fast_path_interval(value: Option<String>) -> Result<Duration, AgentError> {
    let Some(text) = value else { return Ok(constants::DEFAULT_FAST_PATH_INTERVAL) };
    match dittofs_api::duration::parse_go_duration(&text) {
        Ok(d) if constants::FAST_PATH_RANGE.contains(&d) => Ok(d),
        _ => Err(AgentError::Config(format!(
            "{}={text:?} is not a Go duration from 100ms to 10s (e.g. 250ms)",
            agent_env::FAST_PATH_INTERVAL
        ))),
    }
}

impl Timings {
    /// The DittoFS client's share of these timings.
    pub fn client_limits(&self) -> Limits {
        Limits {
            connect_timeout: self.ready_timeout,
            ready_timeout: self.ready_timeout,
            poll_timeout: self.poll_timeout,
            auth_timeout: self.auth_timeout,
            mutation_timeout: self.mutation_timeout,
            max_body_bytes: self.max_body_bytes,
        }
    }
}

impl AgentConfig {
    /// A configuration with default timings and no admin server.
    pub fn new(
        pod_name: impl Into<String>,
        namespace: impl Into<String>,
        server_name: impl Into<String>,
        dittofs_url: impl Into<String>,
        admin_password: SecretString,
    ) -> Self {
        AgentConfig {
            pod_name: pod_name.into(),
            namespace: namespace.into(),
            server_name: server_name.into(),
            dittofs_url: dittofs_url.into(),
            tls: None,
            admin_username: constants::DEFAULT_ADMIN_USERNAME.to_owned(),
            admin_password: AdminPassword::Value(admin_password),
            admin_secret: None,
            admin_addr: None,
            timings: Timings::default(),
        }
    }

    /// Reads the container environment the controller sets (names in [`dittofs_api::agent_env`]).
    pub fn from_env() -> Result<Self, AgentError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// [`Self::from_env`] over any lookup function (tests use a map).
    pub fn from_lookup(raw: impl Fn(&str) -> Option<String>) -> Result<Self, AgentError> {
        let get = |name: &str| raw(name).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());
        let required = |name: &'static str| {
            get(name).ok_or_else(|| AgentError::Config(format!("environment variable {name} is not set")))
        };
        let dittofs_url =
            get(agent_env::DITTOFS_URL).unwrap_or_else(|| format!("http://127.0.0.1:{}", constants::DEFAULT_API_PORT));
        let admin_addr = match get(agent_env::ADMIN_ADDR).as_deref() {
            None => Some(SocketAddr::from(([0, 0, 0, 0], agent_env::DEFAULT_ADMIN_PORT))),
            Some("off") => None,
            Some(addr) => Some(addr.parse().map_err(|e| {
                AgentError::Config(format!("{}={addr:?} is not an address: {e}", agent_env::ADMIN_ADDR))
            })?),
        };
        let admin_secret = match (get(agent_env::ADMIN_SECRET_NAME), get(agent_env::ADMIN_SECRET_KEY)) {
            (Some(name), key) => Some(SecretKeyRef { name, key: key.unwrap_or_else(|| "password".to_owned()) }),
            (None, _) => None,
        };
        let (pod_name, namespace, server_name) = (
            required(agent_env::POD_NAME)?,
            required(agent_env::POD_NAMESPACE)?,
            required(agent_env::DITTOSERVER_NAME)?,
        );
        let tls = match get(agent_env::TLS_CA_FILE) {
            None => None,
            Some(ca) => Some(TlsSettings {
                ca_file: ca.into(),
                server_name: get(agent_env::TLS_SERVER_NAME)
                    .unwrap_or_else(|| format!("{}.{namespace}.svc", dittofs_api::names::api_service(&server_name))),
                client_identity: match (get(agent_env::TLS_CLIENT_CERT_FILE), get(agent_env::TLS_CLIENT_KEY_FILE)) {
                    (Some(cert), Some(key)) => Some((cert.into(), key.into())),
                    (None, None) => None,
                    _ => {
                        return Err(AgentError::Config(format!(
                            "{} and {} go together",
                            agent_env::TLS_CLIENT_CERT_FILE,
                            agent_env::TLS_CLIENT_KEY_FILE
                        )));
                    }
                },
            }),
        };
        let config = AgentConfig {
            pod_name,
            namespace,
            server_name,
            dittofs_url,
            tls,
            admin_username: get(agent_env::ADMIN_USERNAME)
                .unwrap_or_else(|| constants::DEFAULT_ADMIN_USERNAME.to_owned()),
            admin_password: match get(agent_env::ADMIN_PASSWORD_FILE) {
                Some(path) => AdminPassword::File(path.into()),
                // Raw value: a password may legitimately start or end with spaces.
                None => AdminPassword::Value(SecretString::new(raw(agent_env::ADMIN_PASSWORD).unwrap_or_default())),
            },
            admin_secret,
            admin_addr,
            timings: Timings {
                ready_interval: fast_path_interval(get(agent_env::FAST_PATH_INTERVAL))?,
                ..Timings::default()
            },
        };
        config.validate()?;
        Ok(config)
    }

    /// Checks what would otherwise fail later and less clearly.
    pub fn validate(&self) -> Result<(), AgentError> {
        let url = &self.dittofs_url;
        let https = url.starts_with("https://");
        let scheme_ok = url.starts_with("http://") || https;
        let parsed = url.parse::<http::Uri>().ok().filter(|u| u.host().is_some());
        if !scheme_ok || parsed.is_none() {
            return Err(AgentError::Config(format!("{}={url:?} is not an http(s):// URL", agent_env::DITTOFS_URL)));
        }
        // Never https without a trust root (no system store is consulted, and nothing is skipped), and no
        // TLS files beside a plain URL, which would say the pod template is inconsistent.
        if https != self.tls.is_some() {
            return Err(AgentError::Config(format!(
                "{}={url:?} and {}: an https:// URL needs a CA file, and only it does",
                agent_env::DITTOFS_URL,
                agent_env::TLS_CA_FILE
            )));
        }
        for (what, value) in
            [("pod name", &self.pod_name), ("namespace", &self.namespace), ("DittoServer name", &self.server_name)]
        {
            if value.is_empty() {
                return Err(AgentError::Config(format!("{what} is empty")));
            }
        }
        Ok(())
    }

    /// The operator credentials Secret of this server: `<cr>-operator-credentials`.
    pub fn credentials_secret(&self) -> String {
        dittofs_api::names::operator_credentials_secret(&self.server_name)
    }

    /// Where the admin password comes from, for messages: the file and the Secret behind it ("file
    /// /var/run/secrets/dittofs/admin/password (Secret ns/name key k)"), or the env var; never the value.
    pub fn admin_password_source(&self) -> String {
        let secret =
            self.admin_secret.as_ref().map(|s| format!("Secret {}/{} key {:?}", self.namespace, s.name, s.key));
        match (&self.admin_password, secret) {
            (AdminPassword::File(path), Some(secret)) => format!("file {} ({secret})", path.display()),
            (AdminPassword::File(path), None) => format!("file {}", path.display()),
            (AdminPassword::Value(_), Some(secret)) => secret,
            (AdminPassword::Value(_), None) => format!("environment variable {}", agent_env::ADMIN_PASSWORD),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs.iter().map(|(k, v)| ((*k).into(), (*v).into())).collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn reads_the_container_environment() {
        let c = AgentConfig::from_lookup(env(&[
            ("POD_NAME", "fs-0"),
            ("POD_NAMESPACE", "ns"),
            ("DITTOSERVER_NAME", "fs"),
            ("DITTOFS_URL", "http://127.0.0.1:18080"),
            ("DITTOFS_ADMIN_SECRET_NAME", "fs-admin-bootstrap-credentials"),
            ("AGENT_ADMIN_ADDR", "127.0.0.1:9999"),
        ]))
        .unwrap();
        assert_eq!(c.pod_name, "fs-0");
        assert_eq!(c.dittofs_url, "http://127.0.0.1:18080");
        assert_eq!(c.admin_username, "admin");
        assert_eq!(c.admin_addr, Some("127.0.0.1:9999".parse().unwrap()));
        assert_eq!(c.credentials_secret(), "fs-operator-credentials");
        assert_eq!(c.admin_password_source(), "Secret ns/fs-admin-bootstrap-credentials key \"password\"");
    }

    #[test]
    fn defaults_and_refusals() {
        let base = [("POD_NAME", "fs-0"), ("POD_NAMESPACE", "ns"), ("DITTOSERVER_NAME", "fs")];
        let c = AgentConfig::from_lookup(env(&base)).unwrap();
        assert_eq!(c.dittofs_url, "http://127.0.0.1:8080");
        assert_eq!(c.admin_addr, Some("0.0.0.0:8082".parse().unwrap()));
        assert!(AgentConfig::from_lookup(env(&base[..2])).is_err());
        let mut ftp = base.to_vec();
        ftp.push(("DITTOFS_URL", "ftp://127.0.0.1:8080"));
        assert!(AgentConfig::from_lookup(env(&ftp)).is_err());
        let mut off = base.to_vec();
        off.push(("AGENT_ADMIN_ADDR", "off"));
        assert_eq!(AgentConfig::from_lookup(env(&off)).unwrap().admin_addr, None);
    }

    #[test]
    fn tls_settings_come_with_an_https_url_only() {
        let base = [("POD_NAME", "fs-0"), ("POD_NAMESPACE", "ns"), ("DITTOSERVER_NAME", "fs")];
        let with = |extra: &[(&'static str, &'static str)]| AgentConfig::from_lookup(env(&[&base[..], extra].concat()));
        let c = with(&[("DITTOFS_URL", "https://127.0.0.1:8080"), ("DITTOFS_TLS_CA_FILE", "/tls/ca.crt")]).unwrap();
        let tls = c.tls.unwrap();
        assert_eq!(tls.server_name, "fs-api.ns.svc", "the -api Service name by default");
        assert_eq!((tls.ca_file.to_str(), tls.client_identity), (Some("/tls/ca.crt"), None));
        let c = with(&[
            ("DITTOFS_URL", "https://127.0.0.1:8080"),
            ("DITTOFS_TLS_CA_FILE", "/tls/ca.crt"),
            ("DITTOFS_TLS_SERVER_NAME", "fs-api.ns.svc.cluster.local"),
            ("DITTOFS_TLS_CLIENT_CERT_FILE", "/tls/tls.crt"),
            ("DITTOFS_TLS_CLIENT_KEY_FILE", "/tls/tls.key"),
        ])
        .unwrap();
        let tls = c.tls.unwrap();
        assert_eq!(tls.server_name, "fs-api.ns.svc.cluster.local");
        assert_eq!(tls.client_identity, Some(("/tls/tls.crt".into(), "/tls/tls.key".into())));
        // https without a CA, a CA with http, a certificate without its key: refused at start.
        for refused in [
            &[("DITTOFS_URL", "https://127.0.0.1:8080")][..],
            &[("DITTOFS_TLS_CA_FILE", "/tls/ca.crt")],
            &[
                ("DITTOFS_URL", "https://127.0.0.1:8080"),
                ("DITTOFS_TLS_CA_FILE", "/tls/ca.crt"),
                ("DITTOFS_TLS_CLIENT_CERT_FILE", "/tls/tls.crt"),
            ],
        ] {
            assert!(with(refused).is_err(), "{refused:?}");
        }
    }

    #[test]
    fn the_fast_path_period_comes_from_the_environment_within_its_bounds() {
        let base = [("POD_NAME", "fs-0"), ("POD_NAMESPACE", "ns"), ("DITTOSERVER_NAME", "fs")];
        let period = |value: Option<&str>| {
            let mut vars = base.to_vec();
            vars.extend(value.map(|v| ("DITTOFS_AGENT_FAST_PATH_INTERVAL", v)));
            AgentConfig::from_lookup(env(&vars)).map(|c| c.timings.ready_interval)
        };
        assert_eq!(period(None).unwrap(), constants::DEFAULT_FAST_PATH_INTERVAL);
        assert_eq!(period(Some("500ms")).unwrap(), Duration::from_millis(500));
        assert_eq!(period(Some("10s")).unwrap(), Duration::from_secs(10));
        for refused in ["99ms", "11s", "fast", "-1s"] {
            let e = period(Some(refused)).unwrap_err().to_string();
            assert!(e.contains("DITTOFS_AGENT_FAST_PATH_INTERVAL") && e.contains(refused), "{e}");
        }
    }

    const BASE: [(&str, &str); 4] = [
        ("POD_NAME", "fs-0"),
        ("POD_NAMESPACE", "ns"),
        ("DITTOSERVER_NAME", "fs"),
        ("DITTOFS_ADMIN_SECRET_NAME", "fs-admin-bootstrap-credentials"),
    ];

    #[test]
    fn the_admin_password_file_wins_over_the_env_var_and_is_read_byte_exact_at_every_use() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("password");
        let path = file.to_str().unwrap();
        let mut vars = BASE.to_vec();
        vars.extend([("DITTOFS_ADMIN_PASSWORD_FILE", path), ("DITTOFS_ADMIN_PASSWORD", "from-the-env")]);
        let c = AgentConfig::from_lookup(env(&vars)).unwrap();
        assert_eq!(c.admin_password, AdminPassword::File(file.clone()), "the file wins");
        let source = c.admin_password_source();
        assert_eq!(source, format!("file {path} (Secret ns/fs-admin-bootstrap-credentials key \"password\")"));

        // Not mounted (an optional volume without its Secret): empty, which provisioning reports as missing.
        assert!(c.admin_password.read().unwrap().is_empty());
        // As the kubelet writes it: no trimming of spaces or of a trailing newline.
        std::fs::write(&file, " s3cret pass\n").unwrap();
        assert_eq!(c.admin_password.read().unwrap().expose(), " s3cret pass\n");
        // A rotated Secret (the kubelet swaps the file) is seen at the next read.
        std::fs::write(&file, "rotated").unwrap();
        assert_eq!(c.admin_password.read().unwrap().expose(), "rotated");

        std::fs::write(&file, [0xff, 0xfe, b'x']).unwrap();
        let err = c.admin_password.read().unwrap_err();
        assert_eq!(err, AdminPasswordError::NotText { path: path.to_owned() });
        // Unreadable (here: a directory): the message names the file and no value.
        std::fs::remove_file(&file).unwrap();
        std::fs::create_dir(&file).unwrap();
        let text = c.admin_password.read().unwrap_err().to_string();
        assert!(text.contains(path) && !text.contains("rotated"), "{text}");
    }

    #[test]
    fn the_env_var_is_the_admin_password_outside_kubernetes() {
        let mut vars = BASE[..3].to_vec();
        vars.push(("DITTOFS_ADMIN_PASSWORD", " spaced "));
        let c = AgentConfig::from_lookup(env(&vars)).unwrap();
        assert_eq!(c.admin_password.read().unwrap().expose(), " spaced ", "raw, like the file");
        assert_eq!(c.admin_password_source(), "environment variable DITTOFS_ADMIN_PASSWORD");
        assert!(!format!("{c:?}").contains("spaced"), "Debug never shows the value");
        // An empty file path is no path.
        vars.push(("DITTOFS_ADMIN_PASSWORD_FILE", ""));
        let c = AgentConfig::from_lookup(env(&vars)).unwrap();
        assert_eq!(c.admin_password, AdminPassword::Value(" spaced ".into()));
        let only_file = [("DITTOFS_ADMIN_PASSWORD_FILE", "/run/admin/password")];
        let c = AgentConfig::from_lookup(env(&[&BASE[..3], &only_file].concat())).unwrap();
        assert_eq!(c.admin_password_source(), "file /run/admin/password");
    }
}
