//! Pure translation of DittoFS's adapter list into the agent's report: sanitized and de-duplicated types,
//! port 0 resolved, bounded counts and texts, and the health-freshness rule.
//!
//! Freshness rule (docs/dittofs-api.md#adapter-status-caching). DittoFS caches each adapter's health report for 5 s and
//! a PUT (enable, disable, port) does not invalidate it, so right after a toggle `status` can contradict `running`. A
//! report is *conclusive* when its `checked_at` is later than the row's `updated_at` (the toggle) — and, if it is not
//! `healthy`, at least [`STARTING_WINDOW`] later: a probe taken while the listener was still binding says "has not
//! started yet" although the bind succeeds a moment later (DittoFS's PUT answer itself fills the cache right after the
//! restart). Only a conclusive report is reported as `health`; otherwise `health` is absent, which readers take as
//! "enabled and running decide". So a toggle is reflected at once, and the real health follows when DittoFS re-checks:
//! the agent polls again when the cache expires (see [`recheck_after`]). A report without `updated_at` or `checked_at`
//! is trusted.

use std::time::Duration;

use dittofs_api::{constants, crd::AgentAdapterStatus};
use jiff::Timestamp;

use crate::{
    dittofs::ApiAdapter,
    text::{clean, sanitize_type, truncate_chars},
};

/// Most adapters reported (the CRD's bound on `status.agents[].adapters`).
pub const MAX_REPORTED_ADAPTERS: usize = 16;
/// Longest health word (the CRD's bound).
const MAX_HEALTH_LEN: usize = 32;
/// DittoFS's health cache lifetime (`StatusCacheTTL`), plus a margin.
const STATUS_CACHE_TTL: Duration = Duration::from_millis(5_300);
/// A report taken this soon after a change and not healthy may only mean the listener was still binding.
pub const STARTING_WINDOW: Duration = Duration::from_secs(2);

/// The adapters to report, and how many were left out by the bound.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Report {
    pub adapters: Vec<AgentAdapterStatus>,
    pub dropped: usize,
}

