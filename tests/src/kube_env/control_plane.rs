//! [`ControlPlane`]: real etcd + kube-apiserver (RBAC on) + kube-controller-manager on loopback, started per test binary, with admin and ServiceAccount clients.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use base64::Engine as _;
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::api::{Api, PostParams};

use super::binaries::locate_bin_dir;
use super::pki::{Pki, SERVICE_ACCOUNT_ISSUER, SERVICE_CLUSTER_IP_RANGE};
use super::wait::wait_until;
use crate::process::{Server, Watchdog, free_port};

/// Lines of each server log printed when something fails.
const LOG_TAIL_LINES: usize = 40;

/// How to start a [`ControlPlane`]. `Default` is what the tests use.
#[derive(Debug, Clone)]
pub struct ControlPlaneOptions {
    /// Directory with the binaries; `None` = `$DITTOFS_TESTENV_BIN` or the build cache.
    pub bin_dir: Option<PathBuf>,
    /// Run kube-controller-manager (garbage collector, StatefulSet, ServiceAccount
    /// and namespace controllers). Only turn off for tests that want none of those.
    pub controller_manager: bool,
    /// Extra `--flag=value` arguments appended to kube-apiserver's command line.
    pub extra_apiserver_args: Vec<String>,
    /// Limit for each start phase (etcd healthy, apiserver ready, controllers up).
    pub start_timeout: Duration,
}

impl Default for ControlPlaneOptions {
    fn default() -> Self {
        ControlPlaneOptions {
            bin_dir: None,
            controller_manager: true,
            extra_apiserver_args: Vec::new(),
            start_timeout: Duration::from_secs(60),
        }
    }
}

/// A running control plane. Dropping it kills the servers and removes its temp
/// dir; if the process dies instead, the watchdog (see `process.rs`) does both.
#[derive(Debug)]
pub struct ControlPlane {
    bin_dir: PathBuf,
    server_url: String,
    kubeconfig: PathBuf,
    ca_der: Vec<u8>,
    admin_cert_b64: String,
    admin_key_b64: String,
    started_in: Duration,
    controller_manager: bool,
    servers: Vec<Server>,
    /// The command line of each server, in the order of `servers`, so [`Self::restart`] can start it again.
    args: Vec<Vec<String>>,
    /// Restarts so far, numbering the log file of each new incarnation.
    restarts: usize,
    watchdog: Watchdog,
    /// Kept last so it is removed after the servers are gone.
    dir: tempfile::TempDir,
}

impl ControlPlane {
    /// Starts etcd, kube-apiserver and (unless disabled) kube-controller-manager,
    /// each waited on until it serves. On failure the error carries the tail of
    /// every server log, and everything started so far is torn down.
    ///
    /// Ports are picked free and released before the servers bind them, so another
    /// process (often an outgoing connection's ephemeral port) can take one in
    /// between; such a start is retried with new ports, a few times.
    pub async fn start(opts: ControlPlaneOptions) -> anyhow::Result<ControlPlane> {
        const ATTEMPTS: usize = 3;
        for attempt in 1.. {
            match Self::start_once(&opts).await {
                Err(e) if attempt < ATTEMPTS && format!("{e:#}").contains("address already in use") => {
                    eprintln!("testenv: a port was taken before its server bound it; retrying with new ports");
                }
                result => return result,
            }
        }
        unreachable!("the loop returns on the last attempt")
    }

    async fn start_once(opts: &ControlPlaneOptions) -> anyhow::Result<ControlPlane> {
        let started = Instant::now();
        let bin_dir = match &opts.bin_dir {
            Some(dir) => dir.clone(),
            None => locate_bin_dir()?,
        };
        let dir = tempfile::Builder::new()
            .prefix("dittofs-testenv-")
            .tempdir()
            .context("create the control plane temp dir")?;
        let pki = Pki::generate(&dir.path().join("pki"))?;
        let watchdog = Watchdog::spawn(dir.path())?;
        let apiserver_port = free_port()?;
        let server_url = format!("https://127.0.0.1:{apiserver_port}");
        let kubeconfig = dir.path().join("kubeconfig");
        std::fs::write(&kubeconfig, pki.admin_kubeconfig(&server_url)).context("write kubeconfig")?;
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);

