//! Test harness: real servers started on loopback for the integration tests, DittoFS (real or the emulator package), the demo and the bench.

pub mod bench;
pub mod demo;
pub mod dittofs;
pub mod dittofs_client;
pub mod kube_env;
pub mod pod;
pub(crate) mod process;
pub mod scenario;
