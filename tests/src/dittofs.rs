//! DittoFS for tests and the demo: the real `dfs` when `DITTOFS_BIN` is set, else `dittofs-emulator`.
//!
//! Each instance gets its own directory, API port and database, is started exactly as a pod would start it
//! (`start --foreground --config FILE`, secrets in env), and is moved off the seeded adapter ports (12049,
//! 1445) onto free ones through the API so parallel instances never collide.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Duration,
};

use anyhow::{Context as _, bail};
use serde_json::{Value, json};

use crate::{
    dittofs_client::Api,
    kube_env::wait_until,
    process::{Watchdog, free_port, tail, workspace_bin},
};

/// The bootstrap admin password every harness instance uses (`DITTOFS_ADMIN_INITIAL_PASSWORD`).
pub const ADMIN_PASSWORD: &str = "admin-password-for-tests";
const JWT_SECRET: &str = "dittofs-test-jwt-secret-at-least-32-characters";

/// Which server runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Flavor {
    Emulator(PathBuf),
    Real(PathBuf),
}

impl Flavor {
    /// `DITTOFS_BIN` if set (the real server), else the emulator ([`workspace_bin`]).
    pub fn from_env() -> anyhow::Result<Flavor> {
        if let Some(bin) = std::env::var_os("DITTOFS_BIN").filter(|b| !b.is_empty()) {
            let bin = PathBuf::from(bin);
            anyhow::ensure!(bin.is_file(), "DITTOFS_BIN={} is not a file", bin.display());
            return Ok(Flavor::Real(bin));
        }
        Ok(Flavor::Emulator(workspace_bin("dittofs-emulator")?))
    }

    pub fn is_real(&self) -> bool {
        matches!(self, Flavor::Real(_))
    }
}

/// Knobs a test may turn; defaults are DittoFS's own.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// `controlplane.jwt.access_token_duration`, a Go duration (default 15m).
    pub access_ttl: Option<String>,
    /// `controlplane.jwt.refresh_token_duration` (default 168h).
    pub refresh_ttl: Option<String>,
    /// Keep the seeded adapter ports (12049, 1445) instead of moving to free ones.
    pub seeded_ports: bool,
    /// Emulator only: enable the faults file (see `dittofs_emulator::faults`).
    pub faults: bool,
    /// Use this text as `config.yaml` instead of the generated one (e.g. the controller's rendered
    /// config). The instance's own port, host and database still apply, through the env vars
    /// `DITTOFS_CONTROLPLANE_{PORT,HOST}` and `DITTOFS_DATABASE_SQLITE_PATH`, which win over the file.
    pub config_yaml: Option<String>,
    /// Serve the API over TLS (`controlplane.tls` in the generated config, as the controller renders it
    /// for `certSecretName`); the harness's own client then uses `tls.client`.
    pub tls: Option<crate::tls::HarnessTls>,
    /// More env vars, as the pod gets them from Secrets (e.g. `DITTOFS_DATABASE_POSTGRES_*` resolved from the
    /// rendered env); they win over the harness's own.
    pub env: BTreeMap<String, String>,
}

/// A running (or stopped) DittoFS instance. Dropping it stops the server and removes its directory.
#[derive(Debug)]
pub struct DittoFs {
    pub flavor: Flavor,
    options: Options,
    dir: tempfile::TempDir,
    api_port: u16,
    child: Option<Child>,
    watchdog: Watchdog,
    adapter_ports: BTreeMap<String, u16>,
}

impl DittoFs {
    /// Starts the flavor chosen by the environment and waits until `/health` answers.
    pub async fn start(options: Options) -> anyhow::Result<DittoFs> {
        let flavor = Flavor::from_env()?;
        anyhow::ensure!(!(options.faults && flavor.is_real()), "fault injection exists only in the emulator");
        let dir = tempfile::Builder::new().prefix("dittofs-").tempdir()?;
        let watchdog = Watchdog::spawn(dir.path())?;
        let mut fs = DittoFs {
            flavor,
            options,
            api_port: free_port()?,
            dir,
            child: None,
            watchdog,
            adapter_ports: BTreeMap::new(),
        };
        // The API port is picked free and released before DittoFS binds it; if something took it in between,
        // DittoFS exits at start-up and we try again with another port.
        for attempt in 1..=3 {
            fs.write_config()?;
            match fs.start_process().await {
                Err(e) if attempt < 3 && fs.log().contains("address already in use") => {
                    eprintln!("dittofs harness: API port {} was taken ({e}); retrying", fs.api_port);
                    fs.api_port = free_port()?;
                    std::fs::write(fs.log_path(), "")?;
                }
                result => {
                    result?;
                    break;
                }
            }
        }
        if !fs.options.seeded_ports {
            fs.assign_free_adapter_ports().await?;
        }
        Ok(fs)
    }