impl Report {
    /// Types of the adapters that are enabled and running, as `/health/ready` would list them.
    pub fn running_types(&self) -> std::collections::BTreeSet<String> {
        self.adapters.iter().filter(|a| a.running).map(|a| a.r#type.clone()).collect()
    }
}

/// Whether the health report of `a` can be believed (module docs).
pub fn is_conclusive(a: &ApiAdapter) -> bool {
    let Some(health) = &a.status else { return true };
    let (Some(checked), Some(updated)) = (health.checked_at, a.updated_at) else { return true };
    if checked <= updated {
        return false;
    }
    health.status == "healthy" || elapsed(updated, checked) >= STARTING_WINDOW
}

/// Builds the report from a successful list. Sorted by type; the first of two raw types that sanitize
/// alike wins (the status list is keyed by type, so duplicates would make the apply fail).
pub fn report(list: &[ApiAdapter]) -> Report {
    let mut adapters: Vec<AgentAdapterStatus> = Vec::with_capacity(list.len().min(MAX_REPORTED_ADAPTERS));
    let mut sorted: Vec<&ApiAdapter> = list.iter().collect();
    sorted.sort_by(|a, b| a.kind.cmp(&b.kind));
    for a in sorted {
        let entry = adapter_status(a);
        if !adapters.iter().any(|x| x.r#type == entry.r#type) {
            adapters.push(entry);
        }
    }
    adapters.sort_by(|a, b| a.r#type.cmp(&b.r#type));
    let dropped = adapters.len().saturating_sub(MAX_REPORTED_ADAPTERS);
    adapters.truncate(MAX_REPORTED_ADAPTERS);
    Report { adapters, dropped }
}

fn adapter_status(a: &ApiAdapter) -> AgentAdapterStatus {
    let kind = sanitize_type(&a.kind);
    let (mut health, mut message) = match (&a.status, is_conclusive(a)) {
        (Some(h), true) => (health_word(&h.status), h.message.as_deref().map(clean).filter(|m| !m.is_empty())),
        (Some(_), false) => {
            (None, Some("health not re-checked by DittoFS since the last change (cached up to 5s)".to_owned()))
        }
        (None, _) => (None, None),
    };
    let port = match constants::resolve_adapter_port(&a.kind, a.port) {
        Some(p) => i32::from(p),
        None => {
            // Reported so it is visible, but with port 0 nothing can expose it.
            health = health.or_else(|| Some("unknown".to_owned()));
            message = Some(truncate_chars(
                &format!("DittoFS reports port {} and type {kind:?} has no default port: not exposable", a.port),
                1024,
            ));
            0
        }
    };
    AgentAdapterStatus { r#type: kind, port, enabled: a.enabled, running: a.running, health, message }
}

fn health_word(s: &str) -> Option<String> {
    let w: String = s.chars().filter(|c| c.is_ascii_alphanumeric()).take(MAX_HEALTH_LEN).collect();
    (!w.is_empty()).then_some(w)
}

/// When to poll again because a report is not conclusive yet: once DittoFS's cache has expired. `None`
/// when everything is settled — so a permanently failed bind is not re-polled every few seconds (each
/// list is an INFO line in DittoFS's log).
pub fn recheck_after(list: &[ApiAdapter], now: Timestamp) -> Option<Duration> {
    list.iter()
        .filter(|a| a.enabled && a.running && !is_conclusive(a))
        .filter_map(|a| {
            let checked = a.status.as_ref()?.checked_at?;
            let expires = STATUS_CACHE_TTL.saturating_sub(elapsed(checked, now));
            Some(expires.clamp(Duration::from_millis(500), STATUS_CACHE_TTL))
        })
        .min()
}

fn elapsed(since: Timestamp, now: Timestamp) -> Duration {
    Duration::try_from(now.duration_since(since)).unwrap_or(Duration::ZERO)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dittofs::ApiHealth;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn adapter(kind: &str, enabled: bool, running: bool, port: i64, health: &str, checked: &str) -> ApiAdapter {
        ApiAdapter {
            kind: kind.into(),
            enabled,
            running,
            port,
            status: Some(ApiHealth { status: health.into(), message: None, checked_at: Some(ts(checked)) }),
            updated_at: Some(ts("2026-01-01T10:00:00Z")),
        }
    }

    #[test]
    fn fresh_reports_give_health_and_stale_ones_do_not() {
        // Enabled at 10:00:00; the cached report from 09:59:58 still says "not running".
        let stale = adapter("smb", true, true, 21445, "unknown", "2026-01-01T09:59:58Z");
        let fresh = adapter("nfs", true, true, 22049, "healthy", "2026-01-01T10:00:01Z");
        let r = report(&[stale, fresh]);
        assert_eq!(r.adapters[0].r#type, "nfs");
        assert_eq!(r.adapters[0].health.as_deref(), Some("healthy"));
        assert!(r.adapters[0].is_serving());
        let smb = &r.adapters[1];
        assert_eq!(smb.health, None, "a report older than the toggle is not believed");
        assert!(smb.message.as_deref().unwrap().contains("not re-checked"));
        assert!(smb.is_serving(), "enabled and running decide until DittoFS re-checks");

        // Disabled at 10:00:00; the stale report still says healthy.
        let disabled = adapter("smb", false, false, 21445, "healthy", "2026-01-01T09:59:58Z");
        let r = report(&[disabled]);
        assert_eq!(r.adapters[0].health, None);
        assert!(!r.adapters[0].is_serving());

        // A report taken while the listener was binding is not believed either…
        let binding = adapter("nfs", true, true, 22049, "unknown", "2026-01-01T10:00:00.001Z");
        assert_eq!(report(&[binding]).adapters[0].health, None);
        // …but one taken later is: running but not healthy is a failed bind.
        let failed = adapter("nfs", true, true, 22049, "unknown", "2026-01-01T10:00:03Z");
        assert!(!report(&[failed]).adapters[0].is_serving());
    }

    #[test]
    fn ports_types_and_bounds() {
        let mut list = vec![
            adapter("SMB", true, true, 0, "healthy", "2026-01-01T10:00:01Z"),
            adapter("ftp", true, true, 0, "healthy", "2026-01-01T10:00:01Z"),
            adapter("nfs", true, true, 70000, "healthy", "2026-01-01T10:00:01Z"),
        ];
        let r = report(&list);
        let by_type = |t: &str| r.adapters.iter().find(|a| a.r#type == t).unwrap().clone();
        assert_eq!(by_type("smb").port, 12445, "port 0 is the type's default");
        assert_eq!(by_type("ftp").port, 0, "unknown type with port 0 is reported");
        assert!(!by_type("ftp").is_serving(), "but unusable");
        assert!(by_type("ftp").message.unwrap().contains("no default port"));
        assert_eq!(by_type("nfs").port, 0);

        list.push(adapter("smb", false, false, 1445, "unknown", "2026-01-01T10:00:01Z"));
        assert_eq!(report(&list).adapters.iter().filter(|a| a.r#type == "smb").count(), 1, "no duplicate keys");

        let many: Vec<ApiAdapter> = (0..40)
            .map(|i| adapter(&format!("t{i:02}"), true, true, 1000 + i, "healthy", "2026-01-01T10:00:01Z"))
            .collect();
        let r = report(&many);
        assert_eq!((r.adapters.len(), r.dropped), (MAX_REPORTED_ADAPTERS, 24));
        assert_eq!(report(&[]), Report::default(), "an empty list is an empty report");
    }

    #[test]
    fn recheck_only_while_unsettled() {
        let now = ts("2026-01-01T10:00:02Z");
        let stale = adapter("smb", true, true, 1, "unknown", "2026-01-01T09:59:58Z");
        let wait = recheck_after(&[stale], now).unwrap();
        assert!(wait >= Duration::from_millis(500) && wait <= Duration::from_millis(1_400), "{wait:?}");
        let healthy = adapter("nfs", true, true, 1, "healthy", "2026-01-01T10:00:01Z");
        assert_eq!(recheck_after(std::slice::from_ref(&healthy), now), None);
        let binding = adapter("nfs", true, true, 1, "unknown", "2026-01-01T10:00:00.5Z");
        assert!(recheck_after(std::slice::from_ref(&binding), now).is_some());
        let later = ts("2026-01-01T10:05:00Z");
        let failed = adapter("nfs", true, true, 1, "unknown", "2026-01-01T10:04:59Z");
        assert_eq!(recheck_after(&[failed], later), None, "a long-failed bind is not re-polled");
        let disabled = adapter("nfs", false, false, 1, "healthy", "2026-01-01T09:59:58Z");
        assert_eq!(recheck_after(&[disabled], now), None, "what is off needs no health");
    }
}
