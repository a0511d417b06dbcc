//! Request accounting for the bench: the harness apiserver writes an audit log (metadata level, one JSON event
//! per finished request), and the benches count its requests by component, verb and resource over a window.

use std::collections::BTreeMap;
use std::io::{BufRead as _, BufReader, Seek as _, SeekFrom};
use std::path::{Path, PathBuf};

use serde_json::Value;

/// Metadata of every request, once it has been answered (no request or response bodies).
const POLICY: &str = "apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
- level: Metadata
";

/// The apiserver's audit log.
#[derive(Debug, Clone)]
pub struct AuditLog {
    path: PathBuf,
}

impl AuditLog {
    /// Writes the policy into `dir`; returns the log and the kube-apiserver flags that enable it.
    pub fn in_dir(dir: &Path) -> anyhow::Result<(AuditLog, Vec<String>)> {
        let policy = dir.join("audit-policy.yaml");
        std::fs::write(&policy, POLICY)?;
        let path = dir.join("audit.log");
        let args = vec![
            format!("--audit-policy-file={}", policy.display()),
            format!("--audit-log-path={}", path.display()),
            "--audit-log-format=json".to_owned(),
            // Never rotated (the default rotates at 100 MB, which 1,000 servers created at once exceed, and a
            // mark would then point into the rotated file).
            "--audit-log-maxsize=1000000".to_owned(),
            // Each event written as its request ends, so a window's count is complete when it closes.
            "--audit-log-mode=blocking".to_owned(),
        ];
        Ok((AuditLog { path }, args))
    }

    /// Where the log ends now: the start of a window.
    pub fn mark(&self) -> u64 {
        std::fs::metadata(&self.path).map_or(0, |m| m.len())
    }

    /// The requests since `mark`, counted by (component, verb, resource), with `who` naming the component of
    /// a user (`None`: not counted).
    pub fn count_since(&self, mark: u64, who: impl Fn(&str) -> Option<&'static str>) -> anyhow::Result<Counts> {
        let mut file = std::fs::File::open(&self.path)?;
        file.seek(SeekFrom::Start(mark))?;
        let mut counts = Counts::new();
        for line in BufReader::new(file).lines() {
            let Ok(event) = serde_json::from_str::<Value>(&line?) else { continue };
            if let Some(key) = classify(&event, &who) {
                *counts.entry(key).or_default() += 1;
            }
        }
        Ok(counts)
    }
}

/// Requests by (component, verb, resource), e.g. ("agent", "patch", "dittoservers/status").
pub type Counts = BTreeMap<(&'static str, String, String), u64>;

/// The key of one audit event, each request counted once: a watch when it starts (its `ResponseComplete`
/// event comes when it ends), every other request when it completes.
fn classify(event: &Value, who: &impl Fn(&str) -> Option<&'static str>) -> Option<(&'static str, String, String)> {
    let component = who(event.pointer("/user/username")?.as_str()?)?;
    let verb = event.get("verb")?.as_str()?;
    if verb == "watch" && event.get("stage").and_then(Value::as_str) == Some("ResponseComplete") {
        return None;
    }
    let text = |p: &str| event.pointer(p).and_then(Value::as_str);
    let resource = match (text("/objectRef/resource"), text("/objectRef/subresource")) {
        (Some(r), Some(sub)) => format!("{r}/{sub}"),
        (Some(r), None) => r.to_owned(),
        (None, _) => text("/requestURI").unwrap_or("?").to_owned(),
    };
    Some((component, verb.to_owned(), resource))
}

/// Reads and writes in one count: `get`, `list` and `watch` read; everything else writes.
pub fn is_read(verb: &str) -> bool {
    matches!(verb, "get" | "list" | "watch")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_counted_by_component_and_verb_from_the_mark_on() {
        let dir = tempfile::tempdir().unwrap();
        let (log, args) = AuditLog::in_dir(dir.path()).unwrap();
        assert!(args.iter().any(|a| a.starts_with("--audit-policy-file=")));
        assert_eq!(log.mark(), 0, "no log yet");
        let event = |user: &str, verb: &str, stage: &str| {
            format!(
                "{{\"user\":{{\"username\":\"{user}\"}},\"verb\":\"{verb}\",\"stage\":\"{stage}\",\
                 \"objectRef\":{{\"resource\":\"dittoservers\",\"subresource\":\"status\"}}}}\n"
            )
        };
        let agent = "system:serviceaccount:demo:files-agent";
        std::fs::write(&log.path, event(agent, "patch", "ResponseComplete")).unwrap();
        let mark = log.mark();
        let more = [
            event(agent, "patch", "ResponseComplete"),
            event(agent, "watch", "ResponseStarted"),
            event(agent, "watch", "ResponseComplete"),
            event("system:serviceaccount:demo:dittofs-controller", "update", "ResponseComplete"),
            event("system:kube-controller-manager", "update", "ResponseComplete"),
            "not json\n".to_owned(),
        ];
        std::fs::write(&log.path, format!("{}{}", std::fs::read_to_string(&log.path).unwrap(), more.concat())).unwrap();
        let who = |user: &str| match user {
            u if u.ends_with(":files-agent") => Some("agent"),
            u if u.ends_with(":dittofs-controller") => Some("controller"),
            _ => None,
        };
        let counts = log.count_since(mark, who).unwrap();
        let key = |c, v: &str| (c, v.to_owned(), "dittoservers/status".to_owned());
        let want: Counts =
            [(key("agent", "patch"), 1), (key("agent", "watch"), 1), (key("controller", "update"), 1)].into();
        assert_eq!(counts, want, "one watch counted once, from the mark on, only the named components");
        assert!(is_read("watch") && !is_read("patch"));
    }
}
