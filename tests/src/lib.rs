//! Test harness: real servers started on loopback for the integration tests, and the DittoFS emulator.

pub mod bench;
pub mod demo;
pub mod dittofs;
pub mod dittofs_client;
pub mod emulator;
pub mod kube_env;
pub mod pod;
pub(crate) mod process;
pub mod scenario;
