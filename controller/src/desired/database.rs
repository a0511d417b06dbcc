//! The control-plane database on PostgreSQL: the env DittoFS reads it from, the Percona cluster the Go
//! operator creates for `spec.percona`, the init container that waits for it, and whether the pod may be
//! (re)rendered yet.
//!
//! With `database.postgresSecretRef` DittoFS reads `DITTOFS_DATABASE_POSTGRES_*` from the fixed keys of that
//! Secret (as in Go). With `percona.enabled` the Go operator only injected `DATABASE_URL`, which DittoFS never
//! reads, and rendered SQLite: DittoFS silently ran on an empty SQLite database. Here the config says
//! postgres and the same `DITTOFS_DATABASE_POSTGRES_*` come from Percona's user Secret (its keys `host`,
//! `port`, `dbname`, `user`, `password`); `DATABASE_URL` is kept for whatever reads it. Percona's clusters
//! accept TLS connections only (their pg_hba has `hostssl` lines), so sslmode is `require`.

use k8s_openapi::api::core::v1::{Container, EnvVar, EnvVarSource, SecretKeySelector};
use kube::ResourceExt;
use serde_json::{Value, json};

use dittofs_api::DittoServer;
use dittofs_api::crd::PerconaSpec;

use super::owner_reference;
use super::statefulset::POSTGRES_KEYS;

/// `pgv2.percona.com/v2`.
pub const PERCONA_API_VERSION: &str = "pgv2.percona.com/v2";
/// Kind of Percona's cluster.
pub const PERCONA_KIND: &str = "PerconaPGCluster";
/// The Percona operator version the cluster is written for (its `crVersion`), as in Go.
pub const PERCONA_CR_VERSION: &str = "2.8.0";
/// PostgreSQL major version of the cluster, as in Go.
pub const POSTGRES_VERSION: i64 = 16;
/// The PostgreSQL user DittoFS logs in as; Percona names its Secret after it.
pub const PERCONA_USER: &str = "dittofs";
/// `status.state` of a ready cluster.
pub const PERCONA_READY_STATE: &str = "ready";
/// sslmode for Percona (TLS only on its side; its CA is not checked, as libpq's `require`).
pub const PERCONA_SSLMODE: &str = "require";
/// The init container that waits for the database.
pub const WAIT_CONTAINER: &str = "wait-for-postgres";
/// Its image: has `pg_isready` and a shell.
pub const WAIT_IMAGE: &str = "postgres:16-alpine";
/// How long it waits before failing (the kubelet then restarts it, with back-off).
pub const WAIT_TIMEOUT_SECONDS: u32 = 300;

/// Keys of Percona's user Secret the pod reads: env var, key.
pub const PERCONA_KEYS: [(&str, &str); 6] = [
    ("DITTOFS_DATABASE_POSTGRES_HOST", "host"),
    ("DITTOFS_DATABASE_POSTGRES_PORT", "port"),
    ("DITTOFS_DATABASE_POSTGRES_DATABASE", "dbname"),
    ("DITTOFS_DATABASE_POSTGRES_USER", "user"),
    ("DITTOFS_DATABASE_POSTGRES_PASSWORD", "password"),
    ("DATABASE_URL", "uri"),
];

/// `<cr>-postgres`.
pub fn cluster_name(cr: &str) -> String {
    format!("{cr}-postgres")
}

/// `<cr>-postgres-pguser-dittofs`, the Secret Percona writes for the user.
pub fn percona_secret(cr: &str) -> String {
    format!("{}-pguser-{PERCONA_USER}", cluster_name(cr))
}

/// The Percona section when it asks for a cluster.
pub fn percona(ds: &DittoServer) -> Option<&PerconaSpec> {
    ds.spec.percona.as_ref().filter(|p| p.enabled)
}

/// The `database.postgresSecretRef` Secret DittoFS reads, unless Percona replaces it (as in Go).
pub fn postgres_secret(ds: &DittoServer) -> Option<&str> {
    if percona(ds).is_some() {
        return None;
    }
    ds.spec.database.postgres_secret_ref.as_ref().map(|r| r.name.as_str())
}

