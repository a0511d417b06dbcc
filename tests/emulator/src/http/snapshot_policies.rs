//! Snapshot policies (`handlers/snapshot_policy.go`, `pkg/schedule/interval.go`, `store/snapshot_policies.go`):
//! `PUT|GET|DELETE /shares/{name}/snapshot-policy` and `GET /snapshot-policies`, admin-only (the `/shares` and
//! `/snapshot-policies` groups carry `RequireAdmin`). The validation order and texts are the handler's, with
//! Go's `time.ParseDuration` errors; the policy is stored but nothing is scheduled (the emulator takes no
//! snapshots). `POST …/run` answers 501.

use std::time::Duration;

use axum::{http::StatusCode, response::Response};
use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::{gojson, gojson::Body, internal, json, no_content, problem, shares::normalize_share_name};
use crate::{App, log::go_duration, store::PolicyRow};

/// `dto.UpsertSnapshotPolicyRequest`.
#[derive(Debug, Default, Deserialize)]
struct Upsert {
    #[serde(default)]
    interval: String,
    #[serde(default)]
    keep_last: i64,
    #[serde(default)]
    ttl: String,
    enabled: Option<bool>,
    #[serde(default)]
    name_prefix: String,
}

/// `dto.SnapshotPolicy`.
#[derive(Serialize)]
struct Wire<'a> {
    share: &'a str,
    enabled: bool,
    interval: String,
    keep_last: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    ttl: Option<String>,
    #[serde(skip_serializing_if = "str::is_empty")]
    name_prefix: &'a str,
    created_at: Timestamp,
    updated_at: Timestamp,
}

fn wire(row: &PolicyRow) -> Wire<'_> {
    let go = |ns: i64| go_duration(Duration::from_nanos(u64::try_from(ns).unwrap_or_default()));
    Wire {
        share: &row.share_name,
        enabled: row.enabled,
        interval: go(row.interval_ns),
        keep_last: row.keep_last,
        ttl: (row.ttl_ns > 0).then(|| go(row.ttl_ns)),
        name_prefix: &row.name_prefix,
        created_at: row.created_at,
        updated_at: row.updated_at,
    }
}

/// `decodeBody`: an empty body is an empty request; a bad one is 400 with Go's decoder error.
fn decode(body: &Body) -> Result<Upsert, Box<Response>> {
    if body.bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(Upsert::default());
    }
    gojson::decode(body).map_err(|_| {
        let eof = serde_json::from_slice::<serde_json::Value>(&body.bytes).is_err_and(|e| e.is_eof());
        let detail = if eof { "unexpected EOF" } else { "invalid character in JSON body" };
        Box::new(problem(StatusCode::BAD_REQUEST, &format!("invalid request body: {detail}")))
    })
}

/// `PUT /shares/{name}/snapshot-policy`.
pub fn upsert(app: &App, raw: &str, body: &Body) -> Response {
    let share = normalize_share_name(raw);
    let req = match decode(body) {
        Ok(req) => req,
        Err(r) => return *r,
    };
    let interval = match parse_interval(&req.interval) {
        Ok(d) => d,
        Err(e) => return problem(StatusCode::BAD_REQUEST, &format!("invalid interval: {e}")),
    };
    let ttl = match req.ttl.as_str() {
        "" | "0" => 0,
        text => match parse_duration(text) {
            Ok(d) if d < 0 => return problem(StatusCode::BAD_REQUEST, "invalid ttl: must be >= 0"),
            Ok(d) => d,
            Err(e) => return problem(StatusCode::BAD_REQUEST, &format!("invalid ttl: {e}")),
        },
    };
    if req.keep_last < 0 {
        return problem(StatusCode::BAD_REQUEST, "keep_last must be >= 0");
    }
    let prefix_ok = req.name_prefix.len() <= 64
        && req.name_prefix.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if !prefix_ok {
        return problem(StatusCode::BAD_REQUEST, "invalid name_prefix: must match ^[A-Za-z0-9_-]{0,64}$");
    }
    let mut store = app.store();
    // The runtime checks the share first, so a policy is never orphaned.
    if store.share(&share).is_none() {
        return problem(StatusCode::NOT_FOUND, "share not found");
    }
    let now = Timestamp::now();
    let row = PolicyRow {
        id: uuid::Uuid::new_v4().to_string(),
        share_name: share,
        enabled: req.enabled.unwrap_or(true),
        interval_ns: interval,
        keep_last: req.keep_last,
        ttl_ns: ttl,
        name_prefix: req.name_prefix,
        created_at: now,
        updated_at: now,
    };
    match store.upsert_policy(row) {
        Ok(row) => json(StatusCode::OK, &wire(&row)),
        Err(_) => internal("snapshot policy upsert failed"),
    }
}

/// `GET /shares/{name}/snapshot-policy`.
pub fn get(app: &App, raw: &str) -> Response {
    match app.store().policy(&normalize_share_name(raw)) {
        Some(row) => json(StatusCode::OK, &wire(row)),
        None => problem(StatusCode::NOT_FOUND, "snapshot policy not found"),
    }
}

/// `DELETE /shares/{name}/snapshot-policy`.
pub fn delete(app: &App, raw: &str) -> Response {
    match app.store().delete_policy(&normalize_share_name(raw)) {
        Ok(true) => no_content(),
        Ok(false) => problem(StatusCode::NOT_FOUND, "snapshot policy not found"),
        Err(_) => internal("snapshot policy delete failed"),
    }
}

