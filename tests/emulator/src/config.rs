//! The emulator's configuration: the subset of DittoFS's YAML keys and `DITTOFS_*` env vars that matter here.
//!
//! Like the real server (viper), every key can be overridden by `DITTOFS_` + the upper-cased dotted path with
//! `.` → `_`, and unknown top-level keys are only warned about. Defaults are the real server's.

use std::{collections::BTreeMap, path::PathBuf, time::Duration};

use serde_json::Value;

/// Errors that stop the emulator at start-up, as the real server would stop.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading config file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("parsing config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("invalid value {value:?} for {key}: {reason}")]
    Invalid { key: &'static str, value: String, reason: String },
    #[error("controlplane.tls.{0}")]
    Tls(&'static str),
    #[error("JWT secret must be at least 32 characters (set controlplane.jwt.secret or DITTOFS_CONTROLPLANE_SECRET)")]
    ShortSecret,
}

/// Top-level keys of the real server's `Config` struct; anything else is warned about.
const KNOWN_TOP_LEVEL: &[&str] = &[
    "logging",
    "shutdown_timeout",
    "database",
    "controlplane",
    "admin",
    "kerberos",
    "blockstore",
    "metadata",
    "gc",
    "snapshot",
    "metrics",
    "identity",
    "ldap",
];

/// Log output format (`logging.format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// `controlplane.tls` with both files set (DittoFS's `TLSConfig.Enabled`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsConfig {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    /// Mutual TLS: client certificates signed by these CAs are required.
    pub client_ca: Option<PathBuf>,
    /// "1.2" (default) or "1.3".
    pub min_version: Option<String>,
}

/// `tlsconfig.Config.Validate`: both files or none, a client CA only with them, a known minimum version.
fn tls_config(get: impl Fn(&str) -> Option<String>) -> Result<Option<TlsConfig>, ConfigError> {
    let key = |name: &str| get(&format!("controlplane.tls.{name}")).filter(|v| !v.is_empty());
    let (cert, private, ca, min) = (key("cert_file"), key("key_file"), key("client_ca"), key("min_version"));
    if min.as_deref().is_some_and(|v| !["1.2", "1.3"].contains(&v)) {
        return Err(ConfigError::Tls("min_version is not supported (use \"1.2\" or \"1.3\")"));
    }
    match (cert, private) {
        (Some(cert_file), Some(key_file)) => Ok(Some(TlsConfig {
            cert_file: cert_file.into(),
            key_file: key_file.into(),
            client_ca: ca.map(PathBuf::from),
            min_version: min,
        })),
        (Some(_), None) => {
            Err(ConfigError::Tls("cert_file is set but key_file is missing; both are required to enable TLS"))
        }
        (None, Some(_)) => {
            Err(ConfigError::Tls("key_file is set but cert_file is missing; both are required to enable TLS"))
        }
        (None, None) if ca.is_some() => {
            Err(ConfigError::Tls("client_ca requires cert_file and key_file (mTLS needs a server certificate)"))
        }
        (None, None) => Ok(None),
    }
}

/// What the emulator needs from the configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub host: String,
    pub port: u16,
    pub jwt_secret: String,
    pub access_ttl: Duration,
    pub refresh_ttl: Duration,
    pub require_initial_password_change: bool,
    /// The control-plane database; the emulator keeps a JSON document at this path.
    pub db_path: PathBuf,
    pub log_level: String,
    pub log_format: LogFormat,
    /// `stdout`, `stderr` or a file path.
    pub log_output: String,
    pub admin_initial_password: Option<String>,
    /// `controlplane.tls`: HTTPS when set (both files), see `tls.rs`.
    pub tls: Option<TlsConfig>,
    /// Emulator-only: a file of fault rules (see `faults.rs`); the real server has no such setting.
    pub faults_file: Option<PathBuf>,
    /// `database.type: postgres`: the server's host and port (default 5432). The emulator keeps its data in
    /// the JSON document all the same; it only refuses to start when nothing listens there, as DittoFS
    /// fails when it cannot reach its database.
    pub postgres: Option<(String, u16)>,
}

