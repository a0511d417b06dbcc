//! The controller's Prometheus metrics (prometheus-client), readable in-process by tests as well.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Label of a reconcile outcome.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabel {
    /// `ok` or the error's `metric_label`.
    pub result: String,
}

/// Label of a write.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    /// Kind of the object written (e.g. `StatefulSet`, `DittoServerStatus`).
    pub kind: String,
}

/// Every metric the controller exports. Cloning shares the underlying values.
#[derive(Clone, Debug)]
pub struct Metrics {
    /// Reconciles by outcome.
    pub reconciles: Family<ResultLabel, Counter>,
    /// Reconcile durations.
    pub reconcile_duration: Histogram,
    /// Applies and status patches that changed an object (a no-op apply is not counted).
    pub writes: Family<KindLabel, Counter>,
    /// Applies of the server's own children sent to the apiserver (no-op ones included; an unchanged child
    /// is not sent at all).
    pub child_applies: Family<KindLabel, Counter>,
    /// 1 while this instance holds the leader lease.
    pub leader: Gauge,
    /// Reconciles whatever the result (not exported: the histogram's count says the same).
    total: Counter,
    /// Times this instance became leader.
    pub leader_acquisitions: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            reconciles: Family::default(),
            // 1 ms .. ~16 s.
            reconcile_duration: Histogram::new(exponential_buckets(0.001, 2.0, 15)),
            writes: Family::default(),
            child_applies: Family::default(),
            leader: Gauge::default(),
            leader_acquisitions: Counter::default(),
            total: Counter::default(),
        }
    }
}

impl Metrics {
    /// Registers every metric under the `dittofs_controller` prefix.
    pub fn register(&self, registry: &mut Registry) {
        let r = registry.sub_registry_with_prefix("dittofs_controller");
        r.register("reconciles", "DittoServer reconciles by result (ok or the error label)", self.reconciles.clone());
        r.register(
            "reconcile_duration_seconds",
            "Duration of a DittoServer reconcile",
            self.reconcile_duration.clone(),
        );
        r.register(
            "writes",
            "Writes that changed an object, by kind (no-op applies are not counted)",
            self.writes.clone(),
        );
        r.register(
            "child_applies",
            "Applies of the servers' own children sent, by kind, changed or not (unchanged children are not sent)",
            self.child_applies.clone(),
        );
        r.register("leader", "1 while this instance holds the leader lease", self.leader.clone());
        r.register("leader_acquisitions", "Times this instance became leader", self.leader_acquisitions.clone());
    }

    /// Records one reconcile.
    pub fn reconciled(&self, result: &str, took: Duration) {
        self.reconciles.get_or_create(&ResultLabel { result: result.to_owned() }).inc();
        self.reconcile_duration.observe(took.as_secs_f64());
        self.total.inc();
    }

    /// Records a write of `kind`.
    pub fn wrote(&self, kind: &str) {
        self.writes.get_or_create(&KindLabel { kind: kind.to_owned() }).inc();
    }

    /// Records an apply of a child of `kind` sent to the apiserver.
    pub fn sent_apply(&self, kind: &str) {
        self.child_applies.get_or_create(&KindLabel { kind: kind.to_owned() }).inc();
    }

    /// Applies of children of `kind` sent so far.
    pub fn child_apply_count(&self, kind: &str) -> u64 {
        self.child_applies.get(&KindLabel { kind: kind.to_owned() }).map_or(0, |c| c.get())
    }

    /// Reconciles so far with the given result.
    pub fn reconcile_count(&self, result: &str) -> u64 {
        self.reconciles.get(&ResultLabel { result: result.to_owned() }).map_or(0, |c| c.get())
    }

    /// Reconciles so far, whatever the result.
    pub fn total_reconciles(&self) -> u64 {
        self.total.get()
    }

    /// Writes so far of `kind`.
    pub fn write_count(&self, kind: &str) -> u64 {
        self.writes.get(&KindLabel { kind: kind.to_owned() }).map_or(0, |c| c.get())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::encoding::text::encode;

    #[test]
    fn metrics_are_exported_with_the_prefix() {
        let m = Metrics::default();
        let mut registry = Registry::default();
        m.register(&mut registry);
        m.reconciled("ok", Duration::from_millis(5));
        m.wrote("StatefulSet");
        m.leader.set(1);
        let mut text = String::new();
        encode(&mut text, &registry).unwrap();
        assert!(text.contains("dittofs_controller_reconciles_total{result=\"ok\"} 1"), "{text}");
        assert!(text.contains("dittofs_controller_writes_total{kind=\"StatefulSet\"} 1"), "{text}");
        assert!(text.contains("dittofs_controller_leader 1"), "{text}");
        assert_eq!(m.total_reconciles(), 1);
        assert_eq!(m.write_count("StatefulSet"), 1);
        assert_eq!(m.reconcile_count("rejected"), 0);
    }
}