        let mut cp = ControlPlane {
            bin_dir,
            server_url,
            kubeconfig,
            ca_der: pki.ca_cert_der()?,
            admin_cert_b64: b64(&pki.admin_cert_pem),
            admin_key_b64: b64(&pki.admin_key_pem),
            started_in: Duration::ZERO,
            controller_manager: opts.controller_manager,
            servers: Vec::new(),
            args: Vec::new(),
            restarts: 0,
            watchdog,
            dir,
        };
        // From here on `cp` owns what was started, so an early return tears it down.
        match cp.boot(opts, &pki, apiserver_port).await {
            Ok(()) => {
                cp.started_in = started.elapsed();
                tracing::info!(elapsed = ?cp.started_in, url = %cp.server_url, "control plane ready");
                Ok(cp)
            }
            // The cause first, then the logs that explain it.
            Err(e) => Err(anyhow::anyhow!(
                "starting the control plane failed: {e:#}\n\nserver logs ({}):\n{}",
                cp.dir.path().display(),
                cp.log_tails(LOG_TAIL_LINES)
            )),
        }
    }

    async fn boot(&mut self, opts: &ControlPlaneOptions, pki: &Pki, apiserver_port: u16) -> anyhow::Result<()> {
        let root = self.dir.path().to_owned();
        let path = |p: &Path| p.display().to_string();

        let (client_port, peer_port) = (free_port()?, free_port()?);
        let etcd_url = format!("http://127.0.0.1:{client_port}");
        let peer_url = format!("http://127.0.0.1:{peer_port}");
        self.spawn(
            "etcd",
            &[
                "--name=dittofs-testenv".to_owned(),
                format!("--data-dir={}", path(&root.join("etcd-data"))),
                format!("--listen-client-urls={etcd_url}"),
                format!("--advertise-client-urls={etcd_url}"),
                format!("--listen-peer-urls={peer_url}"),
                format!("--initial-advertise-peer-urls={peer_url}"),
                format!("--initial-cluster=dittofs-testenv={peer_url}"),
                // Throwaway data: skipping fsync makes every write much faster.
                "--unsafe-no-fsync=true".to_owned(),
                // A single member has no peers to miss heartbeats from; short
                // ticks make it elect itself in ~0.1 s instead of ~0.4 s.
                "--heartbeat-interval=10".to_owned(),
                "--election-timeout=100".to_owned(),
                "--log-level=warn".to_owned(),
            ],
        )?;
        let http = reqwest::Client::new();
        let health = format!("{etcd_url}/health");
        self.wait_serving("etcd to report healthy", opts.start_timeout, async || {
            let body = http.get(&health).send().await?.text().await?;
            anyhow::ensure!(body.contains(r#""health":"true""#), "GET /health: {body}");
            Ok(())
        })
        .await?;

        let mut args = vec![
            format!("--etcd-servers={etcd_url}"),
            "--bind-address=127.0.0.1".to_owned(),
            // Without it the apiserver advertises (and may fail to find) a host interface.
            "--advertise-address=127.0.0.1".to_owned(),
            format!("--secure-port={apiserver_port}"),
            // Never fall back to /var/run/kubernetes for generated certs.
            format!("--cert-dir={}", path(&root.join("apiserver-certs"))),
            format!("--tls-cert-file={}", path(&pki.apiserver_cert)),
            format!("--tls-private-key-file={}", path(&pki.apiserver_key)),
            format!("--client-ca-file={}", path(&pki.ca_cert)),
            "--authorization-mode=Node,RBAC".to_owned(),
            format!("--service-account-key-file={}", path(&pki.sa_public_key)),
            format!("--service-account-signing-key-file={}", path(&pki.sa_private_key)),
            format!("--service-account-issuer={SERVICE_ACCOUNT_ISSUER}"),
            format!("--api-audiences={SERVICE_ACCOUNT_ISSUER}"),
            format!("--service-cluster-ip-range={SERVICE_CLUSTER_IP_RANGE}"),
            "--allow-privileged=true".to_owned(),
            "--profiling=false".to_owned(),
        ];
        args.extend(opts.extra_apiserver_args.iter().cloned());
        self.spawn("kube-apiserver", &args)?;
        let client = self.client();
        // /readyz only passes once the post-start hooks ran (RBAC bootstrap
        // roles, priority classes, CRD informers), so tests never race them.
        let readyz = kube::core::Request::new("").get("readyz", &Default::default())?;
        self.wait_serving("kube-apiserver /readyz", opts.start_timeout, async || {
            client.request_text(readyz.clone()).await.map(drop).map_err(Into::into)
        })
        .await?;

        if opts.controller_manager {
            self.spawn(
                "kube-controller-manager",
                &[
                    format!("--kubeconfig={}", path(&self.kubeconfig)),
                    // No delegated authn/authz kubeconfigs and no HTTPS endpoint:
                    // readiness is observed through what the controllers do.
                    "--secure-port=0".to_owned(),
                    format!("--cert-dir={}", path(&root.join("kcm-certs"))),
                    "--leader-elect=false".to_owned(),
                    // Each controller acts as its own ServiceAccount, as in a real
                    // cluster, so RBAC applies to them too.
                    "--use-service-account-credentials=true".to_owned(),
                    // No nodes and no pod CIDRs: the node controllers would only
                    // complain; everything else (GC, StatefulSet, namespace, SA) runs.
                    "--controllers=*,-nodeipam,-nodelifecycle".to_owned(),
                    format!("--service-account-private-key-file={}", path(&pki.sa_private_key)),
                    format!("--root-ca-file={}", path(&pki.ca_cert)),
                    format!("--cluster-signing-cert-file={}", path(&pki.ca_cert)),
                    format!("--cluster-signing-key-file={}", path(&pki.ca_key)),
                    "--cluster-name=dittofs-testenv".to_owned(),
                    // At the default 20 QPS the client-side rate limiter, not
                    // the apiserver, paces start-up (every controller gets its
                    // own ServiceAccount + token): ~5 s instead of ~2 s.
                    "--kube-api-qps=500".to_owned(),
                    "--kube-api-burst=1000".to_owned(),
                ],
            )?;
            // The ServiceAccount controller creating `default/default` proves the
            // controller manager is connected and its controllers are running.
            let sas: Api<ServiceAccount> = Api::namespaced(client, "default");
            self.wait_serving(
                "kube-controller-manager to create ServiceAccount default/default",
                opts.start_timeout,
                async || sas.get("default").await.map(drop).map_err(Into::into),
            )
            .await?;
        }
        Ok(())
    }

    fn spawn(&mut self, name: &'static str, args: &[String]) -> anyhow::Result<()> {
        let log = self.dir.path().join(format!("{name}.log"));
        let server = Server::spawn(name, &self.bin_dir.join(name), args, log, &mut self.watchdog)?;
        self.servers.push(server);
        self.args.push(args.to_vec());
        Ok(())
    }

    fn index_of(&self, name: &str) -> anyhow::Result<usize> {
        self.servers.iter().position(|s| s.name == name).with_context(|| format!("no server {name} runs here"))
    }

    /// Each running server's name and process id (the benches read their CPU time from `/proc`).
    pub fn pids(&self) -> Vec<(&'static str, u32)> {
        self.servers.iter().map(|s| (s.name, s.pid())).collect()
    }

    /// Kills one server (`etcd`, `kube-apiserver` or `kube-controller-manager`) as a crash would: SIGKILL, no
    /// graceful step. It stays down until [`Self::start_again`]; its data (etcd's data dir) stays.
    pub fn kill(&mut self, name: &str) -> anyhow::Result<()> {
        let i = self.index_of(name)?;
        self.servers[i].stop();
        Ok(())
    }

    /// Starts a server [`Self::kill`]ed before with its original command line (same ports, same data),
    /// logging into `<name>-restart<n>.log`. Returns once the process runs; [`Self::wait_ready`] waits
    /// until it serves.
    pub fn start_again(&mut self, name: &str) -> anyhow::Result<()> {
        let i = self.index_of(name)?;
        anyhow::ensure!(self.servers[i].exit_status().is_some(), "{name} still runs");
        self.restarts += 1;
        let log = self.dir.path().join(format!("{name}-restart{}.log", self.restarts));
        let bin = self.bin_dir.join(self.servers[i].name);
        self.servers[i] = Server::spawn(self.servers[i].name, &bin, &self.args[i], log, &mut self.watchdog)?;
        Ok(())
    }

    /// Waits until the apiserver's `/readyz` passes — which includes its etcd check, so after a restart of
    /// either it proves both serve. Fails at once if a server has exited.
    pub async fn wait_ready(&mut self, timeout: Duration) -> anyhow::Result<()> {
        let client = self.client();
        let readyz = kube::core::Request::new("").get("readyz", &Default::default())?;
        self.wait_serving("kube-apiserver /readyz", timeout, async || {
            client.request_text(readyz.clone()).await.map(drop).map_err(Into::into)
        })
        .await
    }

    /// [`Self::kill`], [`Self::start_again`], [`Self::wait_ready`].
    pub async fn restart(&mut self, name: &str, timeout: Duration) -> anyhow::Result<()> {
        self.kill(name)?;
        self.start_again(name)?;
        self.wait_ready(timeout).await
    }

    /// [`wait_until`], but gives up at once if any server has exited.
    async fn wait_serving(
        &mut self,
        what: &str,
        timeout: Duration,
        mut check: impl AsyncFnMut() -> anyhow::Result<()>,
    ) -> anyhow::Result<()> {
        let began = Instant::now();
        let servers = &mut self.servers;
        wait_until(what, timeout, async || {
            if let Some((name, status)) = servers.iter_mut().find_map(|s| Some((s.name, s.exit_status()?))) {
                // Not retryable: hand it out as the value, then fail below.
                return Ok(Err(anyhow::anyhow!("{name} exited ({status})")));
            }
            check().await.map(Ok)
        })
        .await??;
        tracing::debug!(elapsed = ?began.elapsed(), "{what}: done");
        Ok(())
    }

    /// The tail of every server log (for failure reports).
    pub fn log_tails(&self, lines: usize) -> String {
        self.servers.iter().map(|s| s.log_tail(lines)).collect::<Vec<_>>().join("\n")
    }

    /// Prints [`Self::log_tails`] to stderr; the test harness shows it with the failure.
    pub fn print_log_tails(&self) {
        eprintln!("---- control plane logs ({}) ----\n{}", self.dir.path().display(), self.log_tails(LOG_TAIL_LINES));
    }

    /// The process-wide control plane, started on first use and shared by all
    /// tests of this test binary (starting one costs seconds; namespaces keep
    /// tests apart). Panics with the server logs if it cannot start.
    ///
    /// Each `#[tokio::test]` has its own runtime and a `kube::Client` is bound
    /// to the runtime it was created in, so ask for clients per test
    /// ([`Self::client`]) rather than keeping one. The servers are stopped by
    /// the watchdog when the test binary exits (statics are never dropped).
    pub fn shared() -> &'static ControlPlane {
        static SHARED: OnceLock<Result<ControlPlane, String>> = OnceLock::new();
        let result = SHARED.get_or_init(|| {
            // Start on a thread with its own runtime: callers are usually inside
            // a test's runtime, where blocking on another runtime would panic.
            std::thread::spawn(|| {
                let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
                runtime.block_on(ControlPlane::start(ControlPlaneOptions::default()))
            })
            .join()
            .unwrap_or_else(|_| Err(anyhow::anyhow!("control plane start-up panicked")))
            .map_err(|e| format!("{e:#}"))
        });
        match result {
            Ok(cp) => cp,
            // Stored as an error so every test fails fast with the same message
            // instead of each retrying a slow, doomed start.
            Err(e) => panic!("the shared control plane could not start: {e}"),
        }
    }

    /// A client with cluster-admin rights (client cert CN=admin, O=system:masters).
    /// Must be called inside a Tokio runtime; create one per test.
    pub fn client(&self) -> kube::Client {
        self.client_with(serde_json::json!({
            "client-certificate-data": self.admin_cert_b64,
            "client-key-data": self.admin_key_b64,
        }))
    }

    /// A client authenticated as ServiceAccount `namespace/name` with a token from
    /// [`Self::service_account_token`], so RBAC is enforced exactly as for the operator running in-cluster.
    pub async fn service_account_client(&self, namespace: &str, name: &str) -> anyhow::Result<kube::Client> {
        let token = self.service_account_token(namespace, name).await?;
        Ok(self.client_with(serde_json::json!({ "token": token })))
    }

    /// A one-hour token of ServiceAccount `namespace/name` from the TokenRequest API — the same kind of
    /// token a pod gets projected.
    pub async fn service_account_token(&self, namespace: &str, name: &str) -> anyhow::Result<String> {
        let sas: Api<ServiceAccount> = Api::namespaced(self.client(), namespace);
        let request = TokenRequest {
            spec: TokenRequestSpec { expiration_seconds: Some(3600), ..Default::default() },
            ..Default::default()
        };
        Ok(sas
            .create_token_request(name, &PostParams::default(), &request)
            .await
            .with_context(|| format!("TokenRequest for ServiceAccount {namespace}/{name}"))?
            .status
            .context("TokenRequest returned no status")?
            .token)
    }

    /// Builds a client from kubeconfig-style `user` fields (deserialised, so no
    /// extra crate is needed for kube's secret-string type).
    fn client_with(&self, user: serde_json::Value) -> kube::Client {
        let url = self.server_url.parse().expect("server URL is a valid URI");
        let mut config = kube::Config::new(url);
        config.root_cert = Some(vec![self.ca_der.clone()]);
        config.auth_info = serde_json::from_value(user).expect("valid kubeconfig user fields");
        // The binaries' deadlines, so in-process controllers and agents behave as the real ones, and a
        // hung request never stalls a test or the fault suite's checker.
        let deadlines = dittofs_telemetry::kube_client::DeadlineLayer::default();
        kube::client::ClientBuilder::try_from(config)
            .expect("kube client from generated credentials (inside a Tokio runtime?)")
            .with_layer(&deadlines)
            .build()
    }

    /// A kubeconfig file (admin, all data inline) for `kubectl --kubeconfig` or any tool.
    pub fn kubeconfig_path(&self) -> &Path {
        &self.kubeconfig
    }

    /// The apiserver URL, `https://127.0.0.1:<port>`.
    pub fn server_url(&self) -> &str {
        &self.server_url
    }

    /// The directory holding etcd, kube-apiserver, kube-controller-manager and kubectl.
    pub fn bin_dir(&self) -> &Path {
        &self.bin_dir
    }

    /// How long [`Self::start`] took, from locating binaries to controllers running.
    pub fn started_in(&self) -> Duration {
        self.started_in
    }

    /// Whether kube-controller-manager runs (see [`ControlPlaneOptions::controller_manager`]).
    pub fn runs_controller_manager(&self) -> bool {
        self.controller_manager
    }

    /// The temp dir with logs (`<server>.log`), PKI and etcd data.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        // Newest first: the controller manager and apiserver would only log
        // errors while their backends disappear.
        for server in self.servers.iter_mut().rev() {
            server.stop();
        }
        // Servers are reaped now, so the watchdog finds nothing to wait for and
        // just removes the temp dir.
        self.watchdog.release();
    }
}
