//! The DittoFS `config.yaml` rendered from the spec (the real server's format, as the Go operator renders it),
//! and the ConfigMap `<cr>-config` that carries it into the pod.
//!
//! No secrets go into the file: DittoFS reads the JWT key, the admin password, the PostgreSQL settings and
//! the LDAP and machine-account passwords from env vars the pod template fills from Secrets. The file has no adapter section:
//! adapters live in DittoFS's database and are managed through its API.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::ResourceExt;
use serde::Serialize;

use dittofs_api::crd::{LogFormat, LogLevel};
use dittofs_api::labels::{COMPONENT_CONFIG, common_labels};
use dittofs_api::{DittoServer, DittoServerSpec, constants, names};

use super::child_meta;

/// Mount path of the rendered config in the DittoFS container.
pub const CONFIG_DIR: &str = "/config";
/// Path DittoFS is started with (`--config`).
pub const CONFIG_PATH: &str = "/config/config.yaml";
/// Mount path of the server certificate Secret (native TLS).
pub const TLS_DIR: &str = "/tls";
/// Mount path of the client CA Secret (mutual TLS).
pub const TLS_CLIENT_CA_DIR: &str = "/tls-client-ca";
/// Mount path of the metrics bearer token.
pub const METRICS_TOKEN_DIR: &str = "/metrics-token";
/// DittoFS drains adapters for at most this long on stop; the grace period default is derived from it.
pub const SHUTDOWN_TIMEOUT: &str = "30s";
/// Placeholder the env vars `DITTOFS_DATABASE_POSTGRES_*` override (viper binds env only to keys that exist).
pub const POSTGRES_PLACEHOLDER: &str = "from-env";

#[derive(Serialize)]
struct Config<'a> {
    logging: Logging<'a>,
    shutdown_timeout: &'a str,
    database: Database<'a>,
    controlplane: ControlPlane<'a>,
    admin: Admin<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    metrics: Option<Metrics<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ldap: Option<super::identity::Ldap<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    kerberos: Option<super::identity::Kerberos<'a>>,
}

#[derive(Serialize)]
struct Logging<'a> {
    level: &'a str,
    format: &'a str,
    output: &'a str,
}

#[derive(Serialize)]
struct Database<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    sqlite: Option<Sqlite<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    postgres: Option<Postgres<'a>>,
}

#[derive(Serialize)]
struct Sqlite<'a> {
    path: &'a str,
}

#[derive(Serialize)]
struct Postgres<'a> {
    host: &'a str,
    database: &'a str,
    user: &'a str,
    password: &'a str,
}

#[derive(Serialize)]
struct ControlPlane<'a> {
    host: &'a str,
    port: i32,
    jwt: Jwt<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tls: Option<Tls>,
}

#[derive(Serialize)]
struct Jwt<'a> {
    access_token_duration: &'a str,
    refresh_token_duration: &'a str,
}

#[derive(Serialize)]
struct Tls {
    cert_file: String,
    key_file: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    client_ca: Option<String>,
}

#[derive(Serialize)]
struct Admin<'a> {
    username: &'a str,
}

#[derive(Serialize)]
struct Metrics<'a> {
    enabled: bool,
    host: &'a str,
    port: i32,
    path: &'a str,
    auth: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    token_file: Option<String>,
}

/// Whether the control-plane database is PostgreSQL: a `postgresSecretRef` wins whatever `type` says (as in
/// Go), and so does Percona (where Go rendered SQLite beside a `DATABASE_URL` DittoFS never reads).
pub fn uses_postgres(spec: &DittoServerSpec) -> bool {
    spec.database.postgres_secret_ref.is_some() || spec.percona.as_ref().is_some_and(|p| p.enabled)
}

/// The client CA Secret name, when mutual TLS is configured (needs a server certificate too).
pub fn client_ca_secret(spec: &DittoServerSpec) -> Option<&str> {
    cert_secret(spec)?;
    spec.control_plane.client_ca_secret_name.as_deref().filter(|s| !s.is_empty())
}