/// Every (Secret, key, required) DittoFS's database settings come from.
pub fn consumed_keys(ds: &DittoServer) -> Vec<(String, String, bool)> {
    let cr = ds.name_any();
    if percona(ds).is_some() {
        let secret = percona_secret(&cr);
        return PERCONA_KEYS.iter().map(|(_, key)| (secret.clone(), (*key).to_owned(), true)).collect();
    }
    postgres_secret(ds).map_or_else(Vec::new, |secret| {
        POSTGRES_KEYS.iter().map(|(key, required)| (secret.to_owned(), (*key).to_owned(), *required)).collect()
    })
}

fn secret_env(name: &str, secret: &str, key: &str, optional: bool) -> EnvVar {
    EnvVar {
        name: name.into(),
        value: None,
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: secret.into(),
                key: key.into(),
                optional: optional.then_some(true),
            }),
            ..Default::default()
        }),
    }
}

/// DittoFS's database env: from the `postgresSecretRef` Secret, or from Percona's user Secret plus sslmode.
pub fn database_env(ds: &DittoServer) -> Vec<EnvVar> {
    if percona(ds).is_some() {
        let secret = percona_secret(&ds.name_any());
        let mut env: Vec<_> = PERCONA_KEYS.iter().map(|(var, key)| secret_env(var, &secret, key, false)).collect();
        env.push(EnvVar {
            name: "DITTOFS_DATABASE_POSTGRES_SSLMODE".into(),
            value: Some(PERCONA_SSLMODE.into()),
            value_from: None,
        });
        return env;
    }
    let Some(secret) = postgres_secret(ds) else { return Vec::new() };
    POSTGRES_KEYS
        .iter()
        .map(|(key, required)| {
            secret_env(&format!("DITTOFS_DATABASE_POSTGRES_{}", key.to_uppercase()), secret, key, !required)
        })
        .collect()
}

/// The shell loop of the init container: `pg_isready` as the DittoFS user on its database (a full
/// connection check) every 2 s, failing after [`WAIT_TIMEOUT_SECONDS`]. No secret is printed.
fn wait_script() -> String {
    format!(
        "deadline=$(( $(date +%s) + {WAIT_TIMEOUT_SECONDS} ))\n\
         echo \"waiting for PostgreSQL at $PGHOST:$PGPORT\"\n\
         until pg_isready -h \"$PGHOST\" -p \"$PGPORT\" -U \"$PGUSER\" -d \"$PGDATABASE\" -t 5; do\n  \
           if [ \"$(date +%s)\" -ge \"$deadline\" ]; then echo \"PostgreSQL not ready after {WAIT_TIMEOUT_SECONDS}s\"; exit 1; fi\n  \
           sleep 2\n\
         done\n\
         echo \"PostgreSQL is ready\"\n"
    )
}

/// With Percona, the init container that waits for the database before DittoFS starts (as in Go), with
/// the `PG*` env from Percona's user Secret, under the restricted Pod Security profile.
pub fn init_containers(ds: &DittoServer) -> Option<Vec<Container>> {
    percona(ds)?;
    let secret = percona_secret(&ds.name_any());
    let env = [
        ("PGHOST", "host"),
        ("PGPORT", "port"),
        ("PGUSER", "user"),
        ("PGPASSWORD", "password"),
        ("PGDATABASE", "dbname"),
    ]
    .iter()
    .map(|(var, key)| secret_env(var, &secret, key, false))
    .collect();
    Some(vec![Container {
        name: WAIT_CONTAINER.into(),
        image: Some(WAIT_IMAGE.into()),
        command: Some(vec!["/bin/sh".into(), "-c".into(), wait_script()]),
        env: Some(env),
        security_context: Some(super::statefulset::restricted_context()),
        ..Default::default()
    }])
}

