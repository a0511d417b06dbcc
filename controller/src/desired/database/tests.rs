//! The database part of the desired state against the Go operator's rendering (v0.29.0), field by field.

use serde_json::json;

use super::*;
use crate::desired::test_support::server;

fn env_of(env: &[EnvVar]) -> Vec<(String, String, String, Option<bool>)> {
    env.iter()
        .map(|e| match e.value_from.as_ref().and_then(|v| v.secret_key_ref.as_ref()) {
            Some(r) => (e.name.clone(), r.name.clone(), r.key.clone(), r.optional),
            None => (e.name.clone(), String::new(), e.value.clone().unwrap_or_default(), None),
        })
        .collect()
}

fn row(name: &str, secret: &str, key: &str, optional: Option<bool>) -> (String, String, String, Option<bool>) {
    (name.into(), secret.into(), key.into(), optional)
}

#[test]
fn postgres_secret_ref_env_is_gos() {
    let ds = server(json!({"database": {"postgresSecretRef": {"name": "pg", "key": "ignored"}}}));
    assert_eq!(
        env_of(&database_env(&ds)),
        vec![
            row("DITTOFS_DATABASE_POSTGRES_HOST", "pg", "host", None),
            row("DITTOFS_DATABASE_POSTGRES_DATABASE", "pg", "database", None),
            row("DITTOFS_DATABASE_POSTGRES_USER", "pg", "user", None),
            row("DITTOFS_DATABASE_POSTGRES_PASSWORD", "pg", "password", None),
            row("DITTOFS_DATABASE_POSTGRES_PORT", "pg", "port", Some(true)),
            row("DITTOFS_DATABASE_POSTGRES_SSLMODE", "pg", "sslmode", Some(true)),
        ]
    );
    assert!(init_containers(&ds).is_none());
    assert!(perconapgcluster(&ds).is_none());
    let keys = consumed_keys(&ds);
    assert_eq!(keys.iter().filter(|(_, _, required)| *required).count(), 4);
    assert!(keys.iter().all(|(secret, _, _)| secret == "pg"));
}

#[test]
fn no_database_env_with_sqlite() {
    let ds = server(json!({}));
    assert!(database_env(&ds).is_empty());
    assert!(consumed_keys(&ds).is_empty());
    let off = server(json!({"percona": {"enabled": false}}));
    assert!(database_env(&off).is_empty() && init_containers(&off).is_none() && perconapgcluster(&off).is_none());
}

#[test]
fn percona_env_reads_the_user_secret_and_wins_over_postgres_secret_ref() {
    let ds =
        server(json!({"percona": {"enabled": true}, "database": {"postgresSecretRef": {"name": "pg", "key": "k"}}}));
    let secret = "fs-postgres-pguser-dittofs";
    assert_eq!(
        env_of(&database_env(&ds)),
        vec![
            row("DITTOFS_DATABASE_POSTGRES_HOST", secret, "host", None),
            row("DITTOFS_DATABASE_POSTGRES_PORT", secret, "port", None),
            row("DITTOFS_DATABASE_POSTGRES_DATABASE", secret, "dbname", None),
            row("DITTOFS_DATABASE_POSTGRES_USER", secret, "user", None),
            row("DITTOFS_DATABASE_POSTGRES_PASSWORD", secret, "password", None),
            // Go's only database env var with Percona.
            row("DATABASE_URL", secret, "uri", None),
            row("DITTOFS_DATABASE_POSTGRES_SSLMODE", "", "require", None),
        ]
    );
    assert!(consumed_keys(&ds).iter().all(|(s, _, required)| s == secret && *required));
}

#[test]
fn the_init_container_waits_as_gos_under_the_restricted_profile() {
    let ds = server(json!({"percona": {"enabled": true}}));
    let init = init_containers(&ds).expect("an init container with Percona");
    assert_eq!(init.len(), 1);
    let c = &init[0];
    assert_eq!(c.name, "wait-for-postgres");
    assert_eq!(c.image.as_deref(), Some("postgres:16-alpine"));
    let secret = "fs-postgres-pguser-dittofs";
    assert_eq!(
        env_of(c.env.as_ref().unwrap()),
        vec![
            row("PGHOST", secret, "host", None),
            row("PGPORT", secret, "port", None),
            row("PGUSER", secret, "user", None),
            row("PGPASSWORD", secret, "password", None),
            row("PGDATABASE", secret, "dbname", None),
        ]
    );
    let script = &c.command.as_ref().unwrap()[2];
    assert!(script.contains("pg_isready -h \"$PGHOST\" -p \"$PGPORT\" -U \"$PGUSER\" -d \"$PGDATABASE\""));
    assert!(script.contains("300") && !script.contains("PGPASSWORD"));
    let sc = c.security_context.as_ref().unwrap();
    assert_eq!(sc.run_as_non_root, Some(true));
    assert_eq!(sc.run_as_user, Some(65532));
    assert_eq!(sc.allow_privilege_escalation, Some(false));
    assert_eq!(sc.capabilities.as_ref().unwrap().drop.as_deref(), Some(&["ALL".to_owned()][..]));
    assert_eq!(sc.seccomp_profile.as_ref().unwrap().type_, "RuntimeDefault");
}

