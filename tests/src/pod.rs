//! A DittoServer's pod and the controller run as local processes, exactly as their containers would run
//! (there is no kubelet): DittoFS from the controller's rendered `config.yaml`, the agent with the env of its
//! container in the controller's StatefulSet (field and Secret references resolved), its Secret volume
//! mounts written out as files, and its ServiceAccount's projected volume (a TokenRequest token, the cluster
//! CA, the namespace) with the `KUBERNETES_SERVICE_*` variables a kubelet sets: the agent reads them with the
//! same code as in a pod.
//!
//! The one deviation from a kubelet: a process cannot have a volume mounted at `/var/run/secrets/…`, so
//! each Secret volume the agent container mounts is written into a directory under the pod's directory,
//! and every env value that starts with a mount path is rewritten to start with that directory instead
//! (e.g. `DITTOFS_ADMIN_PASSWORD_FILE`); the ServiceAccount's directory is named by
//! `DITTOFS_AGENT_SERVICEACCOUNT_DIR`. The files are written once, at start: unlike a kubelet, the
//! harness does not follow later changes of the Secret.

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    time::{Duration, Instant},
};

use anyhow::Context as _;
use k8s_openapi::api::{
    apps::v1::StatefulSet,
    core::v1::{ConfigMap, Container, PodSpec, Secret},
};
use kube::Api;
use serde_json::json;

use crate::{
    dittofs::{DittoFs, Options},
    kube_env::{ControlPlane, wait_until},
    process::{free_port, tail, workspace_bin},
};

/// A child process with its log file, killed when dropped.
#[derive(Debug)]
pub struct Proc {
    pub name: String,
    pub log: PathBuf,
    child: Child,
}

