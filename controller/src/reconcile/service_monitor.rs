//! The ServiceMonitor step: applied when the spec asks for one and the cluster serves the API, deleted when
//! the spec no longer asks for one, and otherwise only reported (MetricsReady, one Warning Event): a missing
//! prometheus-operator never fails a reconcile, as in the Go operator.
//!
//! No request at rest: an unchanged monitor is not sent again ([`crate::apply::Applier::unchanged`]) and a
//! deletion goes by the ServiceMonitor cache, which is only read while the API is served.

use kube::ResourceExt;

use dittofs_api::{DittoServer, names};

use crate::desired::service_monitor::{Monitor, ServiceMonitor, service_monitor};
use crate::discovery::Served;
use crate::error::Error;
use crate::events;
use crate::raw::RawDittoServer;
use crate::reconcile::Context;
use crate::reconcile::children::ensure_one;

/// Applies or deletes `<cr>-metrics` as the spec says, as far as the cluster serves the API.
pub async fn reconcile(ctx: &Context, raw: &RawDittoServer, ds: &DittoServer) -> Result<Monitor, Error> {
    let served = ctx.service_monitor_api();
    match (service_monitor(ds), served) {
        (Some(monitor), Served::Yes) => {
            ensure_one(ctx, raw, &monitor).await?;
            Ok(Monitor::Applied)
        }
        (Some(_), Served::No) => Ok(Monitor::ApiMissing),
        (Some(_), Served::Unknown) => Ok(Monitor::ApiUnknown),
        (None, Served::Yes) => {
            delete(ctx, raw, ds).await?;
            Ok(Monitor::NotWanted)
        }
        // Without the API there is no monitor to delete; unknown, the next answer reconciles every server.
        (None, Served::No | Served::Unknown) => Ok(Monitor::NotWanted),
    }
}

/// Garbage collection only follows the server's deletion: a monitor no longer asked for must go now, or
/// Prometheus keeps a target that is gone (metrics off) or that the user turned off.
async fn delete(ctx: &Context, raw: &RawDittoServer, ds: &DittoServer) -> Result<(), Error> {
    let ns = ds.namespace().ok_or(Error::MissingMetadata("namespace"))?;
    let uid = ds.metadata.uid.as_deref().ok_or(Error::MissingMetadata("uid"))?;
    let name = names::metrics_service(&ds.name_any());
    if ctx.applier.delete_if_present::<ServiceMonitor>(&ns, &name, uid).await? {
        let why = if crate::desired::config::metrics(&ds.spec).is_some() {
            "metrics.serviceMonitor is not enabled"
        } else {
            "metrics are disabled"
        };
        let note = format!("Deleted ServiceMonitor {name}: {why}");
        ctx.events.normal(raw, events::DELETED, "Delete", note).await;
    }
    Ok(())
}
