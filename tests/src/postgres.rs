//! A throw-away PostgreSQL server for the database tests: Debian's binaries (`scripts/testenv/postgres.sh`),
//! a fresh data directory (initdb), a free loopback port, TLS on (Percona's clusters accept TLS only, so the
//! controller renders sslmode `require`), a role and a database for DittoFS; stopped and removed on drop.
//!
//! PostgreSQL refuses to run as root: under root the server runs as `nobody` (setpriv), its directory
//! handed over to it; the binaries must then be readable by `nobody` (installed ones are; a tree unpacked by
//! `postgres.sh` under root's home is not, so as root install `postgresql` or move the cache with
//! `DITTOFS_TESTENV_CACHE`).

use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context as _, bail};

use crate::kube_env::wait_until;
use crate::process::{Watchdog, cached_tool, free_port, tail};

/// The role DittoFS logs in as (Percona's user name too).
pub const USER: &str = "dittofs";
/// The database it owns.
pub const DATABASE: &str = "dittofs";
/// The superuser initdb creates (password auth over TCP, as every other role).
const SUPERUSER: &str = "harness";
/// `nobody`, which runs the server when the tests run as root.
const NOBODY: u32 = 65534;

/// A running PostgreSQL server. Dropping it stops the server and removes its directory.
#[derive(Debug)]
pub struct Postgres {
    dir: tempfile::TempDir,
    bin_dir: PathBuf,
    port: u16,
    password: String,
    superuser_password: String,
    child: Option<Child>,
    watchdog: Watchdog,
}

/// `setpriv` to `nobody` when running as root, so that PostgreSQL agrees to run.
fn as_server_user(program: &Path) -> anyhow::Result<Command> {
    let root = std::fs::metadata("/proc/self").context("stat /proc/self")?.uid() == 0;
    if !root {
        return Ok(Command::new(program));
    }
    let mut cmd = Command::new("setpriv");
    cmd.args(["--reuid", &NOBODY.to_string(), "--regid", &NOBODY.to_string(), "--clear-groups", "--"]).arg(program);
    Ok(cmd)
}

fn random_password() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

impl Postgres {
    /// The directory of the PostgreSQL tools: `$DITTOFS_POSTGRES_BIN`'s, or the testenv cache's. Symlinks are
    /// resolved, so that `nobody` can run installed binaries linked from root's cache.
    pub fn bin_dir() -> anyhow::Result<PathBuf> {
        let postgres = cached_tool("postgres", "DITTOFS_POSTGRES_BIN", "seconds: links or unpacks Debian's")?;
        let postgres = std::fs::canonicalize(&postgres).with_context(|| format!("resolve {}", postgres.display()))?;
        Ok(postgres.parent().context("postgres has a directory")?.to_owned())
    }

    /// initdb, start, create the role [`USER`] and the database [`DATABASE`]; waits until it accepts them.
    pub async fn start() -> anyhow::Result<Postgres> {
        let bin_dir = Self::bin_dir()?;
        let dir = tempfile::Builder::new().prefix("postgres-").tempdir()?;
        let watchdog = Watchdog::spawn(dir.path())?;
        let mut pg = Postgres {
            dir,
            bin_dir,
            port: free_port()?,
            password: random_password(),
            superuser_password: random_password(),
            child: None,
            watchdog,
        };
        pg.init()?;
        pg.spawn()?;
        pg.wait_ready().await?;
        // Two commands: CREATE DATABASE cannot run in the transaction one `-c` makes.
        pg.psql_as_superuser("postgres", &format!("CREATE ROLE {USER} LOGIN PASSWORD '{}'", pg.password))?;
        pg.psql_as_superuser("postgres", &format!("CREATE DATABASE {DATABASE} OWNER {USER}"))?;
        Ok(pg)
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("postgres.log")
    }

    fn tool(&self, name: &str) -> PathBuf {
        self.bin_dir.join(name)
    }

