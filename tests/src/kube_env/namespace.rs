//! [`TempNamespace`] and [`ControlPlane::with_temp_ns`]: a uniquely named namespace per test, deleted afterwards (also when the test fails or panics), with the server logs printed on failure; and `kubectl` against the control plane.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use kube::api::{Api, DeleteParams, ObjectMeta, PostParams};

use super::control_plane::ControlPlane;
use super::wait::wait_until;

/// A namespace that exists for one test. Prefer [`ControlPlane::with_temp_ns`];
/// use this directly when the test needs to control the deletion itself.
#[derive(Debug)]
pub struct TempNamespace<'cp> {
    cp: &'cp ControlPlane,
    name: String,
    deleted: bool,
}

impl<'cp> TempNamespace<'cp> {
    /// Creates `<prefix>-<n>-<random>` and (when kube-controller-manager runs)
    /// waits for its `default` ServiceAccount, without which the apiserver
    /// rejects pods, so a StatefulSet would stall on backoff instead of
    /// creating its Pod.
    pub async fn create(cp: &'cp ControlPlane, prefix: &str) -> anyhow::Result<TempNamespace<'cp>> {
        // The counter keeps names unique within the process, the random part
        // across runs against the same (e.g. long-lived demo) control plane.
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let random = uuid::Uuid::new_v4().simple().to_string();
        let name = format!("{prefix}-{n}-{}", &random[..6]);

        let client = cp.client();
        let namespaces: Api<Namespace> = Api::all(client.clone());
        let ns =
            Namespace { metadata: ObjectMeta { name: Some(name.clone()), ..Default::default() }, ..Default::default() };
        namespaces.create(&PostParams::default(), &ns).await.with_context(|| format!("create namespace {name}"))?;
        let temp = TempNamespace { cp, name, deleted: false };

        if cp.runs_controller_manager() {
            let sas: Api<ServiceAccount> = Api::namespaced(client, &temp.name);
            wait_until(&format!("ServiceAccount {}/default", temp.name), Duration::from_secs(30), async || {
                sas.get("default").await.map(drop).map_err(Into::into)
            })
            .await?;
        }
        Ok(temp)
    }

    /// The namespace name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The control plane it lives in.
    pub fn control_plane(&self) -> &'cp ControlPlane {
        self.cp
    }

    /// A fresh admin client (see [`ControlPlane::client`]).
    pub fn client(&self) -> kube::Client {
        self.cp.client()
    }

    /// An admin `Api<K>` for namespaced resources in this namespace.
    pub fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        <K as kube::Resource>::DynamicType: Default,
    {
        Api::namespaced(self.cp.client(), &self.name)
    }

    /// Runs kubectl in this namespace (see [`ControlPlane::kubectl`]).
    pub fn kubectl(&self, args: &[&str]) -> anyhow::Result<String> {
        self.cp.kubectl(&[&["-n", self.name.as_str()], args].concat())
    }

    /// Deletes the namespace (the namespace controller removes its contents
    /// in the background; nothing waits for that).
    pub async fn delete(mut self) -> anyhow::Result<()> {
        self.deleted = true;
        delete_namespace(self.cp, &self.name).await
    }
}

impl Drop for TempNamespace<'_> {
    /// Reached without [`TempNamespace::delete`] when the test returned early
    /// or panicked: print the logs if panicking, and delete the namespace from
    /// a helper thread (`Drop` cannot await, and the test's runtime may be
    /// unwinding).
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("test panicked using namespace {}", self.name);
            self.cp.print_log_tails();
        }
        if self.deleted {
            return;
        }
        let (cp, name) = (self.cp, self.name.as_str());
        std::thread::scope(|scope| {
            scope.spawn(|| {
                let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build();
                let result = match runtime {
                    Ok(rt) => rt.block_on(delete_namespace(cp, name)),
                    Err(e) => Err(e.into()),
                };
                if let Err(e) = result {
                    eprintln!("warning: could not delete temp namespace {name}: {e:#}");
                }
            });
        });
    }
}

async fn delete_namespace(cp: &ControlPlane, name: &str) -> anyhow::Result<()> {
    let namespaces: Api<Namespace> = Api::all(cp.client());
    match namespaces.delete(name, &DeleteParams::background()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
        Err(e) => Err(e).with_context(|| format!("delete namespace {name}")),
    }
}

impl ControlPlane {
    /// Runs the control plane's kubectl with its admin kubeconfig; returns stdout, or fails with stderr.
    pub fn kubectl(&self, args: &[&str]) -> anyhow::Result<String> {
        let out = std::process::Command::new(self.bin_dir().join("kubectl"))
            .arg("--kubeconfig")
            .arg(self.kubeconfig_path())
            .args(args)
            .output()
            .context("run kubectl")?;
        anyhow::ensure!(out.status.success(), "kubectl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        Ok(String::from_utf8(out.stdout)?)
    }

    /// Runs `test` with a fresh namespace and deletes it afterwards. On error
    /// (or panic) the server log tails are printed so the failure report shows
    /// what the apiserver and controllers saw.
    ///
    /// ```no_run
    /// # use dittofs_tests::kube_env::ControlPlane;
    /// # async fn f() -> anyhow::Result<()> {
    /// ControlPlane::shared()
    ///     .with_temp_ns("smoke", async |ns| {
    ///         let cms = ns.api::<k8s_openapi::api::core::v1::ConfigMap>();
    ///         // …
    ///         Ok(())
    ///     })
    ///     .await
    /// # }
    /// ```
    pub async fn with_temp_ns<T>(
        &self,
        prefix: &str,
        test: impl AsyncFnOnce(&TempNamespace<'_>) -> anyhow::Result<T>,
    ) -> anyhow::Result<T> {
        let ns = TempNamespace::create(self, prefix).await?;
        let result = test(&ns).await;
        if let Err(e) = &result {
            eprintln!("test failed in namespace {}: {e:#}", ns.name());
            self.print_log_tails();
        }
        let deleted = ns.delete().await;
        // The test's own error matters more than a failed clean-up.
        let value = result?;
        deleted?;
        Ok(value)
    }
}