impl Config {
    /// Loads `file` (if any) and applies env overrides from `env`, like `dfs start --config FILE`.
    pub fn load(file: Option<&std::path::Path>, env: &BTreeMap<String, String>) -> Result<Self, ConfigError> {
        let mut keys = BTreeMap::new();
        if let Some(path) = file {
            let text =
                std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.into(), source })?;
            let doc: Value = if text.trim().is_empty() {
                Value::Null
            } else {
                serde_saphyr::from_str(&text)
                    .map_err(|e| ConfigError::Parse { path: path.into(), message: e.to_string() })?
            };
            if let Value::Object(map) = &doc {
                for key in map.keys().filter(|k| !KNOWN_TOP_LEVEL.contains(&k.as_str())) {
                    eprintln!("WARNING: unknown configuration key {key:?} is ignored");
                }
            }
            flatten("", &doc, &mut keys);
        }
        let get = |key: &str| -> Option<String> {
            let env_name = format!("DITTOFS_{}", key.to_uppercase().replace('.', "_"));
            env.get(&env_name).cloned().or_else(|| keys.get(key).cloned())
        };
        let home = env.get("HOME").cloned().unwrap_or_else(|| "/root".into());
        let config_home = env.get("XDG_CONFIG_HOME").cloned().unwrap_or_else(|| format!("{home}/.config"));
        let state_home = env.get("XDG_STATE_HOME").cloned().unwrap_or_else(|| format!("{home}/.local/state"));

        // The env var wins over the file for the secret, as in the real server (with a warning there too).
        let jwt_secret = env
            .get("DITTOFS_CONTROLPLANE_SECRET")
            .or_else(|| env.get("DITTOFS_CONTROLPLANE_JWT_SECRET"))
            .cloned()
            .or_else(|| keys.get("controlplane.jwt.secret").cloned())
            .unwrap_or_default();
        if jwt_secret.len() < 32 {
            return Err(ConfigError::ShortSecret);
        }
        let log_format = match get("logging.format").as_deref().map(str::to_lowercase).as_deref() {
            None | Some("text") => LogFormat::Text,
            Some("json") => LogFormat::Json,
            Some(other) => {
                return Err(ConfigError::Invalid {
                    key: "logging.format",
                    value: other.into(),
                    reason: "must be text or json".into(),
                });
            }
        };
        let port_text = get("controlplane.port").unwrap_or_else(|| "8080".into());
        let port = port_text.parse().map_err(|_| ConfigError::Invalid {
            key: "controlplane.port",
            value: port_text.clone(),
            reason: "not a port number".into(),
        })?;
        Ok(Config {
            host: get("controlplane.host").unwrap_or_else(|| "127.0.0.1".into()),
            port,
            jwt_secret,
            access_ttl: duration_key(
                get("controlplane.jwt.access_token_duration"),
                "controlplane.jwt.access_token_duration",
                15 * 60,
            )?,
            refresh_ttl: duration_key(
                get("controlplane.jwt.refresh_token_duration"),
                "controlplane.jwt.refresh_token_duration",
                168 * 3600,
            )?,
            require_initial_password_change: get("controlplane.require_initial_password_change")
                .is_none_or(|v| v != "false"),
            db_path: get("database.sqlite.path")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from(format!("{config_home}/dittofs/controlplane.db"))),
            log_level: get("logging.level").unwrap_or_else(|| "INFO".into()).to_uppercase(),
            log_format,
            log_output: get("logging.output").unwrap_or_else(|| format!("{state_home}/dittofs/dittofs.log")),
            admin_initial_password: env.get("DITTOFS_ADMIN_INITIAL_PASSWORD").filter(|p| !p.is_empty()).cloned(),
            tls: tls_config(get)?,
            faults_file: env.get("DITTOFS_EMULATOR_FAULTS_FILE").map(PathBuf::from),
            postgres: postgres_config(get)?,
        })
    }
}

/// `database.postgres.{host,port}` when `database.type` is postgres (DittoFS requires the host).
fn postgres_config(get: impl Fn(&str) -> Option<String>) -> Result<Option<(String, u16)>, ConfigError> {
    if get("database.type").is_none_or(|t| t != "postgres") {
        return Ok(None);
    }
    let host = get("database.postgres.host").filter(|h| !h.is_empty()).ok_or(ConfigError::Invalid {
        key: "database.postgres.host",
        value: String::new(),
        reason: "required for database.type postgres".into(),
    })?;
    let port_text = get("database.postgres.port").unwrap_or_else(|| "5432".into());
    let port = port_text.parse().map_err(|_| ConfigError::Invalid {
        key: "database.postgres.port",
        value: port_text.clone(),
        reason: "not a port number".into(),
    })?;
    Ok(Some((host, port)))
}