impl Proc {
    /// Spawns `cmd` with stdin closed and stdout and stderr into `log`.
    pub fn spawn(name: &str, mut cmd: Command, log: PathBuf) -> anyhow::Result<Proc> {
        let out = std::fs::File::create(&log)?;
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .with_context(|| format!("spawn {name}"))?;
        Ok(Proc { name: name.into(), log, child })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The last lines of its log.
    pub fn log_tail(&self, lines: usize) -> String {
        format!("==> {} ({}) <==\n{}", self.name, self.log.display(), tail(&self.log, lines))
    }

    /// SIGTERM, then SIGKILL after 10 s.
    pub fn stop(&mut self) {
        if self.terminate(Duration::from_secs(10)).is_err() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    /// SIGTERM, as Kubernetes stops a container; the exit status, or an error if it still runs after `limit`.
    pub fn terminate(&mut self, limit: Duration) -> anyhow::Result<ExitStatus> {
        Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status()?;
        let sent = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            anyhow::ensure!(sent.elapsed() < limit, "{} still runs {limit:?} after SIGTERM", self.name);
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The whole log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Writes a kubeconfig for `cp`'s apiserver that authenticates with `token` only (what a pod's projected
/// ServiceAccount token gives its containers).
pub fn token_kubeconfig(cp: &ControlPlane, token: &str, namespace: &str, path: &Path) -> anyhow::Result<()> {
    let cluster = admin_cluster(cp)?;
    let config = json!({
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": "local", "cluster": {
            "server": cluster.server,
            "certificate-authority-data": cluster.certificate_authority_data,
        }}],
        "users": [{"name": "sa", "user": {"token": token}}],
        "contexts": [{"name": "sa", "context": {"cluster": "local", "user": "sa", "namespace": namespace}}],
        "current-context": "sa",
    });
    std::fs::write(path, serde_json::to_vec_pretty(&config)?)?;
    Ok(())
}

/// The cluster entry of `cp`'s admin kubeconfig: its apiserver URL and CA.
fn admin_cluster(cp: &ControlPlane) -> anyhow::Result<kube::config::Cluster> {
    let admin = kube::config::Kubeconfig::read_from(cp.kubeconfig_path())?;
    admin.clusters.first().and_then(|c| c.cluster.clone()).context("kubeconfig without cluster")
}

/// What a kubelet gives a container of a pod running as a ServiceAccount, for a process: the projected
/// volume's `token`, `ca.crt` and `namespace` written into `dir`, and the environment naming `cp`'s apiserver
/// and that directory (a caller that reaches the apiserver otherwise, e.g. through a proxy, replaces the
/// apiserver's variables with [`apiserver_env`]).
pub fn service_account_env(
    cp: &ControlPlane,
    token: &str,
    namespace: &str,
    dir: &Path,
) -> anyhow::Result<Vec<(String, String)>> {
    use base64::Engine as _;
    let ca = admin_cluster(cp)?.certificate_authority_data.context("kubeconfig without certificate-authority-data")?;
    std::fs::create_dir_all(dir)?;
    std::fs::write(dir.join("ca.crt"), base64::engine::general_purpose::STANDARD.decode(ca.trim())?)?;
    std::fs::write(dir.join("token"), token)?;
    std::fs::write(dir.join("namespace"), namespace)?;
    let mut env = apiserver_env(cp.server_url())?;
    env.push((dittofs_api::agent_env::SERVICEACCOUNT_DIR.into(), dir.display().to_string()));
    Ok(env)
}

/// `KUBERNETES_SERVICE_HOST` and `_PORT` for an `https://host:port` URL.
pub fn apiserver_env(server: &str) -> anyhow::Result<Vec<(String, String)>> {
    let authority = server.strip_prefix("https://").context("apiserver URL without https://")?;
    let (host, port) = authority.trim_end_matches('/').rsplit_once(':').context("apiserver URL without port")?;
    Ok(vec![
        (dittofs_api::agent_env::KUBERNETES_SERVICE_HOST.into(), host.trim_matches(['[', ']']).to_owned()),
        (dittofs_api::agent_env::KUBERNETES_SERVICE_PORT.into(), port.to_owned()),
    ])
}

/// The controller binary, authenticated as cluster admin, electing its leader in `lease_namespace`, with `env`
/// added (e.g. `OTEL_*`, which it also hands to every agent it renders, or another `KUBECONFIG`).
pub fn start_controller(
    cp: &ControlPlane,
    lease_namespace: &str,
    dir: &Path,
    env: &[(&str, String)],
) -> anyhow::Result<(Proc, u16)> {
    let admin_port = free_port()?;
    let mut cmd = Command::new(workspace_bin("dittofs-controller")?);
    cmd.env("KUBECONFIG", cp.kubeconfig_path())
        .env("RUST_LOG", "info")
        .args(["--log-format", "plain", "--lease-namespace", lease_namespace])
        .args(["--admin-addr", &format!("127.0.0.1:{admin_port}")])
        .args(["--lease-duration", "4s", "--renew-deadline", "3s", "--retry-period", "500ms"]);
    // Last, so the caller's values win (e.g. a KUBECONFIG of another identity).
    cmd.envs(env.iter().map(|(k, v)| (k, v)));
    Ok((Proc::spawn("dittofs-controller", cmd, dir.join("controller.log"))?, admin_port))
}

/// Pod `<server>-0` of a DittoServer: DittoFS and its agent.
#[derive(Debug)]
pub struct Pod {
    pub name: String,
    pub fs: DittoFs,
    pub agent: Proc,
    /// The agent's admin server (`/livez`, `/readyz`, `/metrics`).
    pub agent_admin: String,
    /// The agent's environment as started (without `PATH`), to start it again; it names the apiserver
    /// ([`apiserver_env`]) and the ServiceAccount's directory ([`service_account_env`]).
    pub agent_env: Vec<(String, String)>,
}

impl Pod {
    /// Starts the pod of `server` in `namespace` from what the controller created (StatefulSet, ConfigMap).
    pub async fn start(cp: &ControlPlane, namespace: &str, server: &str, dir: &Path) -> anyhow::Result<Pod> {
        let client = cp.client();
        let sts_api: Api<StatefulSet> = Api::namespaced(client.clone(), namespace);
        let sts = wait_until("the controller's StatefulSet", Duration::from_secs(30), async || {
            Ok(sts_api.get(server).await?)
        })
        .await?;
        let pod_spec = sts.spec.and_then(|s| s.template.spec).context("StatefulSet without pod template")?;
        let agent = pod_spec.containers.iter().find(|c| c.name == "agent").context("no agent container")?.clone();
        let service_account = pod_spec.service_account_name.clone().context("pod without ServiceAccount")?;
        let config_name = dittofs_api::names::config_map(server);
        let cm_api: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
        let config = cm_api.get(&config_name).await?;
        let config_yaml = config.data.and_then(|d| d.get("config.yaml").cloned()).context("config.yaml missing")?;
        let fs = DittoFs::start(Options { config_yaml: Some(config_yaml), ..Options::default() }).await?;

        let pod_name = format!("{server}-0");
        let mut env = resolve_env(&client, namespace, &pod_name, &agent).await?;
        let mounts =
            write_secret_mounts(&client, namespace, &pod_spec, &agent, &dir.join(format!("{pod_name}-volumes")))
                .await?;
        for (_, value) in &mut env {
            let under =
                |from: &str| value.strip_prefix(from).is_some_and(|rest| rest.is_empty() || rest.starts_with('/'));
            if let Some((from, to)) = mounts.iter().find(|(from, _)| under(from)) {
                *value = format!("{}{}", to.display(), &value[from.len()..]);
            }
        }
        let admin_port = free_port()?;
        env.retain(|(k, _)| k != dittofs_api::agent_env::DITTOFS_URL && k != dittofs_api::agent_env::ADMIN_ADDR);
        env.push((dittofs_api::agent_env::DITTOFS_URL.into(), fs.url()));
        env.push((dittofs_api::agent_env::ADMIN_ADDR.into(), format!("127.0.0.1:{admin_port}")));

        let token = cp.service_account_token(namespace, &service_account).await?;
        let sa_dir = dir.join(format!("{pod_name}-serviceaccount"));
        env.extend(service_account_env(cp, &token, namespace, &sa_dir)?);
        let mut cmd = Command::new(workspace_bin("dittofs-agent")?);
        cmd.env_clear().env("PATH", std::env::var_os("PATH").unwrap_or_default());
        cmd.envs(env.iter().cloned());
        let agent = Proc::spawn("dittofs-agent", cmd, dir.join(format!("{pod_name}-agent.log")))?;
        let agent_admin = format!("http://127.0.0.1:{admin_port}");
        Ok(Pod { name: pod_name, fs, agent, agent_admin, agent_env: env })
    }
}

/// The container's env with `fieldRef` (pod name/namespace) and `secretKeyRef` resolved as the kubelet would.
async fn resolve_env(
    client: &kube::Client,
    namespace: &str,
    pod: &str,
    container: &Container,
) -> anyhow::Result<Vec<(String, String)>> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let mut out = Vec::new();
    for var in container.env.iter().flatten() {
        let value = match (&var.value, &var.value_from) {
            (Some(v), _) => v.clone(),
            (None, Some(from)) => match (&from.field_ref, &from.secret_key_ref) {
                (Some(f), _) if f.field_path == "metadata.name" => pod.to_string(),
                (Some(f), _) if f.field_path == "metadata.namespace" => namespace.to_string(),
                (None, Some(s)) => {
                    let secret =
                        secrets.get(&s.name).await.with_context(|| format!("Secret {} for ${}", s.name, var.name))?;
                    let bytes = secret
                        .data
                        .and_then(|d| d.get(&s.key).cloned())
                        .with_context(|| format!("key {} missing in Secret {} for ${}", s.key, s.name, var.name))?;
                    String::from_utf8(bytes.0)?
                }
                _ => anyhow::bail!("cannot resolve ${} of container {}", var.name, container.name),
            },
            (None, None) => String::new(),
        };
        out.push((var.name.clone(), value));
    }
    Ok(out)
}

