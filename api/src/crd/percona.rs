//! `spec.percona`: a Percona PostgreSQL cluster (`PerconaPGCluster`) created for the control-plane database,
//! with the Go operator's fields and defaults.

use kube::KubeSchema;
use serde::{Deserialize, Serialize};

/// Percona PostgreSQL cluster for the control-plane database (needs Percona's operator in the cluster).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct PerconaSpec {
    /// Create a PerconaPGCluster `<name>-postgres` and run DittoFS on it (default false). DittoFS is not
    /// started until the cluster is ready and its user Secret `<name>-postgres-pguser-dittofs` exists;
    /// it never falls back to SQLite. The cluster is created once and never updated afterwards.
    #[serde(default)]
    pub enabled: bool,
    /// Delete the cluster and its data with the DittoServer (default false: the cluster is kept,
    /// its owner reference removed).
    #[serde(default)]
    pub delete_with_server: bool,
    /// PostgreSQL instances (1-5, default 1).
    #[serde(default = "default_replicas")]
    #[schemars(range(min = 1, max = 5))]
    pub replicas: i32,
    /// Size of each instance's data volume (default "10Gi").
    #[serde(default = "default_storage_size")]
    #[schemars(length(min = 1, max = 32))]
    #[x_kube(
        validation = crate::crd::cel::rule(crate::crd::cel::SIZE_FORMAT_RULE, crate::crd::cel::SIZE_FORMAT_MESSAGE),
        validation = crate::crd::cel::rule(crate::crd::cel::NON_ZERO_RULE, crate::crd::cel::NON_ZERO_MESSAGE)
    )]
    pub storage_size: String,
    /// StorageClass of the data volumes (may differ from DittoFS's). Unset: the cluster's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub storage_class_name: Option<String>,
    /// Database owned by the user `dittofs` (default "dittofs").
    #[serde(default = "default_database_name")]
    #[schemars(length(min = 1, max = 63))]
    pub database_name: String,
    /// pgBackRest backups to S3 (disabled unless `enabled`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup: Option<PerconaBackupSpec>,
}

/// pgBackRest backups of the cluster to an S3-compatible bucket (repository `repo1`).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct PerconaBackupSpec {
    /// Configure the backups (default false: backups are explicitly disabled in the cluster).
    #[serde(default)]
    pub enabled: bool,
    /// Secret with the S3 credentials in pgBackRest's s3.conf format, projected into pgBackRest's config.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_secret_ref: Option<LocalObjectRef>,
    /// Bucket of the backups.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub bucket: String,
    /// Endpoint of the S3-compatible storage (e.g. https://s3.example.com).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub endpoint: String,
    /// Region of the bucket (default "eu-west-1").
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub region: String,
    /// Cron schedule of full backups (default "0 2 * * *").
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub full_schedule: String,
    /// Cron schedule of incremental backups (default "0 * * * *").
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub incr_schedule: String,
    /// Days of backups to keep (Go-operator field, at least 1; as in the Go operator it is not passed
    /// to the cluster, whose own retention applies).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub retention_days: Option<i32>,
}

/// A Secret of the DittoServer's namespace, by name.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct LocalObjectRef {
    /// Name of the Secret.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

fn default_replicas() -> i32 {
    1
}

fn default_storage_size() -> String {
    "10Gi".to_owned()
}

fn default_database_name() -> String {
    "dittofs".to_owned()
}

impl PerconaSpec {
    /// The section asks for a cluster.
    pub fn is_enabled(percona: Option<&Self>) -> bool {
        percona.is_some_and(|p| p.enabled)
    }
}