/// The server certificate Secret name, when native TLS is configured.
pub fn cert_secret(spec: &DittoServerSpec) -> Option<&str> {
    spec.control_plane.cert_secret_name.as_deref().filter(|s| !s.is_empty())
}

/// The enabled metrics section, if any.
pub fn metrics(spec: &DittoServerSpec) -> Option<&dittofs_api::crd::MetricsSpec> {
    spec.metrics.as_ref().filter(|m| m.enabled)
}

/// Renders `config.yaml`. Deterministic: the same spec always gives the same text.
pub fn render(spec: &DittoServerSpec) -> String {
    let jwt = spec.identity.as_ref().and_then(|i| i.jwt.as_ref());
    let admin_username = spec
        .identity
        .as_ref()
        .and_then(|i| i.admin.as_ref())
        .map_or(constants::DEFAULT_ADMIN_USERNAME, |a| a.username.as_str());
    let sqlite_path = spec.database.sqlite.as_ref().map_or(constants::DEFAULT_SQLITE_PATH, |s| s.path.as_str());
    let database = if uses_postgres(spec) {
        Database {
            kind: "postgres",
            sqlite: None,
            postgres: Some(Postgres {
                host: POSTGRES_PLACEHOLDER,
                database: POSTGRES_PLACEHOLDER,
                user: POSTGRES_PLACEHOLDER,
                password: POSTGRES_PLACEHOLDER,
            }),
        }
    } else {
        Database { kind: "sqlite", sqlite: Some(Sqlite { path: sqlite_path }), postgres: None }
    };
    let config = Config {
        logging: Logging {
            level: match spec.logging.level {
                LogLevel::Debug => "DEBUG",
                LogLevel::Info => "INFO",
                LogLevel::Warn => "WARN",
                LogLevel::Error => "ERROR",
            },
            format: match spec.logging.format {
                LogFormat::Text => "text",
                LogFormat::Json => "json",
            },
            output: &spec.logging.output,
        },
        shutdown_timeout: SHUTDOWN_TIMEOUT,
        database,
        controlplane: ControlPlane {
            // All interfaces: the kubelet probes the pod IP; the agent dials loopback.
            host: "0.0.0.0",
            port: spec.control_plane.port,
            jwt: Jwt {
                access_token_duration: jwt
                    .map_or(constants::DEFAULT_ACCESS_TOKEN_DURATION, |j| j.access_token_duration.as_str()),
                refresh_token_duration: jwt
                    .map_or(constants::DEFAULT_REFRESH_TOKEN_DURATION, |j| j.refresh_token_duration.as_str()),
            },
            tls: cert_secret(spec).map(|_| Tls {
                cert_file: format!("{TLS_DIR}/tls.crt"),
                key_file: format!("{TLS_DIR}/tls.key"),
                client_ca: client_ca_secret(spec).map(|_| format!("{TLS_CLIENT_CA_DIR}/ca.crt")),
            }),
        },
        admin: Admin { username: admin_username },
        metrics: metrics(spec).map(|m| Metrics {
            enabled: true,
            host: "0.0.0.0",
            port: m.port,
            path: &m.path,
            auth: if m.bearer_token_secret.is_some() { "token" } else { "none" },
            token_file: m.bearer_token_secret.as_ref().map(|_| format!("{METRICS_TOKEN_DIR}/token")),
        }),
        ldap: super::identity::ldap(spec),
        kerberos: super::identity::kerberos(spec),
    };
    serde_saphyr::to_string(&config).expect("the config structs serialize to YAML")
}