/// Writes each Secret volume `container` mounts into its own directory under `root`, as the kubelet would
/// project it (the items asked for, or every key, with their modes); returns (mount path, directory) pairs.
/// A missing optional Secret (or key) gives what the kubelet gives: an empty directory (or no file).
async fn write_secret_mounts(
    client: &kube::Client,
    namespace: &str,
    pod: &PodSpec,
    container: &Container,
    root: &Path,
) -> anyhow::Result<Vec<(String, PathBuf)>> {
    use std::os::unix::fs::PermissionsExt as _;

    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let mut out = Vec::new();
    for mount in container.volume_mounts.iter().flatten() {
        let volume = pod.volumes.iter().flatten().find(|v| v.name == mount.name);
        let Some(source) = volume.and_then(|v| v.secret.as_ref()) else { continue };
        let name = source.secret_name.clone().context("Secret volume without secretName")?;
        let optional = source.optional == Some(true);
        let data = match secrets.get_opt(&name).await? {
            Some(secret) => secret.data.unwrap_or_default(),
            None if optional => Default::default(),
            None => anyhow::bail!("Secret {name} of volume {} does not exist", mount.name),
        };
        let dir = root.join(&mount.name);
        std::fs::create_dir_all(&dir)?;
        let items: Vec<(String, String, Option<i32>)> = match &source.items {
            Some(items) => items.iter().map(|i| (i.key.clone(), i.path.clone(), i.mode)).collect(),
            None => data.keys().map(|k| (k.clone(), k.clone(), None)).collect(),
        };
        for (key, path, mode) in items {
            let Some(value) = data.get(&key) else {
                anyhow::ensure!(optional, "key {key} missing in Secret {name} of volume {}", mount.name);
                continue;
            };
            let file = dir.join(&path);
            std::fs::write(&file, &value.0)?;
            let mode = mode.or(source.default_mode).unwrap_or(0o644);
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(u32::try_from(mode)?))?;
        }
        out.push((mount.mount_path.trim_end_matches('/').to_owned(), dir));
    }
    Ok(out)
}