/// `GET /snapshot-policies`: every policy by share name; `[]`, never `null`.
pub fn list(app: &App) -> Response {
    let store = app.store();
    let out: Vec<Wire<'_>> = store.policies().into_iter().map(wire).collect();
    json(StatusCode::OK, &out)
}

/// `schedule.ParseInterval`, in nanoseconds.
fn parse_interval(s: &str) -> Result<i64, String> {
    let trimmed = s.trim();
    if trimmed.is_empty() {
        return Err("schedule: empty interval".into());
    }
    match trimmed.to_ascii_lowercase().as_str() {
        "@hourly" => return Ok(3_600_000_000_000),
        "@daily" => return Ok(86_400_000_000_000),
        "@weekly" => return Ok(604_800_000_000_000),
        _ => {}
    }
    if trimmed.starts_with('@') {
        return Err(format!("schedule: unknown shorthand {trimmed:?} (want @hourly, @daily, @weekly)"));
    }
    let d = parse_duration(trimmed).map_err(|e| format!("schedule: invalid interval {s:?}: {e}"))?;
    if d <= 0 {
        return Err(format!("schedule: interval must be positive, got {s:?}"));
    }
    Ok(d)
}

/// Go's `time.ParseDuration`, in nanoseconds, with its error texts.
fn parse_duration(orig: &str) -> Result<i64, String> {
    let invalid = || format!("time: invalid duration {orig:?}");
    let mut s = orig;
    let neg = s.starts_with('-');
    if s.starts_with('-') || s.starts_with('+') {
        s = &s[1..];
    }
    if s == "0" {
        return Ok(0);
    }
    if s.is_empty() {
        return Err(invalid());
    }
    let mut total: u64 = 0;
    while !s.is_empty() {
        if !s.starts_with(|c: char| c == '.' || c.is_ascii_digit()) {
            return Err(invalid());
        }
        let digits = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        let whole = if digits == 0 { 0 } else { s[..digits].parse::<u64>().map_err(|_| invalid())? };
        let pre = digits > 0;
        s = &s[digits..];
        let (mut fraction, mut scale, mut post) = (0u64, 1f64, false);
        if let Some(rest) = s.strip_prefix('.') {
            let len = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
            post = len > 0;
            for b in rest[..len].bytes() {
                // Digits past what fits are dropped, as Go's leadingFraction does.
                if let Some(f) = fraction.checked_mul(10).and_then(|f| f.checked_add(u64::from(b - b'0'))) {
                    fraction = f;
                    scale *= 10.0;
                }
            }
            s = &rest[len..];
        }
        if !pre && !post {
            return Err(invalid());
        }
        let unit_len = s.find(|c: char| c == '.' || c.is_ascii_digit()).unwrap_or(s.len());
        if unit_len == 0 {
            return Err(format!("time: missing unit in duration {orig:?}"));
        }
        let unit = &s[..unit_len];
        s = &s[unit_len..];
        let nanos: u64 = match unit {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            _ => return Err(format!("time: unknown unit {unit:?} in duration {orig:?}")),
        };
        const LIMIT: u64 = 1 << 63;
        let mut v = whole.checked_mul(nanos).filter(|v| *v <= LIMIT).ok_or_else(invalid)?;
        if fraction > 0 {
            v = v.saturating_add((fraction as f64 * (nanos as f64 / scale)) as u64);
            if v > LIMIT {
                return Err(invalid());
            }
        }
        total = total.checked_add(v).filter(|t| *t <= LIMIT).ok_or_else(invalid)?;
    }
    if neg {
        return Ok(0i64.wrapping_sub_unsigned(total));
    }
    i64::try_from(total).map_err(|_| invalid())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals_and_durations_parse_and_fail_as_in_go() {
        assert_eq!(parse_interval(" @Daily "), Ok(86_400_000_000_000));
        assert_eq!(parse_interval("1h30m"), Ok(5_400_000_000_000));
        assert_eq!(parse_interval("1.5h"), Ok(5_400_000_000_000));
        // The texts DittoFS v0.29.0 answered (docs/dittofs-api.md#snapshot-policies).
        assert_eq!(parse_interval("0s").unwrap_err(), r#"schedule: interval must be positive, got "0s""#);
        assert_eq!(
            parse_interval("bogus").unwrap_err(),
            r#"schedule: invalid interval "bogus": time: invalid duration "bogus""#
        );
        assert_eq!(
            parse_interval("@yearly").unwrap_err(),
            r#"schedule: unknown shorthand "@yearly" (want @hourly, @daily, @weekly)"#
        );
        assert_eq!(parse_interval("").unwrap_err(), "schedule: empty interval");
        assert_eq!(parse_duration("9999999999h").unwrap_err(), r#"time: invalid duration "9999999999h""#);
        assert_eq!(parse_duration("1d").unwrap_err(), r#"time: unknown unit "d" in duration "1d""#);
        assert_eq!(parse_duration("10").unwrap_err(), r#"time: missing unit in duration "10""#);
        assert_eq!(parse_duration("-1s"), Ok(-1_000_000_000));
        assert_eq!(go_duration(Duration::from_nanos(5_400_000_000_000)), "1h30m0s");
    }
}