/// The PerconaPGCluster in the Go operator's shape, owned by the server; `None` without Percona.
/// Created once and never updated (as in Go: the user may tune it).
pub fn perconapgcluster(ds: &DittoServer) -> Option<Value> {
    let p = percona(ds)?;
    let cr = ds.name_any();
    let mut claim = json!({
        "accessModes": ["ReadWriteOnce"],
        "resources": {"requests": {"storage": p.storage_size}},
    });
    if let Some(class) = &p.storage_class_name {
        claim["storageClassName"] = json!(class);
    }
    let backups = match p.backup.as_ref().filter(|b| b.enabled) {
        // Percona defaults backups to on and then refuses a cluster without a repository.
        None => json!({"enabled": false}),
        Some(b) => {
            let or = |v: &str, default: &str| if v.is_empty() { default.to_owned() } else { v.to_owned() };
            let mut pgbackrest = json!({
                "global": {
                    "repo1-path": format!("/pgbackrest/{cr}/repo1"),
                    "repo1-s3-uri-style": "path",
                    "repo1-storage-verify-tls": "y",
                },
                "repos": [{
                    "name": "repo1",
                    "s3": {"bucket": b.bucket, "endpoint": b.endpoint, "region": or(&b.region, "eu-west-1")},
                    "schedules": {
                        "full": or(&b.full_schedule, "0 2 * * *"),
                        "incremental": or(&b.incr_schedule, "0 * * * *"),
                    },
                }],
            });
            if let Some(creds) = &b.credentials_secret_ref {
                pgbackrest["configuration"] = json!([{"secret": {"name": creds.name}}]);
            }
            json!({"enabled": true, "pgbackrest": pgbackrest})
        }
    };
    Some(json!({
        "apiVersion": PERCONA_API_VERSION,
        "kind": PERCONA_KIND,
        "metadata": {
            "name": cluster_name(&cr),
            "namespace": ds.namespace(),
            "ownerReferences": [owner_reference(ds)],
        },
        "spec": {
            "crVersion": PERCONA_CR_VERSION,
            "postgresVersion": POSTGRES_VERSION,
            "instances": [{"name": "instance1", "replicas": p.replicas, "dataVolumeClaimSpec": claim}],
            "users": [{"name": PERCONA_USER, "databases": [p.database_name]}],
            "backups": backups,
        },
    }))
}

/// What was observed of the Percona cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PerconaObserved {
    /// The PerconaPGCluster API is not served: Percona's operator is not installed.
    NoApi,
    /// The cluster does not exist (yet).
    NoCluster,
    /// The cluster, its `status.state` (empty before Percona reports one) and the keys of
    /// [`PERCONA_KEYS`] its user Secret lacks (`None`: the Secret does not exist).
    Cluster { state: String, missing_keys: Option<Vec<String>> },
}

/// Why the pod must not be (re)rendered yet, with the condition reason; `None` when the database is usable.
/// The message names the objects and keys.
pub fn percona_wait(ds: &DittoServer, observed: &PerconaObserved) -> Option<(&'static str, String)> {
    use dittofs_api::conditions::reasons;
    let cr = ds.name_any();
    let cluster = cluster_name(&cr);
    let secret = percona_secret(&cr);
    match observed {
        PerconaObserved::NoApi => Some((
            reasons::PERCONA_NOT_FOUND,
            format!(
                "PerconaPGCluster {cluster} cannot be created: the {PERCONA_API_VERSION} API is not served \
                 (install Percona's operator); DittoFS waits for it"
            ),
        )),
        PerconaObserved::NoCluster => {
            Some((reasons::PERCONA_NOT_FOUND, format!("PerconaPGCluster {cluster} does not exist yet")))
        }
        PerconaObserved::Cluster { state, .. } if state != PERCONA_READY_STATE => {
            let state = if state.is_empty() { "unknown" } else { state };
            Some((reasons::PERCONA_NOT_READY, format!("Waiting for PostgreSQL cluster {cluster} (state: {state})")))
        }
        PerconaObserved::Cluster { missing_keys: None, .. } => Some((
            reasons::PERCONA_NOT_READY,
            format!("PostgreSQL cluster {cluster} is ready but its user Secret {secret} does not exist yet"),
        )),
        PerconaObserved::Cluster { missing_keys: Some(keys), .. } if !keys.is_empty() => Some((
            reasons::PERCONA_NOT_READY,
            format!("Secret {secret} of PostgreSQL cluster {cluster} has no key {}", keys.join(", ")),
        )),
        PerconaObserved::Cluster { .. } => None,
    }
}

#[cfg(test)]
mod tests;