    /// A data directory with a password-protected superuser, a TLS certificate, the server's files owned by
    /// whoever runs it.
    fn init(&self) -> anyhow::Result<()> {
        let root = self.dir.path();
        let pwfile = root.join("pwfile");
        std::fs::write(&pwfile, &self.superuser_password)?;
        let ca = crate::tls::Ca::new("postgres-test-ca")?;
        let cert = ca.issue(&["localhost", "127.0.0.1"], crate::tls::Validity::Current)?;
        std::fs::write(root.join("server.crt"), &cert.cert_pem)?;
        std::fs::write(root.join("server.key"), &cert.key_pem)?;
        std::fs::create_dir(root.join("socket"))?;
        if std::fs::metadata("/proc/self")?.uid() == 0 {
            for entry in
                [root.to_owned(), pwfile.clone(), root.join("server.crt"), root.join("server.key"), root.join("socket")]
            {
                std::os::unix::fs::chown(&entry, Some(NOBODY), Some(NOBODY))?;
            }
        }
        // PostgreSQL refuses a key others can read.
        std::fs::set_permissions(root.join("server.key"), std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
        let out = as_server_user(&self.tool("initdb"))?
            .arg("-D")
            .arg(self.data_dir())
            .args(["-U", SUPERUSER, "--auth=scram-sha-256", "-E", "UTF8", "--no-sync", "--pwfile"])
            .arg(&pwfile)
            .output()
            .context("run initdb")?;
        if !out.status.success() {
            bail!("initdb failed: {}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        }
        Ok(())
    }

    fn spawn(&mut self) -> anyhow::Result<()> {
        let root = self.dir.path();
        let log = std::fs::File::create(self.log_path())?;
        let child = as_server_user(&self.tool("postgres"))?
            .arg("-D")
            .arg(self.data_dir())
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-k"])
            .arg(root.join("socket"))
            .args(["-c", "ssl=on", "-c", "fsync=off", "-c", "listen_addresses=127.0.0.1"])
            .arg("-c")
            .arg(format!("ssl_cert_file={}", root.join("server.crt").display()))
            .arg("-c")
            .arg(format!("ssl_key_file={}", root.join("server.key").display()))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("spawn postgres")?;
        self.watchdog.adopt(child.id())?;
        self.child = Some(child);
        Ok(())
    }

    async fn wait_ready(&mut self) -> anyhow::Result<()> {
        let isready = self.tool("pg_isready");
        let port = self.port.to_string();
        let log = self.log_path();
        let child = &mut self.child;
        wait_until("PostgreSQL to accept connections", Duration::from_secs(30), async || {
            if let Some(status) = child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                bail!("postgres exited ({status}); log:\n{}", tail(&log, 30));
            }
            let ok =
                Command::new(&isready).args(["-h", "127.0.0.1", "-p", &port, "-t", "2"]).output()?.status.success();
            anyhow::ensure!(ok, "not accepting connections yet");
            Ok(())
        })
        .await
    }

    /// Runs `sql` with psql as the superuser on `database`; returns psql's unaligned, tuples-only output.
    fn psql_as_superuser(&self, database: &str, sql: &str) -> anyhow::Result<String> {
        self.psql(SUPERUSER, &self.superuser_password, database, sql)
    }

    /// Runs `sql` as `user` over TCP with TLS required (the way DittoFS connects).
    pub fn psql(&self, user: &str, password: &str, database: &str, sql: &str) -> anyhow::Result<String> {
        let out = Command::new(self.tool("psql"))
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-U", user, "-d", database])
            .args(["-v", "ON_ERROR_STOP=1", "-At", "-c", sql])
            .env("PGPASSWORD", password)
            .env("PGSSLMODE", "require")
            .output()
            .context("run psql")?;
        anyhow::ensure!(out.status.success(), "psql: {}", String::from_utf8_lossy(&out.stderr));
        Ok(String::from_utf8(out.stdout)?)
    }

    /// The tables of [`DATABASE`]'s public schema: what DittoFS created there.
    pub fn tables(&self) -> anyhow::Result<Vec<String>> {
        let sql = "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1";
        Ok(self.psql(USER, &self.password, DATABASE, sql)?.lines().map(str::to_owned).collect())
    }

    /// The rows of `sql` run as [`USER`] on [`DATABASE`].
    pub fn query(&self, sql: &str) -> anyhow::Result<Vec<String>> {
        Ok(self.psql(USER, &self.password, DATABASE, sql)?.lines().map(str::to_owned).collect())
    }

    pub fn host(&self) -> &'static str {
        "127.0.0.1"
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The password of [`USER`].
    pub fn password(&self) -> &str {
        &self.password
    }

    /// `postgresql://dittofs:<password>@127.0.0.1:<port>/dittofs`, as Percona's Secret `uri`.
    pub fn uri(&self) -> String {
        format!("postgresql://{USER}:{}@{}:{}/{DATABASE}", self.password, self.host(), self.port)
    }

    /// The keys of a `database.postgresSecretRef` Secret pointing here (Go's fixed keys), sslmode `require`.
    pub fn secret_ref_data(&self) -> std::collections::BTreeMap<String, String> {
        [
            ("host", self.host().to_owned()),
            ("port", self.port.to_string()),
            ("database", DATABASE.to_owned()),
            ("user", USER.to_owned()),
            ("password", self.password.clone()),
            ("sslmode", "require".to_owned()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
    }

    /// The keys Percona writes in `<cluster>-pguser-<user>` (those DittoFS and the init container read).
    pub fn percona_secret_data(&self) -> std::collections::BTreeMap<String, String> {
        [
            ("host", self.host().to_owned()),
            ("port", self.port.to_string()),
            ("dbname", DATABASE.to_owned()),
            ("user", USER.to_owned()),
            ("password", self.password.clone()),
            ("uri", self.uri()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SIGINT: PostgreSQL's fast shutdown.
            let _ = Command::new("kill").args(["-INT", &child.id().to_string()]).status();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            eprintln!("==> PostgreSQL log ({}) <==\n{}", self.log_path().display(), tail(&self.log_path(), 40));
        }
        self.watchdog.release();
    }
}
