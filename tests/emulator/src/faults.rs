//! Emulator-only fault injection for the agent's failure-path tests; the real server has nothing like it.
//!
//! Enabled only when `DITTOFS_EMULATOR_FAULTS_FILE` names a file (the real server ignores that variable). The
//! file is re-read on every request so a test can flip faults while the server runs. One rule per line:
//! `METHOD|* PATH-PREFIX ACTION`, where ACTION is `status=CODE`, `garbage` (200 with invalid JSON),
//! `delay=DURATION` (then serve normally) or `oversize=BYTES` (200 with a JSON array that large).
//! Lines starting with `#` are comments. Contract tests never use this.

use std::{path::Path, time::Duration};

use super::config::parse_go_duration;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Status(u16),
    Garbage,
    Delay(Duration),
    Oversize(usize),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    method: Option<String>,
    prefix: String,
    pub action: Action,
}

/// Parses a rules file; malformed lines are reported so a typo in a test is not a silent no-op.
pub fn parse(text: &str) -> Result<Vec<Rule>, String> {
    let mut rules = Vec::new();
    for (n, line) in text.lines().enumerate().map(|(n, l)| (n + 1, l.trim())) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let parts: Vec<&str> = line.split_whitespace().collect();
        let [method, prefix, action] = parts[..] else {
            return Err(format!("line {n}: want `METHOD PATH-PREFIX ACTION`, got {line:?}"));
        };
        let action = match action.split_once('=') {
            None if action == "garbage" => Action::Garbage,
            Some(("status", code)) => {
                Action::Status(code.parse().map_err(|_| format!("line {n}: bad status {code:?}"))?)
            }
            Some(("delay", d)) => Action::Delay(parse_go_duration(d).ok_or(format!("line {n}: bad duration {d:?}"))?),
            Some(("oversize", b)) => Action::Oversize(b.parse().map_err(|_| format!("line {n}: bad size {b:?}"))?),
            _ => return Err(format!("line {n}: unknown action {action:?}")),
        };
        let method = (method != "*").then(|| method.to_uppercase());
        rules.push(Rule { method, prefix: prefix.to_string(), action });
    }
    Ok(rules)
}

/// The first rule matching this request, if the faults file exists and parses.
pub fn find(file: &Path, method: &str, path: &str) -> Result<Option<Action>, String> {
    let text = match std::fs::read_to_string(file) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("{}: {e}", file.display())),
    };
    Ok(parse(&text)?
        .into_iter()
        .find(|r| r.method.as_deref().is_none_or(|m| m == method) && path.starts_with(&r.prefix))
        .map(|r| r.action))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_matches_rules() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("faults");
        assert_eq!(find(&file, "GET", "/api/v1/adapters"), Ok(None));
        std::fs::write(&file, "# comment\nGET /api/v1/adapters status=503\n* /health/ready delay=2s\n").unwrap();
        assert_eq!(find(&file, "GET", "/api/v1/adapters"), Ok(Some(Action::Status(503))));
        assert_eq!(find(&file, "PUT", "/api/v1/adapters/nfs"), Ok(None));
        assert_eq!(find(&file, "GET", "/health/ready"), Ok(Some(Action::Delay(Duration::from_secs(2)))));
        assert!(parse("GET /x explode").is_err());
        assert!(parse("GET /x").is_err());
    }
}
