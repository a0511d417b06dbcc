//! The agent_* tests' world: a namespace with the real CRD, a DittoServer, the per-instance RBAC from the
//! controller and the credentials Secret, a DittoFS, and the agent running in-process as its container
//! would — with a ServiceAccount token bound to that Role — plus waits on its status entry and its metrics.

use std::{sync::Arc, time::Duration};

use crate::{
    dittofs::{ADMIN_PASSWORD, DittoFs, Options},
    kube_env::{TempNamespace, measure_until, wait_until},
    objects::{Reads, install_crd, service_account_client},
    tls::ClientTls,
};
use anyhow::Context as _;
use dittofs_agent::{
    AgentConfig, AgentError, CancellationToken, Metrics, SecretKeyRef, SecretString, dittofs::TlsSettings,
    metrics::WriteResult,
};
use dittofs_api::{
    DittoServer, DittoServerSpec,
    crd::{AgentAdapterStatus, AgentStatus},
    names,
};
use k8s_openapi::{
    ByteString,
    api::{
        core::v1::{Secret, ServiceAccount},
        rbac::v1::{Role, RoleBinding},
    },
};
use kube::api::{Api, ObjectMeta, Patch, PatchParams, PostParams};
use serde_json::json;
use tokio::task::JoinHandle;

/// The DittoServer's name and the agent's pod.
pub const SERVER: &str = "fs";
pub const POD: &str = "fs-0";

/// An agent running on its own task.
#[derive(Debug)]
pub struct RunningAgent {
    pub metrics: Arc<Metrics>,
    token: CancellationToken,
    task: JoinHandle<Result<(), AgentError>>,
}

impl RunningAgent {
    /// Starts the agent in-process, acting with `kube` (its ServiceAccount's client).
    pub fn start(config: AgentConfig, kube: kube::Client) -> RunningAgent {
        let metrics = Arc::new(Metrics::new());
        let token = CancellationToken::new();
        let task = tokio::spawn(dittofs_agent::run_with_metrics(config, kube, token.clone(), metrics.clone()));
        RunningAgent { metrics, token, task }
    }

    /// Fails if the agent task has ended (it must only end on shutdown).
    pub fn assert_running(&self) {
        assert!(!self.task.is_finished(), "the agent task ended on its own");
    }

    /// Graceful stop; returns the stopped agent's metrics.
    pub async fn stop(self) -> anyhow::Result<Arc<Metrics>> {
        self.token.cancel();
        tokio::time::timeout(Duration::from_secs(5), self.task).await.context("agent did not stop within 5s")???;
        Ok(self.metrics)
    }
}

/// One test's world.
pub struct Rig {
    pub ns: String,
    pub admin: kube::Client,
    pub sa: kube::Client,
    pub fs: DittoFs,
    pub servers: Api<DittoServer>,
    pub secrets: Api<Secret>,
    pub agent: Option<RunningAgent>,
}

impl std::fmt::Debug for Rig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rig")
            .field("ns", &self.ns)
            .field("fs", &self.fs)
            .field("agent", &self.agent)
            .finish_non_exhaustive()
    }
}

impl Rig {
    /// Creates the DittoServer (with `interval`), the agent's RBAC from the controller's
    /// `agent_rbac`, the credentials Secret as the controller creates it, and starts DittoFS.
    pub async fn new(ns: &TempNamespace<'_>, options: Options, interval: &str) -> anyhow::Result<Rig> {
        init_logs();
        let admin = ns.client();
        install_crd(admin.clone()).await?;
        let servers: Api<DittoServer> = ns.api();
        let mut spec = DittoServerSpec::with_metadata_size("1Gi");
        spec.adapter_discovery.polling_interval = interval.to_owned();
        let ds = servers.create(&PostParams::default(), &DittoServer::new(SERVER, spec)).await?;

        let (sa, role, binding) = dittofs_controller::desired::rbac::agent_rbac(&ds);
        ns.api::<ServiceAccount>().create(&PostParams::default(), &sa).await?;
        ns.api::<Role>().create(&PostParams::default(), &role).await?;
        ns.api::<RoleBinding>().create(&PostParams::default(), &binding).await?;

        let secrets: Api<Secret> = ns.api();
        let password = uuid::Uuid::new_v4().simple().to_string();
        let secret = Secret {
            metadata: ObjectMeta { name: Some(names::operator_credentials_secret(SERVER)), ..Default::default() },
            data: Some(
                [
                    (names::USERNAME_KEY.to_owned(), ByteString(names::OPERATOR_USERNAME.into())),
                    (names::PASSWORD_KEY.to_owned(), ByteString(password.into_bytes())),
                ]
                .into(),
            ),
            ..Default::default()
        };
        secrets.create(&PostParams::default(), &secret).await?;

        let sa_name = names::agent_service_account(SERVER);
        let sa_client = service_account_client(ns.control_plane(), ns.name(), &sa_name, Reads::Server(SERVER)).await?;
        let fs = DittoFs::start(options).await?;
        Ok(Rig { ns: ns.name().to_owned(), admin, sa: sa_client, fs, servers, secrets, agent: None })
    }

