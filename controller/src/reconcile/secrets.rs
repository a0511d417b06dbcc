//! The generated Secrets (JWT key, admin bootstrap password, operator credentials): created once, never
//! force-applied over what exists.
//!
//! During a leader hand-over two controllers can reconcile a new server at the same moment, each with
//! its own freshly generated values. Force-applying them would let the second overwrite the first after
//! DittoFS or the agent may already have used it (a JWT key that signs nothing any more, an admin
//! password DittoFS was not bootstrapped with). So a missing Secret is *created*: a 409 means another
//! writer got there first, and the reconcile stops and retries, reading the value that won. An existing
//! Secret of this server is left as it is, except that a value someone removed is filled in again.
//!
//! Reading them by name needs only `get`: the controller neither lists nor watches Secrets (see
//! `crate::cache`), so it cannot read the Secrets of the cluster at large.

use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use kube::api::{Api, Patch, PostParams};

use dittofs_api::constants::CONTROLLER_FIELD_MANAGER;

use crate::apply::apply_params;
use crate::error::Error;
use crate::raw::RawDittoServer;
use crate::reconcile::Context;

/// What exists of one generated Secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Existing {
    /// No Secret of that name.
    Absent,
    /// This server's Secret, with the value the controller keeps.
    Complete,
    /// This server's Secret without that value (someone removed the key): the value is filled in again.
    Incomplete,
}

/// Makes `secret` exist with its values, writing only when it is absent or incomplete.
pub async fn ensure(ctx: &Context, raw: &RawDittoServer, secret: &Secret, existing: Existing) -> Result<(), Error> {
    let name = secret.name_any();
    let ns = secret.namespace().ok_or(Error::MissingMetadata("namespace"))?;
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), &ns);
    match existing {
        Existing::Complete => Ok(()),
        Existing::Absent => {
            let params = PostParams { field_manager: Some(CONTROLLER_FIELD_MANAGER.to_owned()), ..Default::default() };
            let created = api.create(&params, secret).await.map_err(|e| match e {
                kube::Error::Api(s) if s.code == 409 => Error::kube(
                    format!(
                        "create Secret {name} (created by another writer meanwhile; its value is read on the retry)"
                    ),
                    kube::Error::Api(s),
                ),
                e => Error::kube(format!("create Secret {name}"), e),
            })?;
            ctx.metrics.wrote("Secret");
            ctx.events.created(raw, format!("Secret {}", created.name_any()));
            Ok(())
        }
        Existing::Incomplete => {
            api.patch(&name, &apply_params(), &Patch::Apply(secret))
                .await
                .map_err(|e| Error::kube(format!("apply Secret {name}"), e))?;
            ctx.metrics.wrote("Secret");
            tracing::info!(secret = %name, "filled in a value missing from a managed Secret");
            Ok(())
        }
    }
}
