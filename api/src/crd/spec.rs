//! Spec sections of the server itself: storage, database, control-plane API, identity, Secret references.

use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::constants;

/// A key in a Secret of the DittoServer's namespace.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct SecretKeyRef {
    /// Name of the Secret, in the DittoServer's namespace.
    #[schemars(length(min = 1, max = 253))]
    #[x_kube(validation = crate::crd::cel::rule(crate::crd::cel::OBJECT_NAME_RULE, crate::crd::cel::OBJECT_NAME_MESSAGE))]
    pub name: String,
    /// Key within the Secret's data.
    #[schemars(length(min = 1, max = 253))]
    #[x_kube(validation = crate::crd::cel::rule(crate::crd::cel::SECRET_KEY_RULE, crate::crd::cel::SECRET_KEY_MESSAGE))]
    pub key: String,
    /// Accepted for manifests written for the Go operator (a Kubernetes SecretKeySelector field) and
    /// ignored, as the Go operator ignores it: the Secret and key are always required.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub optional: Option<bool>,
}

/// Persistent volumes of the server pod. A PVC is created from each size when the StatefulSet is
/// created; Kubernetes does not let the sizes or the class change afterwards.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct StorageSpec {
    /// Size of the metadata-store volume, mounted at /data/store/metadata (e.g. "10Gi").
    #[schemars(length(min = 1, max = 32))]
    #[x_kube(
        validation = crate::crd::cel::rule(crate::crd::cel::SIZE_FORMAT_RULE, crate::crd::cel::SIZE_FORMAT_MESSAGE),
        validation = crate::crd::cel::rule(crate::crd::cel::NON_ZERO_RULE, crate::crd::cel::NON_ZERO_MESSAGE)
    )]
    pub metadata_size: String,
    /// Size of the content (block-store) volume, mounted at /data/store/block (e.g. "50Gi").
    /// It holds local chunks and the block store's write-ahead log; leave it unset for pure-S3 shares,
    /// and no volume is created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 32))]
    #[x_kube(
        validation = crate::crd::cel::rule(crate::crd::cel::SIZE_FORMAT_RULE, crate::crd::cel::SIZE_FORMAT_MESSAGE),
        validation = crate::crd::cel::rule(crate::crd::cel::NON_ZERO_RULE, crate::crd::cel::NON_ZERO_MESSAGE)
    )]
    pub content_size: Option<String>,
    /// Size of the control-plane volume, mounted at /data/controlplane, which holds the
    /// control-plane SQLite database. Defaults to "1Gi".
    #[serde(default = "default_control_plane_size")]
    #[schemars(length(min = 1, max = 32))]
    #[x_kube(
        validation = crate::crd::cel::rule(crate::crd::cel::SIZE_FORMAT_RULE, crate::crd::cel::SIZE_FORMAT_MESSAGE),
        validation = crate::crd::cel::rule(crate::crd::cel::NON_ZERO_RULE, crate::crd::cel::NON_ZERO_MESSAGE)
    )]
    pub control_plane_size: String,
    /// StorageClass of the volumes. Unset: the cluster's default StorageClass.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub storage_class_name: Option<String>,
}

fn default_control_plane_size() -> String {
    constants::DEFAULT_CONTROL_PLANE_SIZE.to_owned()
}

/// Kind of control-plane database.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
// No schema description: it would replace the description of each field of this type.
#[schemars(description = "")]
pub enum DatabaseType {
    /// SQLite file on the control-plane volume (the default).
    #[default]
    Sqlite,
    /// PostgreSQL; the connection settings come from database.postgresSecretRef.
    Postgres,
}

/// Control-plane database of DittoFS (users, shares, stores, adapters).
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct DatabaseSpec {
    /// Database type: "sqlite" (default) or "postgres". When postgresSecretRef is set,
    /// PostgreSQL is used whatever this says.
    #[serde(default)]
    pub r#type: DatabaseType,
    /// SQLite settings, used when the database is SQLite.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sqlite: Option<SqliteSpec>,
    /// Secret with the PostgreSQL connection settings. As with the Go operator, the settings are
    /// read from the fixed keys host, database, user and password (optional: port, sslmode) of the
    /// named Secret; `key` is required for compatibility but not used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub postgres_secret_ref: Option<SecretKeyRef>,
}

impl Default for DatabaseSpec {
    fn default() -> Self {
        Self { r#type: DatabaseType::Sqlite, sqlite: None, postgres_secret_ref: None }
    }
}

/// SQLite settings.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct SqliteSpec {
    /// Path of the database file in the container. It must be on a persistent volume: the default
    /// "/data/controlplane/controlplane.db" is on the control-plane volume. A path elsewhere is wiped
    /// at every restart, with all share and store definitions.
    #[serde(default = "default_sqlite_path")]
    #[schemars(length(min = 1, max = 1024))]
    #[x_kube(validation = crate::crd::cel::rule(crate::crd::cel::ABSOLUTE_PATH_RULE, crate::crd::cel::ABSOLUTE_PATH_MESSAGE))]
    pub path: String,
}

