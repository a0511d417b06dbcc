//! Where the time of one toggle goes: the stages from DittoFS's change to a client seeing Kubernetes
//! follow, read from the trace both binaries exported (agent poll → status apply → reconcile → writes)
//! and the bench's own clocks (the toggle's answer, the exposure watch).
//!
//! All timestamps are microseconds since the Unix epoch on this machine's clock, which every process shares.
//! The controller's watch event is the reconcile's start minus its `queued_us` (how long the event waited
//! for the reconcile, which the controller records).

use std::time::{Duration, Instant};

use crate::jaeger::{CONTROLLER, Change, Trace};

/// The stages, in order, with the label of the interval that ends at each.
pub const STAGES: [&str; 7] = [
    "change → agent detects (fast-path wait)",
    "detects → adapter list read",
    "list read → status applied",
    "status applied → controller's watch event",
    "watch event → reconcile starts",
    "reconcile starts → Service, policy, port written",
    "written → a client's watch sees all three",
];

/// One toggle's moments, µs since the epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Moments {
    /// DittoFS answered the toggle.
    pub changed: u64,
    /// The agent's poll that saw it began.
    pub detected: u64,
    /// The poll's list was read (its status apply began).
    pub listed: u64,
    /// The status apply returned.
    pub reported: u64,
    /// The controller's watch delivered the status.
    pub queued: u64,
    /// The reconcile began.
    pub reconciling: u64,
    /// The last adapter write of the reconcile returned.
    pub written: u64,
    /// The bench's watch saw Service, policy and port all match.
    pub visible: u64,
}

impl Moments {
    /// Reads the moments of `change` in `trace`; `changed` and `visible` are the bench's own.
    pub fn of(trace: &Trace, change: &Change<'_>, changed: u64, visible: u64) -> Result<Moments, String> {
        let queued_us = change.reconcile.tag("queued_us").and_then(|q| q.parse::<u64>().ok());
        let queued_us = queued_us.ok_or("the reconcile does not say how long its watch event waited")?;
        let written = trace
            .spans
            .iter()
            .filter(|s| s.service == CONTROLLER && s.operation.starts_with("adapter."))
            .filter(|s| trace.descends_from(s, &change.reconcile.span_id))
            .map(|s| s.end_us())
            .max()
            .ok_or("no adapter write under the reconcile")?;
        Ok(Moments {
            changed,
            detected: change.poll.start_us,
            listed: change.status_write.start_us,
            reported: change.status_write.end_us(),
            queued: change.reconcile.start_us.saturating_sub(queued_us),
            reconciling: change.reconcile.start_us,
            written,
            visible,
        })
    }

    /// The seven stage durations of [`STAGES`], in milliseconds (negative when two clocks' readings cross:
    /// a watch can deliver a write before the writer has read its answer).
    pub fn stages_ms(&self) -> [f64; 7] {
        let at = [
            self.changed,
            self.detected,
            self.listed,
            self.reported,
            self.queued,
            self.reconciling,
            self.written,
            self.visible,
        ];
        std::array::from_fn(|i| (at[i + 1] as f64 - at[i] as f64) / 1000.0)
    }

    /// From detection to visible, the work after the fast path, in milliseconds.
    pub fn after_detection_ms(&self) -> f64 {
        (self.visible as f64 - self.detected as f64) / 1000.0
    }
}

/// Converts the bench's monotonic instants to epoch microseconds (one reading of both clocks).
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    instant: Instant,
    epoch_us: u64,
}

impl Clock {
    pub fn now() -> Clock {
        Clock { instant: Instant::now(), epoch_us: crate::jaeger::now_us() }
    }

    pub fn epoch_us(&self, at: Instant) -> u64 {
        let us = |d: Duration| u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        match at.checked_duration_since(self.instant) {
            Some(after) => self.epoch_us + us(after),
            None => self.epoch_us - us(self.instant - at),
        }
    }
}

/// The value at quantile `q` of `sorted` (nearest rank).
pub fn quantile(sorted: &[f64], q: f64) -> f64 {
    sorted.get(((sorted.len().max(1) - 1) as f64 * q).round() as usize).copied().unwrap_or(f64::NAN)
}

/// The stages of `rounds` toggles as a group of the plot: median and p99 per stage, in milliseconds.
pub fn bars<'a>(title: &'a str, rounds: &[Moments]) -> super::plot::Bars<'a> {
    let rows = STAGES
        .iter()
        .enumerate()
        .map(|(i, label)| {
            let mut values: Vec<f64> = rounds.iter().map(|m| m.stages_ms()[i]).collect();
            values.sort_by(f64::total_cmp);
            ((*label).to_owned(), quantile(&values, 0.5), quantile(&values, 0.99))
        })
        .collect();
    super::plot::Bars { title, rows }
}

