//! The control-plane database on the real apiserver, against a real PostgreSQL (Debian's, started by the
//! harness on loopback with TLS): `database.postgresSecretRef` and `percona` render the env, config and init
//! container the Go operator v0.29.0 renders (compared field by field with its code), and DittoFS starts from
//! what was rendered. With `DITTOFS_BIN` the real DittoFS creates its tables in that PostgreSQL; the emulator
//! cannot speak PostgreSQL, it only checks that the database is reachable: the database use is proven on the
//! real tier only. Percona: the cluster is created in Go's shape, no StatefulSet exists while it is not ready
//! (DatabaseReady False, one Warning per state), the test then plays Percona's operator. Bad input (a missing
//! Secret or key) changes nothing that runs; a change of the database block rolls the pod once, and its removal
//! removes what it added. DittoFS (both) refuses to start when its PostgreSQL does not answer.

use std::time::Duration;

use anyhow::Context as _;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Container};
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};
use serde_json::{Value, json};

use dittofs_api::DittoServer;
use dittofs_api::conditions::{self, events as reasons};
use dittofs_tests::controller_world::{Running, started};
use dittofs_tests::database::{clusters, container, create_secret, install_percona_crd, resolve_env, set_state};
use dittofs_tests::dittofs::{DittoFs, Options};
use dittofs_tests::kube_env::{ControlPlane, TempNamespace, wait_until};
use dittofs_tests::objects::{wait_events, wait_for_condition, wait_reason};
use dittofs_tests::postgres::Postgres;

const CR: &str = "fs";
const WAIT: Duration = Duration::from_secs(30);

/// One env var by name, Secret, key and `optional` (plain values as `("", value)`).
type EnvRow = (String, String, String, Option<bool>);

fn rows(c: &Container, wanted: impl Fn(&str) -> bool) -> Vec<EnvRow> {
    c.env
        .iter()
        .flatten()
        .filter(|e| wanted(&e.name))
        .map(|e| match e.value_from.as_ref().and_then(|v| v.secret_key_ref.as_ref()) {
            Some(r) => (e.name.clone(), r.name.clone(), r.key.clone(), r.optional),
            None => (e.name.clone(), String::new(), e.value.clone().unwrap_or_default(), None),
        })
        .collect()
}

fn is_database_var(name: &str) -> bool {
    name.starts_with("DITTOFS_DATABASE_") || name == "DATABASE_URL"
}

fn row(name: &str, secret: &str, key: &str, optional: Option<bool>) -> EnvRow {
    (name.into(), secret.into(), key.into(), optional)
}

/// Go v0.29.0 `buildSecretEnvVars` for `postgresSecretRef` (Percona off): fixed keys, port and sslmode optional.
fn go_postgres_ref_env(secret: &str) -> Vec<EnvRow> {
    vec![
        row("DITTOFS_DATABASE_POSTGRES_HOST", secret, "host", None),
        row("DITTOFS_DATABASE_POSTGRES_DATABASE", secret, "database", None),
        row("DITTOFS_DATABASE_POSTGRES_USER", secret, "user", None),
        row("DITTOFS_DATABASE_POSTGRES_PASSWORD", secret, "password", None),
        row("DITTOFS_DATABASE_POSTGRES_PORT", secret, "port", Some(true)),
        row("DITTOFS_DATABASE_POSTGRES_SSLMODE", secret, "sslmode", Some(true)),
    ]
}

async fn statefulset(ns: &TempNamespace<'_>) -> anyhow::Result<StatefulSet> {
    wait_until("the StatefulSet", WAIT, async || ns.api::<StatefulSet>().get_opt(CR).await?.context("not created"))
        .await
}

async fn config_yaml(ns: &TempNamespace<'_>) -> anyhow::Result<String> {
    let cm = ns.api::<ConfigMap>().get(&format!("{CR}-config")).await?;
    cm.data.and_then(|mut d| d.remove("config.yaml")).context("no config.yaml")
}

/// The rendered config's `database` block.
async fn database_block(ns: &TempNamespace<'_>) -> anyhow::Result<Value> {
    let config: Value = serde_saphyr::from_str(&config_yaml(ns).await?)?;
    Ok(config["database"].clone())
}

