//! A real Kubernetes control plane for tests and demos: etcd, kube-apiserver (RBAC on) and kube-controller-manager started on loopback from the binaries `scripts/testenv/build.sh` builds.
//!
//! Typical test:
//!
//! ```no_run
//! use dittofs_tests::kube_env::{ControlPlane, wait_until};
//! # async fn f() -> anyhow::Result<()> {
//! ControlPlane::shared()
//!     .with_temp_ns("my-test", async |ns| {
//!         let pods = ns.api::<k8s_openapi::api::core::v1::Pod>();
//!         // create things with ns.client() / ns.api(), assert with wait_until(…)
//!         Ok(())
//!     })
//!     .await
//! # }
//! ```
//!
//! Layout: [`binaries`] finds the binaries, `pki` makes certificates and keys,
//! `crate::process` runs servers under a watchdog, [`ControlPlane`] wires them up,
//! [`TempNamespace`] isolates tests, [`wait_until`] waits on conditions.

pub mod binaries;
mod control_plane;
mod namespace;
mod pki;
mod wait;

pub use binaries::{ETCD_VERSION, K8S_VERSION, locate_bin_dir};
pub use control_plane::{ControlPlane, ControlPlaneOptions};
pub use namespace::TempNamespace;
pub use pki::{SERVICE_ACCOUNT_ISSUER, SERVICE_CLUSTER_IP_RANGE};
pub use wait::{MEASURE_EVERY, measure_until, wait_until};