/// Flattens a YAML document into dotted keys with scalar values rendered as strings.
fn flatten(prefix: &str, value: &Value, out: &mut BTreeMap<String, String>) {
    let scalar = match value {
        Value::Object(map) => {
            for (k, v) in map {
                let key = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
                flatten(&key, v, out);
            }
            return;
        }
        Value::Null | Value::Array(_) => return,
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    out.insert(prefix.to_string(), scalar);
}

fn duration_key(value: Option<String>, key: &'static str, default_secs: u64) -> Result<Duration, ConfigError> {
    match value {
        None => Ok(Duration::from_secs(default_secs)),
        Some(text) => parse_go_duration(&text).filter(|d| !d.is_zero()).ok_or(ConfigError::Invalid {
            key,
            value: text,
            reason: "not a positive Go duration such as 15m or 90s".into(),
        }),
    }
}

/// Parses a Go `time.Duration` string such as `1h30m`, `20s` or `500ms` (no sign).
pub fn parse_go_duration(text: &str) -> Option<Duration> {
    let mut rest = text.trim();
    if rest == "0" {
        return Some(Duration::ZERO);
    }
    let mut total = 0f64;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let num_len = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
        let number: f64 = rest[..num_len].parse().ok()?;
        rest = &rest[num_len..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        rest = &rest[unit_len..];
        total += number * scale;
    }
    Some(Duration::from_secs_f64(total))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn go_durations() {
        assert_eq!(parse_go_duration("15m"), Some(Duration::from_secs(900)));
        assert_eq!(parse_go_duration("1h30m"), Some(Duration::from_secs(5400)));
        assert_eq!(parse_go_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_go_duration("1.5s"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_go_duration("abc"), None);
        assert_eq!(parse_go_duration("-5s"), None);
        assert_eq!(parse_go_duration("5"), None);
    }

    #[test]
    fn file_and_env_with_env_winning() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.yaml");
        std::fs::write(
            &path,
            "logging: {level: INFO, format: json, output: stdout}\ncontrolplane:\n  host: 127.0.0.1\n  port: 18080\n  jwt:\n    secret: file-secret-file-secret-file-secret-xx\n    access_token_duration: 20s\ndatabase: {type: sqlite, sqlite: {path: /tmp/x.db}}\n",
        )
        .unwrap();
        let cfg = Config::load(Some(&path), &env(&[("DITTOFS_CONTROLPLANE_PORT", "18081")])).unwrap();
        assert_eq!(cfg.port, 18081);
        assert_eq!(cfg.access_ttl, Duration::from_secs(20));
        assert_eq!(cfg.refresh_ttl, Duration::from_secs(168 * 3600));
        assert_eq!(cfg.log_format, LogFormat::Json);
        assert_eq!(cfg.db_path, PathBuf::from("/tmp/x.db"));
        let cfg =
            Config::load(Some(&path), &env(&[("DITTOFS_CONTROLPLANE_SECRET", "env-secret-env-secret-env-secret-env")]))
                .unwrap();
        assert!(cfg.jwt_secret.starts_with("env-secret"));
    }

    #[test]
    fn the_tls_block_is_validated_like_dittofs() {
        let secret = ("DITTOFS_CONTROLPLANE_SECRET", "0123456789abcdef0123456789abcdef");
        let tls = |pairs: &[(&str, &str)]| Config::load(None, &env(&[&[secret][..], pairs].concat())).map(|c| c.tls);
        assert_eq!(tls(&[]).unwrap(), None);
        let both = [("DITTOFS_CONTROLPLANE_TLS_CERT_FILE", "/t/c"), ("DITTOFS_CONTROLPLANE_TLS_KEY_FILE", "/t/k")];
        let got = tls(&both).unwrap().unwrap();
        assert_eq!((got.cert_file, got.client_ca, got.min_version), (PathBuf::from("/t/c"), None, None));
        for refused in [
            &both[..1],
            &both[1..],
            &[("DITTOFS_CONTROLPLANE_TLS_CLIENT_CA", "/t/ca")],
            &[both[0], both[1], ("DITTOFS_CONTROLPLANE_TLS_MIN_VERSION", "1.1")],
        ] {
            assert!(matches!(tls(refused), Err(ConfigError::Tls(_))), "{refused:?}");
        }
    }

    #[test]
    fn postgres_needs_a_host_and_takes_its_port_from_env() {
        let secret = ("DITTOFS_CONTROLPLANE_SECRET", "0123456789abcdef0123456789abcdef");
        let pg =
            |pairs: &[(&str, &str)]| Config::load(None, &env(&[&[secret][..], pairs].concat())).map(|c| c.postgres);
        assert_eq!(pg(&[]).unwrap(), None);
        assert!(matches!(pg(&[("DITTOFS_DATABASE_TYPE", "postgres")]), Err(ConfigError::Invalid { .. })));
        let set = [("DITTOFS_DATABASE_TYPE", "postgres"), ("DITTOFS_DATABASE_POSTGRES_HOST", "db")];
        assert_eq!(pg(&set).unwrap(), Some(("db".to_owned(), 5432)));
        let port = [set[0], set[1], ("DITTOFS_DATABASE_POSTGRES_PORT", "6543")];
        assert_eq!(pg(&port).unwrap(), Some(("db".to_owned(), 6543)));
    }

    #[test]
    fn short_secret_and_bad_duration_are_refused() {
        assert!(matches!(
            Config::load(None, &env(&[("DITTOFS_CONTROLPLANE_SECRET", "short")])),
            Err(ConfigError::ShortSecret)
        ));
        let e = env(&[
            ("DITTOFS_CONTROLPLANE_SECRET", "0123456789abcdef0123456789abcdef"),
            ("DITTOFS_CONTROLPLANE_JWT_ACCESS_TOKEN_DURATION", "soon"),
        ]);
        assert!(matches!(Config::load(None, &e), Err(ConfigError::Invalid { .. })));
    }
}