/// DittoFS started from the rendered config and the database env resolved from the Secrets, as in the pod.
async fn start_dittofs(ns: &TempNamespace<'_>, sts: &StatefulSet, pg: &Postgres) -> anyhow::Result<DittoFs> {
    let mut env = resolve_env(ns, container(sts, "dittofs")?).await?;
    env.retain(|name, _| is_database_var(name));
    let options = Options { config_yaml: Some(config_yaml(ns).await?), env, ..Options::default() };
    let fs = DittoFs::start(options).await?;
    // The admin logged in and the API answers (the harness moved the adapters through it).
    assert!(fs.adapters().await?.contains_key("nfs"));
    if fs.flavor.is_real() {
        let tables = pg.tables()?;
        assert!(tables.iter().any(|t| t == "users"), "the real DittoFS created no users table: {tables:?}");
        // Its data is there: the bootstrap admin it logged in as, and the SSL it connected with.
        let users = pg.query("SELECT username FROM users")?;
        assert!(users.iter().any(|u| u == "admin"), "{users:?}");
        let ssl = pg.query("SELECT bool_and(ssl) FROM pg_stat_ssl JOIN pg_stat_activity USING (pid) WHERE usename = 'dittofs' AND application_name <> 'psql'")?;
        assert_eq!(ssl, ["t"], "DittoFS's connections use TLS (sslmode require)");
        eprintln!("the real DittoFS runs on PostgreSQL: tables {tables:?}");
    } else {
        assert!(fs.log().contains("Connected to PostgreSQL"), "{}", fs.log());
        eprintln!("emulator: PostgreSQL reachable; the database use itself is proven with DITTOFS_BIN only");
    }
    Ok(fs)
}

async fn patch_spec(servers: &Api<DittoServer>, spec: Value) -> anyhow::Result<()> {
    servers.patch(CR, &PatchParams::default(), &Patch::Merge(&json!({"spec": spec}))).await?;
    Ok(())
}

/// The Events of `reason` about the server: each note once, never repeated as a series.
async fn notes(ns: &TempNamespace<'_>, reason: &str) -> anyhow::Result<Vec<String>> {
    let of_reason = wait_reason(ns.client(), ns.name(), CR, reason).await?;
    assert!(of_reason.iter().all(|e| e.series.is_none()), "{reason} repeated: {of_reason:?}");
    Ok(of_reason.into_iter().filter_map(|e| e.note).collect())
}

/// More reconciles than now, so that a Warning sent per reconcile would show.
async fn more_reconciles(controller: &Running, servers: &Api<DittoServer>, n: u64) -> anyhow::Result<()> {
    for i in 0..n {
        let count = controller.controller.metrics().total_reconciles();
        let touch = json!({"metadata": {"annotations": {"dittofs-tests/touch": i.to_string()}}});
        servers.patch(CR, &PatchParams::default(), &Patch::Merge(&touch)).await?;
        controller.wait_reconciles("one more reconcile", None, count).await?;
    }
    Ok(())
}

/// Generation and pod template: what must not move while the input is bad.
fn template_of(sts: &StatefulSet) -> (Option<i64>, Value) {
    (sts.metadata.generation, serde_json::to_value(sts.spec.as_ref().map(|s| &s.template)).unwrap_or_default())
}