    /// [`Rig::new`], with the agent started ([`Rig::config`]) and its entry in sync with DittoFS.
    pub async fn in_sync(
        ns: &TempNamespace<'_>,
        options: Options,
        interval: &str,
    ) -> anyhow::Result<(Rig, AgentStatus)> {
        let mut rig = Rig::new(ns, options, interval).await?;
        rig.start_agent(rig.config());
        let entry = rig.wait_in_sync(Duration::from_secs(20)).await?;
        Ok((rig, entry))
    }

    /// The configuration the controller's pod template would give the agent, with the harness's DittoFS
    /// (over TLS, trusting and presenting what the harness's own client does, when it serves TLS).
    pub fn config(&self) -> AgentConfig {
        let mut c = AgentConfig::new(POD, &self.ns, SERVER, self.fs.url(), SecretString::new(ADMIN_PASSWORD));
        c.admin_secret = Some(SecretKeyRef { name: names::admin_bootstrap_secret(SERVER), key: "password".into() });
        c.tls = self.fs.tls().map(|tls| self.agent_tls(&tls.client).expect("write the agent's TLS files"));
        c
    }

    /// The agent's TLS files for `trust`, written as the kubelet would project the cert Secret's keys
    /// (`ca.crt`, `tls.crt`, `tls.key`) into a directory of their own.
    pub fn agent_tls(&self, trust: &ClientTls) -> anyhow::Result<TlsSettings> {
        let dir = self.fs.dir().join(format!("agent-tls-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir)?;
        std::fs::write(dir.join("ca.crt"), &trust.ca_pem)?;
        let client_identity = match &trust.identity {
            Some(id) => {
                std::fs::write(dir.join("tls.crt"), &id.cert_pem)?;
                std::fs::write(dir.join("tls.key"), &id.key_pem)?;
                Some((dir.join("tls.crt"), dir.join("tls.key")))
            }
            None => None,
        };
        Ok(TlsSettings { ca_file: dir.join("ca.crt"), server_name: trust.server_name.clone(), client_identity })
    }

    /// Starts the agent in-process with the ServiceAccount client.
    pub fn start_agent(&mut self, config: AgentConfig) -> Arc<Metrics> {
        assert!(self.agent.is_none(), "an agent is already running");
        let agent = RunningAgent::start(config, self.sa.clone());
        let metrics = agent.metrics.clone();
        self.agent = Some(agent);
        metrics
    }

    /// Graceful stop; returns the stopped agent's metrics.
    pub async fn stop_agent(&mut self) -> anyhow::Result<Arc<Metrics>> {
        self.agent.take().context("no agent running")?.stop().await
    }

    pub fn metrics(&self) -> &Metrics {
        &self.agent.as_ref().expect("agent running").metrics
    }

    pub fn assert_agent_running(&self) {
        self.agent.as_ref().expect("agent running").assert_running();
    }

    /// Waits until `counter` of the running agent's metrics reaches `target`; returns its value then. The
    /// agent's own counters (fast-path polls, full polls, refreshes) are the clock of the tests: they wait
    /// for K cycles of the agent, never for a fixed time.
    pub async fn wait_count(
        &self,
        what: &str,
        target: u64,
        timeout: Duration,
        counter: impl Fn(&Metrics) -> u64,
    ) -> anyhow::Result<u64> {
        wait_until(&format!("{what} to reach {target}"), timeout, async || {
            self.assert_agent_running();
            let now = counter(self.metrics());
            anyhow::ensure!(now >= target, "{now}");
            Ok(now)
        })
        .await
    }

    /// The agent's entry in the status, if any.
    pub async fn entry(&self) -> anyhow::Result<Option<AgentStatus>> {
        let ds = self.servers.get(SERVER).await?;
        Ok(ds.status.and_then(|s| s.agents.into_iter().find(|a| a.pod_name == POD)))
    }

    /// Polls the entry until `check` accepts it; returns the value and how long it took.
    pub async fn wait_entry<T>(
        &self,
        what: &str,
        timeout: Duration,
        check: impl Fn(&AgentStatus) -> anyhow::Result<T>,
    ) -> anyhow::Result<(T, Duration)> {
        measure_until(what, timeout, async || {
            if let Some(agent) = &self.agent {
                agent.assert_running();
            }
            let entry = self.entry().await?.context("no entry yet")?;
            check(&entry).with_context(|| format!("entry: {}", serde_json::to_string(&entry).unwrap_or_default()))
        })
        .await
    }

    /// Waits until the entry's adapter of `kind` passes `check`; returns how long that took.
    pub async fn wait_adapter(
        &self,
        what: &str,
        timeout: Duration,
        kind: &str,
        check: impl Fn(&AgentAdapterStatus) -> anyhow::Result<()>,
    ) -> anyhow::Result<Duration> {
        let (_, took) =
            self.wait_entry(what, timeout, |e| check(adapter(e, kind).with_context(|| format!("no {kind}"))?)).await?;
        Ok(took)
    }

    /// Waits until the entry shows DittoFS reachable and the adapters DittoFS has right now (as admin sees them).
    pub async fn wait_in_sync(&self, timeout: Duration) -> anyhow::Result<AgentStatus> {
        let expected = self.fs.adapters().await?;
        let (entry, _) = self
            .wait_entry("the entry to match DittoFS", timeout, |e| {
                anyhow::ensure!(e.reachability.as_ref().is_some_and(|r| r.reachable), "not reachable");
                anyhow::ensure!(e.adapters.len() == expected.len(), "{} adapters", e.adapters.len());
                for (kind, a) in &expected {
                    let got = adapter(e, kind).with_context(|| format!("no {kind}"))?;
                    anyhow::ensure!(got.enabled == a["enabled"] && got.running == a["running"], "{kind} flags");
                    if a["port"] != 0 {
                        anyhow::ensure!(i64::from(got.port) == a["port"].as_i64().unwrap_or(-1), "{kind} port");
                    }
                }
                Ok(e.clone())
            })
            .await?;
        Ok(entry)
    }

    /// Waits until the agent is idle: every adapter's health reported (a recheck follows the start within 5 s),
    /// then a list that changed nothing (its write skipped).
    pub async fn wait_steady(&self) -> anyhow::Result<()> {
        self.wait_entry("healthy adapters", Duration::from_secs(10), |e| {
            anyhow::ensure!(e.adapters.iter().all(|a| a.health.as_deref() == Some("healthy")), "not settled");
            Ok(())
        })
        .await?;
        let skipped = |m: &Metrics| m.status_writes(WriteResult::Skipped);
        let target = skipped(self.metrics()) + 1;
        self.wait_count("a poll that changes nothing", target, Duration::from_secs(35), skipped).await?;
        Ok(())
    }

    /// The password the controller put into the credentials Secret.
    pub async fn operator_password(&self) -> anyhow::Result<String> {
        self.secret_key(names::PASSWORD_KEY).await?.context("no password in the credentials Secret")
    }

    /// One key of the credentials Secret.
    pub async fn secret_key(&self, key: &str) -> anyhow::Result<Option<String>> {
        let secret = self.secrets.get(&names::operator_credentials_secret(SERVER)).await?;
        Ok(secret.data.unwrap_or_default().get(key).map(|v| String::from_utf8_lossy(&v.0).into_owned()))
    }

    /// Changes `spec.adapterDiscovery.pollingInterval` (as a user would, with a merge patch).
    pub async fn set_interval(&self, interval: &str) -> anyhow::Result<()> {
        let patch = json!({ "spec": { "adapterDiscovery": { "pollingInterval": interval } } });
        self.servers.patch(SERVER, &PatchParams::default(), &Patch::Merge(&patch)).await?;
        Ok(())
    }

    /// PUT /api/v1/adapters/{kind} as admin.
    pub async fn put_adapter(&self, kind: &str, body: serde_json::Value) -> anyhow::Result<()> {
        let admin = self.fs.admin().await?;
        admin.put(&format!("/api/v1/adapters/{kind}"), &body).await?.expect_status(200)?;
        Ok(())
    }
}

/// The entry's adapter of `kind`.
pub fn adapter<'a>(entry: &'a AgentStatus, kind: &str) -> Option<&'a AgentAdapterStatus> {
    entry.adapters.iter().find(|a| a.r#type == kind)
}

/// The in-process agent's or controller's log lines in the test output, filtered by `RUST_LOG` (nothing when unset).
pub fn init_logs() {
    if std::env::var_os("RUST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
    }
}