fn default_sqlite_path() -> String {
    constants::DEFAULT_SQLITE_PATH.to_owned()
}

/// The DittoFS control-plane REST API.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = crate::crd::cel::rule(crate::crd::cel::CLIENT_CA_RULE, crate::crd::cel::CLIENT_CA_MESSAGE),
    validation = crate::crd::cel::rule(crate::crd::cel::API_AGENT_PORT_RULE, crate::crd::cel::API_AGENT_PORT_MESSAGE)
)]
pub struct ControlPlaneSpec {
    /// TCP port of the API in the pod and on the `<name>-api` Service (1-65535, default 8080); not
    /// 8082, the agent's admin port.
    #[serde(default = "default_api_port")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: i32,
    /// Reach the API over https. Implied by certSecretName; set it alone when TLS is terminated in
    /// front of the pod (e.g. by a mesh): DittoFS, its probes and the agent then use plain http.
    #[serde(default)]
    pub tls: bool,
    /// Name of a kubernetes.io/tls Secret (keys tls.crt, tls.key and ca.crt) with which the server
    /// serves the API over TLS. The agent verifies the server against its ca.crt and the name
    /// <name>-api.<namespace>.svc, which the certificate must carry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    pub cert_secret_name: Option<String>,
    /// Name of a Secret with a CA bundle under ca.crt: the API then requires client certificates
    /// signed by it (mutual TLS). Needs certSecretName. The agent presents certSecretName's own
    /// certificate, which must then allow client authentication and be signed by this CA.
    #[serde(default, rename = "clientCASecretName", skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    pub client_ca_secret_name: Option<String>,
}

impl Default for ControlPlaneSpec {
    fn default() -> Self {
        Self { port: default_api_port(), tls: false, cert_secret_name: None, client_ca_secret_name: None }
    }
}

fn default_api_port() -> i32 {
    i32::from(constants::DEFAULT_API_PORT)
}

/// Kind of identity store.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
// No schema description: it would replace the description of each field of this type.
#[schemars(description = "")]
pub enum IdentityType {
    /// Built-in store (the only kind).
    #[default]
    Memory,
}

/// Authentication of the DittoFS API and its first admin user.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct IdentitySpec {
    /// Identity store type; only "memory".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub r#type: Option<IdentityType>,
    /// JWT signing of API tokens. Unset: the controller generates and keeps a signing key in the
    /// Secret `<name>-jwt-secret`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwt: Option<JwtSpec>,
    /// The first admin user of DittoFS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin: Option<AdminSpec>,
    /// LDAP / Active Directory identity provider of DittoFS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ldap: Option<super::identity::LdapSpec>,
    /// Kerberos / Active Directory authentication of NFS and SMB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kerberos: Option<super::identity::KerberosSpec>,
}

/// JWT settings of the API.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct JwtSpec {
    /// Secret key holding the JWT signing secret: at least 32 bytes, or DittoFS does not start (a
    /// shorter key is reported by the ConfigReady condition and a Warning Event).
    pub secret_ref: SecretKeyRef,
    /// Lifetime of access tokens, a Go duration (default "15m").
    #[serde(default = "default_access_token_duration")]
    #[schemars(length(min = 1, max = 32))]
    #[x_kube(
        validation = crate::crd::cel::rule(crate::crd::cel::DURATION_FORMAT_RULE, crate::crd::cel::DURATION_FORMAT_MESSAGE),
        validation = crate::crd::cel::rule(crate::crd::cel::NON_ZERO_RULE, crate::crd::cel::NON_ZERO_MESSAGE)
    )]
    pub access_token_duration: String,
    /// Lifetime of refresh tokens, a Go duration (default "168h", 7 days).
    #[serde(default = "default_refresh_token_duration")]
    #[schemars(length(min = 1, max = 32))]
    #[x_kube(
        validation = crate::crd::cel::rule(crate::crd::cel::DURATION_FORMAT_RULE, crate::crd::cel::DURATION_FORMAT_MESSAGE),
        validation = crate::crd::cel::rule(crate::crd::cel::NON_ZERO_RULE, crate::crd::cel::NON_ZERO_MESSAGE)
    )]
    pub refresh_token_duration: String,
}

fn default_access_token_duration() -> String {
    constants::DEFAULT_ACCESS_TOKEN_DURATION.to_owned()
}

fn default_refresh_token_duration() -> String {
    constants::DEFAULT_REFRESH_TOKEN_DURATION.to_owned()
}

/// The first admin user, created by DittoFS at its first start.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct AdminSpec {
    /// User name of the admin (default "admin").
    #[serde(default = "default_admin_username")]
    #[schemars(length(min = 1, max = 253))]
    pub username: String,
    /// Secret key holding the admin password in cleartext (DittoFS hashes it). Unset: the controller
    /// generates one into the Secret `<name>-admin-bootstrap-credentials` (keys username, password).
    /// Used once, when DittoFS creates the admin; changing it later does not change the password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_secret_ref: Option<SecretKeyRef>,
}

fn default_admin_username() -> String {
    constants::DEFAULT_ADMIN_USERNAME.to_owned()
}
