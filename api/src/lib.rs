//! Types and names shared by the agent and the controller: the `DittoServer` CRD, object names, labels.
//!
//! Nothing here does IO: the crate holds the resource types (with their schema and CEL validation),
//! pure naming and labelling functions, constants, and the CRD rendered as YAML ([`crd_yaml`]).

pub mod agent_env;
pub mod conditions;
pub mod constants;
pub mod crd;
pub mod duration;
pub mod labels;
pub mod names;
pub mod secret;
pub mod text;

pub use crd::{
    DittoServer, DittoServerSpec, DittoServerStatus, crd_yaml, custom_resource_definition, unimplemented_fields,
};
