//! The one world every scenario runs in: its own control plane (the apiserver and etcd get restarted, so
//! never the shared one), the proxy in front of the apiserver, controller processes, DittoServers with their
//! pods (DittoFS and the agent as processes), and the invariant checker.
//!
//! The controllers and the agents reach the apiserver through the proxy only; the checker and the harness go
//! direct. `Pod::start` starts the agent with a kubeconfig naming the apiserver itself, so each agent is
//! started once more at once, with the same environment (read back from `/proc/<pid>/environ`) and a
//! kubeconfig naming the proxy — which is also how a killed agent is brought back, as the kubelet would.

use std::{
    collections::BTreeMap,
    ffi::OsString,
    os::unix::ffi::OsStrExt as _,
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use anyhow::Context as _;
use dittofs_api::DittoServer;
use k8s_openapi::{ByteString, api::core::v1::Secret};
use kube::api::{Api, DeleteParams, PostParams};
use serde_json::{Value, json};

use super::{
    Rng,
    invariants::{Checker, Truth, Watched},
    proxy::Proxy,
};
use crate::{
    dittofs::ADMIN_PASSWORD,
    kube_env::{ControlPlane, ControlPlaneOptions, wait_until},
    objects::{install_crd, server},
    pod::{Pod, Proc},
    workspace_bin,
};

/// The namespace of every server under test; the controllers' Lease lives there too.
pub const NS: &str = "faults";
const AGENT_IMAGE: &str = "registry.invalid/dittofs-agent:faults";
/// The Secret with the bootstrap admin password the harness starts every DittoFS with.
pub const ADMIN_SECRET: &str = "faults-admin";
/// A user JWT key for servers that set token lifetimes (which needs `identity.jwt`).
pub const JWT_SECRET: &str = "faults-jwt";
/// How long the suite waits for Kubernetes to match DittoFS before calling it a failure to converge.
pub const CONVERGE_TIMEOUT: Duration = Duration::from_secs(60);

/// A controller process.
#[derive(Debug)]
pub struct Controller {
    pub identity: String,
    pub proc: Proc,
    pub admin: String,
}

/// A server's pod, with what it takes to start its agent again.
#[derive(Debug)]
pub struct PodRun {
    pub pod: Pod,
    agent_env: Vec<(OsString, OsString)>,
    agent_starts: usize,
}

/// See the module docs.
pub struct World {
    pub cp: ControlPlane,
    pub proxy: Proxy,
    pub client: kube::Client,
    pub checker: Checker,
    pub controllers: Vec<Controller>,
    pub pods: BTreeMap<String, PodRun>,
    pub rng: Rng,
    pub dir: tempfile::TempDir,
    /// Random-spec servers created so far (their names are numbered).
    pub spawned_specs: usize,
    proxied_kubeconfig: PathBuf,
    spawned: usize,
}

impl std::fmt::Debug for World {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // kube::Client has no Debug; the rest says what the world is.
        f.debug_struct("World")
            .field("cp", &self.cp)
            .field("proxy", &self.proxy)
            .field("controllers", &self.controllers)
            .field("pods", &self.pods.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl World {
    /// Control plane, proxy, one controller (`ctl-a`), the checker; no server yet.
    pub async fn start(rng: Rng) -> anyhow::Result<World> {
        let cp = ControlPlane::start(ControlPlaneOptions::default()).await?;
        let upstream = cp.server_url().trim_start_matches("https://").parse()?;
        let proxy = Proxy::start(upstream).await?;
        let dir = tempfile::Builder::new().prefix("dittofs-faults-").tempdir()?;
        let client = cp.client();
        install_crd(client.clone()).await?;
        let ns: k8s_openapi::api::core::v1::Namespace = serde_json::from_value(json!({"metadata": {"name": NS}}))?;
        Api::all(client.clone()).create(&PostParams::default(), &ns).await?;
        let secrets: Api<Secret> = Api::namespaced(client.clone(), NS);
        for (name, key, value) in [
            (ADMIN_SECRET, "password", ADMIN_PASSWORD),
            (JWT_SECRET, "jwt-secret", "faults-suite-jwt-signing-key-of-forty-chars"),
        ] {
            let mut secret = Secret::default();
            secret.metadata.name = Some(name.into());
            secret.data = Some([(key.to_owned(), ByteString(value.as_bytes().to_vec()))].into());
            secrets.create(&PostParams::default(), &secret).await?;
        }
        let admin = std::fs::read_to_string(cp.kubeconfig_path())?;
        let proxied_kubeconfig = dir.path().join("controller.kubeconfig");
        std::fs::write(&proxied_kubeconfig, admin.replace(cp.server_url(), &proxy.url()))?;
        let checker = Checker::start(client.clone(), NS);
        let mut world = World {
            cp,
            proxy,
            client,
            checker,
            controllers: Vec::new(),
            pods: BTreeMap::new(),
            rng,
            dir,
            spawned_specs: 0,
            proxied_kubeconfig,
            spawned: 0,
        };
        let first = world.spawn_controller("ctl-a")?;
        world.controllers.push(first);
        world.wait_controllers_ready().await?;
        Ok(world)
    }

    /// Starts a controller process named `identity` (a restarted container keeps its pod's name, a
    /// replacement pod gets a new one), through the proxy, electing its leader in [`NS`].
    pub fn spawn_controller(&mut self, identity: &str) -> anyhow::Result<Controller> {
        self.spawned += 1;
        let port = crate::free_port()?;
        let mut cmd = Command::new(workspace_bin("dittofs-controller")?);
        cmd.env("KUBECONFIG", &self.proxied_kubeconfig)
            // `$FAULTS_CONTROLLER_LOG` (a RUST_LOG filter) for an investigation; info otherwise.
            .env("RUST_LOG", std::env::var("FAULTS_CONTROLLER_LOG").unwrap_or_else(|_| "info".into()))
            .args(["--log-format", "plain", "--agent-image", AGENT_IMAGE, "--identity", identity])
            .args(["--namespace", NS, "--lease-namespace", NS, "--admin-addr", &format!("127.0.0.1:{port}")])
            .args(["--lease-duration", "4s", "--renew-deadline", "3s", "--retry-period", "500ms"]);
        let log = self.dir.path().join(format!("controller-{:02}-{identity}.log", self.spawned));
        let proc = Proc::spawn("dittofs-controller", cmd, log)?;
        Ok(Controller { identity: identity.to_owned(), proc, admin: format!("http://127.0.0.1:{port}") })
    }

    /// Waits until every controller process answers `/readyz` with 200.
    pub async fn wait_controllers_ready(&self) -> anyhow::Result<()> {
        let http = reqwest::Client::builder().timeout(Duration::from_secs(2)).build()?;
        for c in &self.controllers {
            wait_until(&format!("controller {} /readyz", c.identity), Duration::from_secs(30), async || {
                anyhow::ensure!(!exited(c.proc.pid()), "the process exited");
                let status = http.get(format!("{}/readyz", c.admin)).send().await?.status();
                anyhow::ensure!(status == 200, "HTTP {status}");
                Ok(())
            })
            .await?;
        }
        Ok(())
    }

    /// The index of the controller holding the Lease.
    pub async fn leader(&self) -> anyhow::Result<usize> {
        let leases: Api<k8s_openapi::api::coordination::v1::Lease> = Api::namespaced(self.client.clone(), NS);
        wait_until("a controller to hold the Lease", Duration::from_secs(30), async || {
            let lease = leases.get("dittofs-controller-leader").await?;
            let holder = lease.spec.and_then(|s| s.holder_identity).unwrap_or_default();
            self.controllers.iter().position(|c| c.identity == holder).with_context(|| format!("holder {holder:?}"))
        })
        .await
    }

    /// Creates server `name` with `spec` and watches it; with `pod`, starts its pod and judges it against
    /// that DittoFS, else against "nothing exposed".
    pub async fn create_server(&mut self, name: &str, spec: Value, pod: bool) -> anyhow::Result<()> {
        self.checker.watch(Watched::new(name, &spec, Truth::Fixed(BTreeMap::new()))?);
        let servers: Api<DittoServer> = Api::namespaced(self.client.clone(), NS);
        servers.create(&PostParams::default(), &server(name, spec)?).await?;
        if pod {
            let pod = Pod::start(&self.cp, NS, name, self.dir.path()).await?;
            let url = pod.fs.url();
            let mut agent_env: Vec<(OsString, OsString)> =
                pod.agent_env.iter().map(|(k, v)| (OsString::from(k), OsString::from(v))).collect();
            agent_env.push(("PATH".into(), std::env::var_os("PATH").unwrap_or_default()));
            // `$FAULTS_AGENT_LOG` (a RUST_LOG filter) for an investigation; the container's own otherwise.
            if let Some(filter) = std::env::var_os("FAULTS_AGENT_LOG") {
                agent_env.push(("RUST_LOG".into(), filter));
            }
            let mut run = PodRun { pod, agent_env, agent_starts: 0 };
            run.pod.agent.stop();
            self.start_agent_of(&mut run)?;
            self.pods.insert(name.to_owned(), run);
            self.checker.set_truth(name, Truth::DittoFs { url });
        }
        Ok(())
    }

    /// Stops watching server `name`, stops its pod and deletes it.
    pub async fn delete_server(&mut self, name: &str) -> anyhow::Result<()> {
        self.checker.unwatch(name);
        drop(self.pods.remove(name));
        let servers: Api<DittoServer> = Api::namespaced(self.client.clone(), NS);
        servers.delete(name, &DeleteParams::background()).await?;
        Ok(())
    }

    fn start_agent_of(&self, run: &mut PodRun) -> anyhow::Result<()> {
        run.agent_starts += 1;
        let mut cmd = Command::new(workspace_bin("dittofs-agent")?);
        // The agent reaches the apiserver through the proxy: its address replaces the control plane's.
        cmd.env_clear().envs(run.agent_env.iter().cloned()).envs(crate::pod::apiserver_env(&self.proxy.url())?);
        let log = self.dir.path().join(format!("{}-agent-{:02}.log", run.pod.name, run.agent_starts));
        run.pod.agent = Proc::spawn("dittofs-agent", cmd, log)?;
        Ok(())
    }

    pub fn pod(&self, server: &str) -> anyhow::Result<&PodRun> {
        self.pods.get(server).with_context(|| format!("server {server} has no pod"))
    }

    /// Starts the agent of `server` again (after a kill), as the kubelet restarts a container.
    pub fn restart_agent(&mut self, server: &str) -> anyhow::Result<()> {
        let mut run = self.pods.remove(server).with_context(|| format!("server {server} has no pod"))?;
        let started = self.start_agent_of(&mut run);
        self.pods.insert(server.to_owned(), run);
        started
    }

    /// The DittoFS process of `server`, found by its `--config` argument (the harness keeps its pid private).
    pub fn dittofs_pid(&self, server: &str) -> anyhow::Result<u32> {
        let config = self.pod(server)?.pod.fs.dir().join("config.yaml");
        pid_with_arg(&config).with_context(|| format!("no process runs with {}", config.display()))
    }

    /// Flips one adapter of `server` through DittoFS's admin API — enable/disable, or, for an enabled
    /// adapter now and then, a move to another free port. Returns what was done.
    pub async fn toggle(&mut self, server: &str) -> anyhow::Result<String> {
        let kind = if self.rng.below(2) == 0 { "nfs" } else { "smb" };
        let move_port = self.rng.below(4) == 0;
        let fs = &self.pod(server)?.pod.fs;
        let adapters = fs.adapters().await?;
        let enabled = adapters.get(kind).is_some_and(|a| a["enabled"] == true);
        let body = if enabled && move_port {
            json!({"port": std::net::TcpListener::bind("0.0.0.0:0")?.local_addr()?.port()})
        } else {
            json!({"enabled": !enabled})
        };
        let admin = fs.admin().await?;
        admin.put(&format!("/api/v1/adapters/{kind}"), &body).await?.expect_status(200)?;
        Ok(format!("{server}: {kind} {body}"))
    }

    /// A counter of `server`'s agent (`/metrics`, e.g. `dittofs_agent_status_writes_total{result="failed"}`);
    /// 0 when absent or when the agent does not answer.
    pub async fn agent_counter(&self, server: &str, series: &str) -> u64 {
        let Ok(run) = self.pod(server) else { return 0 };
        let url = format!("{}/metrics", run.pod.agent_admin);
        let text = match reqwest::get(url).await {
            Ok(r) => r.text().await.unwrap_or_default(),
            Err(_) => return 0,
        };
        text.lines().find_map(|l| l.strip_prefix(series)?.trim().parse().ok()).unwrap_or(0)
    }

    /// Waits (bounded, never failing) until `server`'s agent has failed a status write after `before`
    /// failures: the fault has been felt by the agent with a change to publish.
    pub async fn until_agent_write_fails(&self, server: &str, before: u64, limit: Duration) {
        let series = "dittofs_agent_status_writes_total{result=\"failed\"}";
        let _ = wait_until("the agent to fail a status write", limit, async || {
            let now = self.agent_counter(server, series).await;
            anyhow::ensure!(now > before, "{now} failed writes");
            Ok(())
        })
        .await;
    }

    /// The convergence from `since` (a fault's clear) to "Kubernetes matches the truth".
    pub async fn converge(&self, since: Instant) -> anyhow::Result<Duration> {
        self.checker.wait_converged(since, CONVERGE_TIMEOUT).await
    }

    /// Brings every pod back to a known state after a kind that left Kubernetes and DittoFS apart, so one
    /// failure is not counted again by every kind after it: the agent's account gets role `operator` again
    /// (as admin; a missing account is left to the agent) and the agent is started afresh.
    pub async fn heal(&mut self) -> anyhow::Result<()> {
        let servers: Vec<String> = self.pods.keys().cloned().collect();
        for server in servers {
            let admin = self.pod(&server)?.pod.fs.admin().await?;
            let path = format!("/api/v1/users/{}", dittofs_api::names::OPERATOR_USERNAME);
            admin.put(&path, &json!({"role": "operator"})).await?;
            signal(self.pod(&server)?.pod.agent.pid(), "KILL")?;
            self.restart_agent(&server)?;
        }
        Ok(())
    }

    /// Reconciles finished so far, summed over the controller processes running now (`/metrics`).
    pub async fn controller_reconciles(&self) -> u64 {
        let mut total = 0;
        for c in &self.controllers {
            let Ok(reply) = reqwest::get(format!("{}/metrics", c.admin)).await else { continue };
            let text = reply.text().await.unwrap_or_default();
            let series = text.lines().filter(|l| l.starts_with("dittofs_controller_reconciles_total{"));
            total += series.filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok()).sum::<f64>() as u64;
        }
        total
    }

    /// Stops the checker, the pods and the controllers (SIGTERM), then the control plane.
    pub async fn shutdown(mut self) {
        self.checker.stop().await;
        self.pods.clear();
        for c in &mut self.controllers {
            c.proc.stop();
        }
    }

    /// Where the logs of this run are.
    pub fn log_dir(&self) -> &Path {
        self.dir.path()
    }
}

/// SIGKILL, SIGSTOP or SIGCONT to a process the suite started.
pub fn signal(pid: u32, sig: &str) -> anyhow::Result<()> {
    let status = Command::new("kill").args([&format!("-{sig}"), &pid.to_string()]).status()?;
    anyhow::ensure!(status.success(), "kill -{sig} {pid}: {status}");
    Ok(())
}

/// Whether a child has exited (gone, or a zombie not reaped yet).
pub fn exited(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat.rsplit_once(')').is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
        Err(_) => true,
    }
}

/// A live process with `arg` among its arguments.
fn pid_with_arg(arg: &Path) -> Option<u32> {
    let want = arg.as_os_str().as_bytes();
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|entry| {
        let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
        let cmdline = std::fs::read(entry.path().join("cmdline")).ok()?;
        (cmdline.split(|b| *b == 0).any(|a| a == want) && !exited(pid)).then_some(pid)
    })
}