#[tokio::test]
#[ignore = "real-server tier: Kubernetes test binaries, PostgreSQL (scripts/testenv/postgres.sh), DittoFS; run `make test`"]
async fn postgres_secret_ref_renders_gos_env_and_dittofs_runs_on_real_postgresql() -> anyhow::Result<()> {
    let pg = Postgres::start().await?;
    ControlPlane::shared()
        .with_temp_ns("ctrl-pg-ref", async |ns| {
            create_secret(ns, "pg", &pg.secret_ref_data()).await?;
            let spec = json!({"storage": {"metadataSize": "1Gi"},
                "database": {"type": "postgres", "postgresSecretRef": {"name": "pg", "key": "connection-string"}}});
            let (controller, servers) = started(ns, CR, spec).await?;
            let sts = statefulset(ns).await?;
            assert_eq!(rows(container(&sts, "dittofs")?, is_database_var), go_postgres_ref_env("pg"));
            let pod = sts.spec.as_ref().and_then(|s| s.template.spec.as_ref()).context("pod")?;
            assert!(pod.init_containers.is_none(), "no init container without Percona (as Go)");
            // Go's placeholders (values differ, the env overrides them): type postgres, no sqlite.
            let db = database_block(ns).await?;
            assert_eq!(db["type"], "postgres");
            assert!(db.get("sqlite").is_none(), "{db}");
            let keys: Vec<_> = db["postgres"].as_object().context("postgres block")?.keys().cloned().collect();
            assert_eq!(keys, ["database", "host", "password", "user"]);
            let fs = start_dittofs(ns, &sts, &pg).await?;
            drop(fs);

            // Bad input: a Secret that does not exist, then one without `password`. A condition and one Event
            // naming the Secret and key each; the StatefulSet stays exactly as it runs.
            let running = template_of(&sts);
            let mut no_password = pg.secret_ref_data();
            no_password.remove("password");
            create_secret(ns, "pg-no-password", &no_password).await?;
            for (secret, says) in [
                ("pg-missing", "Secret pg-missing (database.postgresSecretRef) does not exist"),
                ("pg-no-password", "Secret pg-no-password (database.postgresSecretRef) has no key password"),
            ] {
                patch_spec(&servers, json!({"database": {"postgresSecretRef": {"name": secret}}})).await?;
                let ds = wait_for_condition(&servers, CR, conditions::CONFIG_READY, "False", WAIT).await?;
                let status = ds.status.unwrap_or_default();
                let cond = status.conditions.iter().find(|c| c.type_ == conditions::CONFIG_READY).context("cond")?;
                assert_eq!(
                    (cond.reason.as_str(), cond.message.as_str()),
                    (conditions::reasons::DATABASE_SECRET_MISSING, says)
                );
                more_reconciles(&controller, &servers, 2).await?;
                let sent = notes(ns, reasons::DATABASE_SECRET_MISSING).await?;
                assert_eq!(sent.iter().filter(|n| n.starts_with(says)).count(), 1, "{sent:?}");
                assert_eq!(template_of(&ns.api::<StatefulSet>().get(CR).await?), running, "the running pod changed");
            }

            // A change of the block (another Secret with the same settings) rolls the pod once.
            create_secret(ns, "pg-copy", &pg.secret_ref_data()).await?;
            patch_spec(&servers, json!({"database": {"postgresSecretRef": {"name": "pg-copy"}}})).await?;
            wait_for_condition(&servers, CR, conditions::CONFIG_READY, "True", WAIT).await?;
            controller.settle(Duration::from_secs(2)).await?;
            let sts = ns.api::<StatefulSet>().get(CR).await?;
            assert_eq!(sts.metadata.generation, running.0.map(|g| g + 1), "one roll");
            assert_eq!(rows(container(&sts, "dittofs")?, is_database_var), go_postgres_ref_env("pg-copy"));

            // Removing the block removes what it added: SQLite again, no database env.
            patch_spec(&servers, json!({"database": {"type": "sqlite", "postgresSecretRef": null}})).await?;
            let sts = wait_until("the StatefulSet without the database env", WAIT, async || {
                let sts = ns.api::<StatefulSet>().get(CR).await?;
                anyhow::ensure!(rows(container(&sts, "dittofs")?, is_database_var).is_empty(), "still there");
                Ok(sts)
            })
            .await?;
            assert_eq!(sts.metadata.generation, running.0.map(|g| g + 2));
            assert_eq!(database_block(ns).await?["type"], "sqlite");
            controller.stop().await
        })
        .await
}

