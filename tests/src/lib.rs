//! Test harness: real servers started on loopback for the integration tests, and the DittoFS emulator.

pub mod bench;
pub mod demo;
pub mod dittofs;
pub mod dittofs_client;
pub mod emulator;
pub mod pod;
pub mod scenario;
pub(crate) mod process;
pub mod wait;
pub mod kube_env;
