//! Test harness: real servers started on loopback for the integration tests, DittoFS (real or the emulator package), the worlds the agent and controller tests run in, the release tier's readers (ELF, OCI layouts), the demo and the bench.

pub mod agent_world;
pub mod audit;
pub mod bench;
pub mod controller_world;
pub mod crds;
pub mod database;
pub mod demo;
pub mod deploy;
pub mod dittofs;
pub mod dittofs_client;
pub mod docs;
pub mod faults;
pub mod go_operator;
pub mod jaeger;
pub mod kerberos;
pub mod kube_env;
pub mod ldap;
pub mod metrics_doc;
pub mod objects;
pub mod pod;
pub mod postgres;
pub(crate) mod process;
pub mod release;
pub mod scenario;
pub mod shares;
pub mod tls;

pub use process::{free_port, workspace_bin};