/// Go v0.29.0 `BuildPerconaPGClusterSpec` for `percona: {enabled: true}` (defaults), as JSON.
fn go_default_cluster_spec() -> Value {
    json!({
        "crVersion": "2.8.0",
        "postgresVersion": 16,
        "instances": [{"name": "instance1", "replicas": 1, "dataVolumeClaimSpec": {
            "accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "10Gi"}}}}],
        "users": [{"name": "dittofs", "databases": ["dittofs"]}],
        "backups": {"enabled": false},
    })
}

#[tokio::test]
#[ignore = "real-server tier: Kubernetes test binaries, PostgreSQL (scripts/testenv/postgres.sh), DittoFS; run `make test`"]
async fn percona_waits_for_its_cluster_then_dittofs_runs_on_its_user_secret() -> anyhow::Result<()> {
    let pg = Postgres::start().await?;
    ControlPlane::shared()
        .with_temp_ns("ctrl-percona", async |ns| {
            install_percona_crd(ns.client()).await?;
            let spec = json!({"storage": {"metadataSize": "1Gi"}, "percona": {"enabled": true}});
            let (controller, servers) = started(ns, CR, spec).await?;
            let ds = servers.get(CR).await?;
            let cluster_name = format!("{CR}-postgres");
            let cluster = wait_until("the PerconaPGCluster", WAIT, async || {
                clusters(ns).get_opt(&cluster_name).await?.context("not created")
            })
            .await?;
            assert_eq!(cluster.data["spec"], go_default_cluster_spec());
            let owner = &cluster.metadata.owner_references.clone().unwrap_or_default()[0];
            assert_eq!((owner.uid.as_str(), owner.controller), (ds.uid().unwrap_or_default().as_str(), Some(true)));

            // Not ready: no StatefulSet at all (so no pod template on SQLite), DatabaseReady False, Ready False.
            for (state, says) in [("", "(state: unknown)"), ("initializing", "(state: initializing)")] {
                if !state.is_empty() {
                    set_state(ns, &cluster_name, state).await?;
                }
                let ds = wait_until(&format!("DatabaseReady False {says}"), WAIT, async || {
                    let ds = servers.get(CR).await?;
                    let status = ds.status.clone().unwrap_or_default();
                    let cond = status.conditions.iter().find(|c| c.type_ == conditions::DATABASE_READY);
                    anyhow::ensure!(cond.is_some_and(|c| c.status == "False" && c.message.ends_with(says)), "{cond:?}");
                    Ok(ds)
                })
                .await?;
                let status = ds.status.unwrap_or_default();
                let ready = status.conditions.iter().find(|c| c.type_ == conditions::READY).context("Ready")?;
                assert!(ready.status == "False" && ready.message.contains("DatabaseNotReady"), "{ready:?}");
                more_reconciles(&controller, &servers, 2).await?;
                let sent = notes(ns, reasons::PERCONA_NOT_READY).await?;
                assert_eq!(sent.iter().filter(|n| n.ends_with(says)).count(), 1, "{sent:?}");
                assert!(ns.api::<StatefulSet>().get_opt(CR).await?.is_none(), "a StatefulSet before the database");
            }

            // The test plays Percona's operator: the cluster ready, its user Secret first without `uri` (still no
            // StatefulSet, the condition names the key), then complete.
            let secret = format!("{cluster_name}-pguser-dittofs");
            let mut partial = pg.percona_secret_data();
            partial.remove("uri");
            create_secret(ns, &secret, &partial).await?;
            set_state(ns, &cluster_name, "ready").await?;
            let says = format!("Secret {secret} of PostgreSQL cluster {cluster_name} has no key uri");
            wait_until("DatabaseReady False naming the key", WAIT, async || {
                let status = servers.get(CR).await?.status.unwrap_or_default();
                let cond = status.conditions.iter().find(|c| c.type_ == conditions::DATABASE_READY);
                anyhow::ensure!(cond.is_some_and(|c| c.status == "False" && c.message == says), "{cond:?}");
                Ok(())
            })
            .await?;
            assert!(
                ns.api::<StatefulSet>().get_opt(CR).await?.is_none(),
                "a StatefulSet before the Secret is complete"
            );
            let uri = json!({"stringData": {"uri": pg.uri()}});
            ns.api::<k8s_openapi::api::core::v1::Secret>()
                .patch(&secret, &PatchParams::default(), &Patch::Merge(&uri))
                .await?;
            // Percona's Secret is not watched: the reconcile that waits looks again within 10 s.
            let ds = wait_for_condition(&servers, CR, conditions::DATABASE_READY, "True", WAIT).await?;
            let status = ds.status.unwrap_or_default();
            let cond = status.conditions.iter().find(|c| c.type_ == conditions::DATABASE_READY).context("cond")?;
            assert_eq!(cond.reason, conditions::reasons::PERCONA_READY);
            let sts = statefulset(ns).await?;

            // Go's init container and DATABASE_URL, plus the env DittoFS really reads (Go rendered SQLite here).
            let init = container(&sts, "wait-for-postgres")?;
            assert_eq!(init.image.as_deref(), Some("postgres:16-alpine"));
            let go_init = ["PGHOST:host", "PGPORT:port", "PGUSER:user", "PGPASSWORD:password", "PGDATABASE:dbname"];
            let go_init: Vec<_> = go_init
                .iter()
                .map(|p| p.split_once(':').expect("pair"))
                .map(|(var, key)| row(var, &secret, key, None))
                .collect();
            assert_eq!(rows(init, |_| true), go_init);
            let sc = init.security_context.as_ref().context("init security context")?;
            assert_eq!((sc.run_as_non_root, sc.allow_privilege_escalation), (Some(true), Some(false)));
            let env = rows(container(&sts, "dittofs")?, is_database_var);
            assert!(env.contains(&row("DATABASE_URL", &secret, "uri", None)), "{env:?}");
            for (var, key) in
                [("HOST", "host"), ("PORT", "port"), ("DATABASE", "dbname"), ("USER", "user"), ("PASSWORD", "password")]
            {
                assert!(env.contains(&row(&format!("DITTOFS_DATABASE_POSTGRES_{var}"), &secret, key, None)), "{env:?}");
            }
            assert!(env.contains(&row("DITTOFS_DATABASE_POSTGRES_SSLMODE", "", "require", None)), "{env:?}");
            assert_eq!(database_block(ns).await?["type"], "postgres");

            // The init container's wait, run here with its env resolved: it passes against the real server.
            let script = init.command.as_ref().and_then(|c| c.get(2)).context("script")?;
            let path = format!("{}:{}", Postgres::bin_dir()?.display(), std::env::var("PATH").unwrap_or_default());
            let out = std::process::Command::new("sh")
                .args(["-c", script])
                .env_clear()
                .env("PATH", path)
                .envs(resolve_env(ns, init).await?)
                .output()?;
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
            assert!(String::from_utf8_lossy(&out.stdout).contains("PostgreSQL is ready"));

            let fs = start_dittofs(ns, &sts, &pg).await?;
            drop(fs);

            // Never updated afterwards (as Go): a changed percona section leaves the cluster as it is.
            let before = clusters(ns).get(&cluster_name).await?;
            patch_spec(&servers, json!({"percona": {"replicas": 3}})).await?;
            wait_for_condition(&servers, CR, conditions::DATABASE_READY, "True", WAIT).await?;
            controller.settle(Duration::from_secs(2)).await?;
            let after = clusters(ns).get(&cluster_name).await?;
            assert_eq!(after.resource_version(), before.resource_version());
            assert_eq!(after.data["spec"]["instances"][0]["replicas"], 1);
            let note = format!("Created PerconaPGCluster {cluster_name}");
            let created = wait_events(ns.client(), ns.name(), CR, &note, |e| e.note.as_deref() == Some(&note)).await?;
            assert_eq!(created.len(), 1);

            // Percona switched off: what it added goes (init container, its env, DatabaseReady), the cluster stays.
            patch_spec(&servers, json!({"percona": {"enabled": false}})).await?;
            let sts = wait_until("the StatefulSet without Percona's parts", WAIT, async || {
                let sts = ns.api::<StatefulSet>().get(CR).await?;
                anyhow::ensure!(container(&sts, "wait-for-postgres").is_err(), "init container still there");
                Ok(sts)
            })
            .await?;
            assert!(rows(container(&sts, "dittofs")?, is_database_var).is_empty());
            assert_eq!(database_block(ns).await?["type"], "sqlite");
            let ds = wait_for_condition(&servers, CR, conditions::CONFIG_READY, "True", WAIT).await?;
            let status = ds.status.unwrap_or_default();
            assert!(status.conditions.iter().all(|c| c.type_ != conditions::DATABASE_READY), "{:?}", status.conditions);
            assert!(clusters(ns).get_opt(&cluster_name).await?.is_some());
            controller.stop().await
        })
        .await
}

#[tokio::test]
#[ignore = "real-server tier: starts DittoFS (DITTOFS_BIN) or the emulator; run `make test`"]
async fn dittofs_does_not_start_without_its_postgresql() -> anyhow::Result<()> {
    // The config the controller renders for postgresSecretRef, the env pointing at a port nothing listens on.
    let spec =
        json!({"storage": {"metadataSize": "1Gi"}, "database": {"postgresSecretRef": {"name": "pg", "key": "k"}}});
    let config = dittofs_controller::desired::config::render(&serde_json::from_value(spec)?);
    let port = dittofs_tests::free_port()?.to_string();
    let env = [
        ("HOST", "127.0.0.1"),
        ("PORT", port.as_str()),
        ("DATABASE", "dittofs"),
        ("USER", "dittofs"),
        ("PASSWORD", "x"),
    ]
    .into_iter()
    .map(|(k, v)| (format!("DITTOFS_DATABASE_POSTGRES_{k}"), v.to_owned()))
    .collect();
    let started = DittoFs::start(Options { config_yaml: Some(config), env, ..Options::default() }).await;
    let error = format!("{:#}", started.expect_err("DittoFS started without its database"));
    assert!(error.contains("exited during start-up"), "{error}");
    Ok(())
}
