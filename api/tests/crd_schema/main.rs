//! The CRD's schema without an apiserver: its structure and documentation, the defaults, what admission refuses
//! (the CEL rules evaluated client-side) and the Go operator's sample manifests. One test binary, so the helpers
//! in `common` are each used.

mod admission;
mod agent;
mod common;
mod defaults;
mod fixtures;
mod hostile_specs;
mod schema;