    /// The server process's id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn url(&self) -> String {
        let scheme = if self.options.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}", self.api_port)
    }

    /// The TLS setup it was started with.
    pub fn tls(&self) -> Option<&crate::tls::HarnessTls> {
        self.options.tls.as_ref()
    }

    /// Where `controlplane.tls` points: `tls.crt`, `tls.key` and `client-ca.crt`.
    pub fn tls_dir(&self) -> PathBuf {
        self.dir.path().join("tls")
    }

    /// Replaces the served certificate's files (DittoFS re-reads them at the next handshake after their
    /// modification time moved; a restart reads them too).
    pub fn replace_certificate(&self, cert: &crate::tls::Issued) -> anyhow::Result<()> {
        let dir = self.tls_dir();
        // The key first: a handshake between the two writes sees a moved key and keeps the old pair.
        std::fs::write(dir.join("tls.key"), &cert.key_pem)?;
        std::fs::write(dir.join("tls.crt"), &cert.cert_pem).context("write tls.crt")
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn db_path(&self) -> PathBuf {
        self.dir.path().join("db/controlplane.db")
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("dittofs.log")
    }

    /// The whole server log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// Requests the server logged at INFO (every non-`/health*` API request, in both log formats).
    pub fn info_requests_logged(&self) -> usize {
        self.log().lines().filter(|l| is_info_request(l)).count()
    }

    /// The INFO request lines for exactly `path` (`path=/x` in the text format, `"path":"/x"` in JSON).
    pub fn info_requests_logged_to(&self, path: &str) -> usize {
        let (text, json) = (format!("path={path}"), format!("\"path\":\"{path}\""));
        let names_path = |l: &str| l.contains(&json) || l.split_whitespace().any(|field| field == text);
        self.log().lines().filter(|l| is_info_request(l) && names_path(l)).count()
    }

    /// The port this instance's adapter of `kind` was moved to (absent with `seeded_ports`).
    pub fn adapter_port(&self, kind: &str) -> Option<u16> {
        self.adapter_ports.get(kind).copied()
    }

    /// An API client with no credentials (over TLS with the harness's trust when the server serves TLS).
    pub fn api(&self) -> Api {
        match &self.options.tls {
            Some(tls) => Api::with_tls(&self.url(), &tls.client).expect("the harness's own TLS material is valid"),
            None => Api::new(&self.url()),
        }
    }

    /// An API client logged in as the bootstrap admin.
    pub async fn admin(&self) -> anyhow::Result<Api> {
        let mut api = self.api();
        api.login("admin", ADMIN_PASSWORD).await?;
        Ok(api)
    }

    /// Emulator only: replaces the fault rules (`METHOD PATH-PREFIX ACTION` lines; "" clears them).
    pub fn set_faults(&self, rules: &str) -> anyhow::Result<()> {
        anyhow::ensure!(self.options.faults, "start with Options {{ faults: true, .. }} to inject faults");
        std::fs::write(self.dir.path().join("faults"), rules).context("write faults file")
    }

    fn write_config(&self) -> anyhow::Result<()> {
        if let Some(text) = &self.options.config_yaml {
            return std::fs::write(self.dir.path().join("config.yaml"), text).context("write DittoFS config");
        }
        let ttl = |v: &Option<String>, default: &str| v.clone().unwrap_or_else(|| default.to_string());
        let config = format!(
            "logging:\n  level: INFO\n  format: text\n  output: stdout\n\
             controlplane:\n  host: 127.0.0.1\n  port: {port}\n  jwt:\n    access_token_duration: {access}\n    refresh_token_duration: {refresh}\n{tls}\
             database:\n  type: sqlite\n  sqlite:\n    path: {db}\n",
            tls = self.write_tls_files()?,
            port = self.api_port,
            access = ttl(&self.options.access_ttl, "15m"),
            refresh = ttl(&self.options.refresh_ttl, "168h"),
            db = self.db_path().display(),
        );
        std::fs::write(self.dir.path().join("config.yaml"), config).context("write DittoFS config")
    }

    /// Writes the files of `controlplane.tls` and returns that block (the controller renders the same keys
    /// for `certSecretName`/`clientCASecretName`); empty without TLS.
    fn write_tls_files(&self) -> anyhow::Result<String> {
        let Some(tls) = &self.options.tls else { return Ok(String::new()) };
        let dir = self.tls_dir();
        std::fs::create_dir_all(&dir)?;
        self.replace_certificate(&tls.server.cert)?;
        let mut block = format!("  tls:\n    cert_file: {0}/tls.crt\n    key_file: {0}/tls.key\n", dir.display());
        if let Some(ca) = &tls.server.client_ca_pem {
            std::fs::write(dir.join("client-ca.crt"), ca)?;
            block.push_str(&format!("    client_ca: {}/client-ca.crt\n", dir.display()));
        }
        Ok(block)
    }

    async fn start_process(&mut self) -> anyhow::Result<()> {
        anyhow::ensure!(self.child.is_none(), "DittoFS is already running");
        let bin = match &self.flavor {
            Flavor::Emulator(b) | Flavor::Real(b) => b.clone(),
        };
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.log_path())?;
        let home = self.dir.path().join("home");
        let mut cmd = Command::new(&bin);
        cmd.args(["start", "--foreground", "--config"])
            .arg(self.dir.path().join("config.yaml"))
            .env("HOME", &home)
            .env("XDG_CONFIG_HOME", home.join(".config"))
            .env("XDG_STATE_HOME", home.join(".local/state"))
            .env("DITTOFS_ADMIN_INITIAL_PASSWORD", ADMIN_PASSWORD)
            .env("DITTOFS_CONTROLPLANE_SECRET", JWT_SECRET)
            .env_remove("DITTOFS_EMULATOR_FAULTS_FILE")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        if self.options.faults {
            cmd.env("DITTOFS_EMULATOR_FAULTS_FILE", self.dir.path().join("faults"));
        }
        if self.options.config_yaml.is_some() {
            cmd.env("DITTOFS_CONTROLPLANE_PORT", self.api_port.to_string())
                .env("DITTOFS_CONTROLPLANE_HOST", "127.0.0.1")
                .env("DITTOFS_DATABASE_SQLITE_PATH", self.db_path());
        }
        cmd.envs(&self.options.env);
        let child = cmd.spawn().with_context(|| format!("spawn {}", bin.display()))?;
        self.watchdog.adopt(child.id())?;
        self.child = Some(child);
        let api = self.api();
        let child = &mut self.child;
        let started = wait_until("DittoFS /health to answer", Duration::from_secs(30), async || {
            if let Some(status) = child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                return Ok(Err(status));
            }
            // A certificate the harness does not trust (a refusal test serves one) still proves that the
            // server is up and speaking TLS on its port.
            let reply = match api.get("/health").await {
                Err(e) if crate::tls::is_tls_failure(&e) => return Ok(Ok(())),
                other => other?,
            };
            anyhow::ensure!(reply.status == 200, "HTTP {}", reply.status);
            Ok(Ok(()))
        })
        .await;
        match started {
            Ok(Ok(())) => Ok(()),
            Ok(Err(status)) => bail!("DittoFS exited during start-up ({status}); log:\n{}", tail(&self.log_path(), 40)),
            Err(e) => bail!("{e}; log:\n{}", tail(&self.log_path(), 40)),
        }
    }

    /// Moves every seeded adapter to a free port, so instances started in parallel never collide.
    pub async fn assign_free_adapter_ports(&mut self) -> anyhow::Result<()> {
        let admin = self.admin().await?;
        for kind in ["nfs", "smb"] {
            let port = std::net::TcpListener::bind("0.0.0.0:0")?.local_addr()?.port();
            admin.put(&format!("/api/v1/adapters/{kind}"), &json!({ "port": port })).await?.expect_status(200)?;
            self.adapter_ports.insert(kind.to_string(), port);
        }
        Ok(())
    }

    /// Graceful stop (SIGTERM, as Kubernetes does), then SIGKILL after 20 s.
    pub async fn stop(&mut self) -> anyhow::Result<()> {
        let Some(mut child) = self.child.take() else { return Ok(()) };
        let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
        let exited = wait_until("DittoFS to exit after SIGTERM", Duration::from_secs(20), async || {
            anyhow::ensure!(child.try_wait()?.is_some(), "still running");
            Ok(())
        })
        .await;
        if exited.is_err() {
            let _ = child.kill();
            let _ = child.wait();
        }
        Ok(())
    }

    /// Stops and starts the same instance (same config and database).
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        self.stop().await?;
        self.start_process().await
    }

    /// Starts a stopped instance again.
    pub async fn start_again(&mut self) -> anyhow::Result<()> {
        self.start_process().await
    }

    /// A "database reset": stop, delete the database file, start. Users and adapter edits are gone; the
    /// admin is bootstrapped again and the adapters are seeded (and moved to free ports again).
    pub async fn reset_database(&mut self) -> anyhow::Result<()> {
        self.stop().await?;
        for entry in std::fs::read_dir(self.db_path().parent().expect("db has a parent"))? {
            std::fs::remove_file(entry?.path())?;
        }
        self.start_process().await?;
        self.adapter_ports.clear();
        if !self.options.seeded_ports {
            self.assign_free_adapter_ports().await?;
        }
        Ok(())
    }

    /// Current adapters as admin sees them, keyed by type.
    pub async fn adapters(&self) -> anyhow::Result<BTreeMap<String, Value>> {
        let reply = self.admin().await?.get("/api/v1/adapters").await?;
        let list = reply.expect_status(200)?.json()?;
        let list = list.as_array().context("adapter list is not an array")?;
        Ok(list.iter().map(|a| (a["type"].as_str().unwrap_or_default().to_string(), a.clone())).collect())
    }
}

fn is_info_request(line: &str) -> bool {
    line.contains("API request completed") && line.contains("INFO")
}

impl Drop for DittoFs {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            eprintln!("==> DittoFS log ({}) <==\n{}", self.log_path().display(), tail(&self.log_path(), 60));
        }
        self.watchdog.release();
    }
}