#[test]
fn the_cluster_has_gos_shape_with_backups_disabled_by_default() {
    let ds = server(json!({"percona": {"enabled": true}}));
    let cluster = perconapgcluster(&ds).unwrap();
    assert_eq!(cluster["apiVersion"], "pgv2.percona.com/v2");
    assert_eq!(cluster["kind"], "PerconaPGCluster");
    assert_eq!(cluster["metadata"]["name"], "fs-postgres");
    assert_eq!(cluster["metadata"]["namespace"], "ns");
    let owner = &cluster["metadata"]["ownerReferences"][0];
    assert_eq!((owner["uid"].as_str(), owner["controller"].as_bool()), (Some("uid-1"), Some(true)));
    assert_eq!(
        cluster["spec"],
        json!({
            "crVersion": "2.8.0",
            "postgresVersion": 16,
            "instances": [{"name": "instance1", "replicas": 1, "dataVolumeClaimSpec": {
                "accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "10Gi"}}}}],
            "users": [{"name": "dittofs", "databases": ["dittofs"]}],
            "backups": {"enabled": false},
        })
    );
    let not_enabled = server(json!({"percona": {"enabled": true, "backup": {"enabled": false, "bucket": "b"}}}));
    assert_eq!(perconapgcluster(&not_enabled).unwrap()["spec"]["backups"], json!({"enabled": false}));
}

#[test]
fn the_cluster_with_everything_set() {
    let ds = server(json!({"percona": {
        "enabled": true, "replicas": 3, "storageSize": "20Gi", "storageClassName": "fast", "databaseName": "meta",
        "backup": {"enabled": true, "bucket": "backups", "endpoint": "https://s3.example.com",
                   "credentialsSecretRef": {"name": "s3"}, "fullSchedule": "0 3 * * *", "retentionDays": 7}
    }}));
    let spec = &perconapgcluster(&ds).unwrap()["spec"];
    assert_eq!(spec["instances"][0]["replicas"], 3);
    assert_eq!(spec["instances"][0]["dataVolumeClaimSpec"]["storageClassName"], "fast");
    assert_eq!(spec["instances"][0]["dataVolumeClaimSpec"]["resources"]["requests"]["storage"], "20Gi");
    assert_eq!(spec["users"], json!([{"name": "dittofs", "databases": ["meta"]}]));
    assert_eq!(
        spec["backups"],
        json!({"enabled": true, "pgbackrest": {
            "global": {"repo1-path": "/pgbackrest/fs/repo1", "repo1-s3-uri-style": "path", "repo1-storage-verify-tls": "y"},
            "configuration": [{"secret": {"name": "s3"}}],
            "repos": [{"name": "repo1",
                "s3": {"bucket": "backups", "endpoint": "https://s3.example.com", "region": "eu-west-1"},
                "schedules": {"full": "0 3 * * *", "incremental": "0 * * * *"}}]
        }})
    );
}

#[test]
fn the_pod_waits_until_the_cluster_is_ready_and_its_secret_complete() {
    use dittofs_api::conditions::reasons;
    let ds = server(json!({"percona": {"enabled": true}}));
    let wait = |o: PerconaObserved| percona_wait(&ds, &o);
    let (reason, message) = wait(PerconaObserved::NoApi).unwrap();
    assert_eq!(reason, reasons::PERCONA_NOT_FOUND);
    assert!(message.contains("fs-postgres") && message.contains("pgv2.percona.com/v2"), "{message}");
    assert_eq!(wait(PerconaObserved::NoCluster).unwrap().0, reasons::PERCONA_NOT_FOUND);
    let cluster = |state: &str, missing: Option<Vec<&str>>| PerconaObserved::Cluster {
        state: state.into(),
        missing_keys: missing.map(|keys| keys.into_iter().map(String::from).collect()),
    };
    let (reason, message) = wait(cluster("initializing", Some(vec![]))).unwrap();
    assert_eq!(
        (reason, message.as_str()),
        (reasons::PERCONA_NOT_READY, "Waiting for PostgreSQL cluster fs-postgres (state: initializing)")
    );
    assert!(wait(cluster("", None)).unwrap().1.contains("state: unknown"));
    let (_, message) = wait(cluster("ready", None)).unwrap();
    assert!(message.contains("fs-postgres-pguser-dittofs does not exist"), "{message}");
    let (_, message) = wait(cluster("ready", Some(vec!["uri", "port"]))).unwrap();
    assert!(message.ends_with("has no key uri, port"), "{message}");
    assert_eq!(wait(cluster("ready", Some(vec![]))), None);
}