/// A markdown table of the stages of `rounds` toggles: median and p99 per stage.
pub fn table(title: &str, rounds: &[Moments]) -> String {
    let mut out = format!("\n### {title} (n = {})\n\n| stage | median | p99 |\n|---|---|---|\n", rounds.len());
    let mut row = |label: &str, mut values: Vec<f64>| {
        values.sort_by(f64::total_cmp);
        out += &format!("| {label} | {:.1} ms | {:.1} ms |\n", quantile(&values, 0.5), quantile(&values, 0.99));
    };
    for (i, label) in STAGES.iter().enumerate() {
        row(label, rounds.iter().map(|m| m.stages_ms()[i]).collect());
    }
    row("**after detection** (detects → seen)", rounds.iter().map(Moments::after_detection_ms).collect());
    row("**total** (change → seen)", rounds.iter().map(|m| (m.visible as f64 - m.changed as f64) / 1000.0).collect());
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn span(id: &str, op: &str, process: &str, parent: Option<&str>, start: u64, duration: u64, tags: Value) -> Value {
        let refs: Vec<Value> = parent.map(|p| json!({"refType": "CHILD_OF", "spanID": p})).into_iter().collect();
        json!({"spanID": id, "operationName": op, "processID": process, "startTime": start, "duration": duration,
               "references": refs, "tags": tags})
    }
    use serde_json::Value;

    fn trace() -> Trace {
        let tag = |pairs: &[(&str, &str)]| -> Value {
            pairs.iter().map(|(k, v)| json!({"key": k, "type": "string", "value": v})).collect()
        };
        let svc = tag(&[("kind", "Service"), ("adapter", "smb"), ("server", "files")]);
        Trace::from_json(&json!({
            "traceID": "t",
            "processes": {"a": {"serviceName": "dittofs-agent"}, "c": {"serviceName": "dittofs-controller"}},
            "spans": [
                span("poll", "dittofs.poll", "a", None, 1_000_000, 9_000, tag(&[("server", "files")])),
                span("sw", "status.write", "a", Some("poll"), 1_004_000, 5_000, tag(&[])),
                json!({"spanID": "rec", "operationName": "reconcile", "processID": "c", "startTime": 1_012_000,
                       "duration": 30_000, "references": [{"refType": "FOLLOWS_FROM", "spanID": "poll"}],
                       "tags": tag(&[("server", "files"), ("queued_us", "1500")])}),
                span("svc", "adapter.apply", "c", Some("rec"), 1_020_000, 4_000, svc),
                span("port", "adapter.ports", "c", Some("rec"), 1_030_000, 6_000, tag(&[])),
            ],
        }))
    }

    #[test]
    fn the_stages_come_from_the_spans_and_add_up_to_the_total() {
        let trace = trace();
        let change = trace.adapter_change("files", "smb", "adapter.apply", 999_000).unwrap();
        let m = Moments::of(&trace, &change, 700_000, 1_040_000).unwrap();
        assert_eq!(
            (m.detected, m.listed, m.reported, m.queued, m.reconciling, m.written),
            (1_000_000, 1_004_000, 1_009_000, 1_010_500, 1_012_000, 1_036_000),
            "the last write (the ports) ends the writes"
        );
        let stages = m.stages_ms();
        assert_eq!(stages, [300.0, 4.0, 5.0, 1.5, 1.5, 24.0, 4.0]);
        assert_eq!(stages.iter().sum::<f64>(), (m.visible - m.changed) as f64 / 1000.0);
        assert_eq!(m.after_detection_ms(), 40.0);
    }

    #[test]
    fn a_reconcile_without_its_queue_time_is_refused() {
        let mut trace = trace();
        trace.spans.iter_mut().for_each(|s| s.tags.retain(|(k, _)| k != "queued_us"));
        let change = trace.adapter_change("files", "smb", "adapter.apply", 0).unwrap();
        assert!(Moments::of(&trace, &change, 0, 0).unwrap_err().contains("watch event"));
    }

    #[test]
    fn quantiles_and_the_clock() {
        let sorted: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!((quantile(&sorted, 0.5), quantile(&sorted, 0.99)), (51.0, 99.0));
        assert!(quantile(&[], 0.5).is_nan());
        let clock = Clock::now();
        let later = clock.instant + Duration::from_millis(3);
        assert_eq!(clock.epoch_us(later) - clock.epoch_us, 3_000);
        assert_eq!(clock.epoch_us - clock.epoch_us(clock.instant - Duration::from_millis(2)), 2_000);
    }
}