/// `<cr>-config` with `config.yaml` = `config` (the text [`render`] gave for this server).
pub fn config_map(ds: &DittoServer, config: &str) -> ConfigMap {
    let cr = ds.name_any();
    ConfigMap {
        metadata: child_meta(ds, names::config_map(&cr), common_labels(&cr, COMPONENT_CONFIG)),
        data: Some(BTreeMap::from([(names::CONFIG_KEY.to_owned(), config.to_owned())])),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::desired::test_support::server;
    use serde_json::{Value, json};

    fn parsed(extra: Value) -> Value {
        let text = render(&server(extra).spec);
        serde_saphyr::from_str(&text).expect("rendered YAML parses")
    }

    #[test]
    fn defaults_match_the_go_operator() {
        let c = parsed(json!({}));
        assert_eq!(
            c,
            json!({
                "logging": {"level": "INFO", "format": "json", "output": "stdout"},
                "shutdown_timeout": "30s",
                "database": {"type": "sqlite", "sqlite": {"path": "/data/controlplane/controlplane.db"}},
                "controlplane": {"host": "0.0.0.0", "port": 8080,
                    "jwt": {"access_token_duration": "15m", "refresh_token_duration": "168h"}},
                "admin": {"username": "admin"}
            })
        );
        let top: Vec<_> = c.as_object().unwrap().keys().cloned().collect();
        assert!(!top.iter().any(|k| k == "adapters"));
    }

    #[test]
    fn everything_set() {
        let c = parsed(json!({
            "controlPlane": {"port": 9000, "certSecretName": "cert", "clientCASecretName": "ca"},
            "database": {"type": "sqlite", "postgresSecretRef": {"name": "pg", "key": "x"}},
            "identity": {"jwt": {"secretRef": {"name": "j", "key": "k"}, "accessTokenDuration": "5m"}},
            "metrics": {"enabled": true, "port": 9191, "bearerTokenSecret": {"name": "t", "key": "k"}},
            "logging": {"level": "DEBUG", "format": "text"}
        }));
        assert_eq!(c["database"]["type"], "postgres");
        assert_eq!(c["database"]["postgres"]["host"], POSTGRES_PLACEHOLDER);
        assert!(c["database"].get("sqlite").is_none());
        assert_eq!(c["controlplane"]["port"], 9000);
        assert_eq!(c["controlplane"]["tls"]["client_ca"], "/tls-client-ca/ca.crt");
        assert_eq!(c["controlplane"]["jwt"]["access_token_duration"], "5m");
        assert_eq!(c["metrics"]["auth"], "token");
        assert_eq!(c["metrics"]["token_file"], "/metrics-token/token");
        assert_eq!(c["logging"]["format"], "text");
        // Nothing secret in the file.
        assert!(c["controlplane"]["jwt"].get("secret").is_none());
    }

    #[test]
    fn percona_renders_postgres_never_sqlite() {
        // Go rendered SQLite here (beside a DATABASE_URL DittoFS never reads): DittoFS ran on an empty database.
        let c = parsed(json!({"percona": {"enabled": true}}));
        assert_eq!(c["database"]["type"], "postgres");
        assert!(c["database"].get("sqlite").is_none());
        let keys: Vec<_> = c["database"]["postgres"].as_object().unwrap().keys().cloned().collect();
        assert_eq!(keys, ["database", "host", "password", "user"]);
        let off = parsed(json!({"percona": {"enabled": false}}));
        assert_eq!(off["database"]["type"], "sqlite");
    }

    #[test]
    fn the_config_map_carries_exactly_the_rendered_file() {
        let ds = server(json!({}));
        let cm = config_map(&ds, "logging: {}\n");
        assert_eq!(cm.metadata.name.as_deref(), Some("fs-config"));
        assert_eq!(cm.metadata.namespace.as_deref(), Some("ns"));
        assert_eq!(cm.metadata.labels.as_ref().unwrap()["app.kubernetes.io/component"], "config");
        assert_eq!(cm.metadata.owner_references.as_ref().unwrap()[0].uid, "uid-1");
        let data = cm.data.unwrap();
        assert_eq!(data.keys().collect::<Vec<_>>(), ["config.yaml"]);
        assert_eq!(data["config.yaml"], "logging: {}\n");
    }

    #[test]
    fn rendering_is_deterministic() {
        let ds = server(json!({"metrics": {"enabled": true}}));
        assert_eq!(render(&ds.spec), render(&ds.spec.clone()));
    }
}
