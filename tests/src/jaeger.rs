//! A real trace backend for the trace test and `make demo TRACES=1`: Jaeger (built by
//! `scripts/testenv/jaeger.sh` into the testenv cache) on loopback with in-memory storage, an OTLP/HTTP
//! receiver for the agent and controller, and its query API to read the traces back.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::Context as _;
use serde_json::Value;

use crate::kube_env::wait_until;
use crate::pod::Proc;
use crate::process::{cached_tool, free_port};

/// Microseconds since the Unix epoch (the unit of span start times).
pub fn now_us() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_micros() as u64)
}

/// The service names of the two binaries' spans.
pub const AGENT: &str = "dittofs-agent";
pub const CONTROLLER: &str = "dittofs-controller";

/// Names a jaeger binary to use instead of the one `scripts/testenv/jaeger.sh` builds.
pub const JAEGER_BIN_ENV: &str = "DITTOFS_JAEGER_BIN";

/// `$DITTOFS_JAEGER_BIN`, else the jaeger of the testenv cache; fails with how to build it.
pub fn jaeger_bin() -> anyhow::Result<PathBuf> {
    cached_tool("jaeger", JAEGER_BIN_ENV, "about 5 min")
}

/// A running Jaeger.
#[derive(Debug)]
pub struct Jaeger {
    /// The OTLP/HTTP base URL, the value of `OTEL_EXPORTER_OTLP_ENDPOINT` for the exporters.
    pub otlp: String,
    /// The query API and UI base URL.
    pub query: String,
    proc: Proc,
    http: reqwest::Client,
}

/// Only what the tests need: an OTLP/HTTP receiver, memory storage, the query API; no metrics endpoint
/// (it would bind :8888) and no traces of its own (it would export them to :4317), logs at warn.
fn config(otlp: u16, query: u16, grpc: u16) -> String {
    format!(
        "service:
  extensions: [jaeger_storage, jaeger_query]
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [jaeger_storage_exporter]
  telemetry:
    metrics:
      level: none
    traces:
      level: none
    logs:
      level: warn
extensions:
  jaeger_storage:
    backends:
      memstore:
        memory:
          max_traces: 10000
  jaeger_query:
    storage:
      traces: memstore
    http:
      endpoint: 127.0.0.1:{query}
    grpc:
      endpoint: 127.0.0.1:{grpc}
receivers:
  otlp:
    protocols:
      http:
        endpoint: 127.0.0.1:{otlp}
exporters:
  jaeger_storage_exporter:
    trace_storage: memstore
"
    )
}

impl Jaeger {
    /// Starts Jaeger with its config and log in `dir`; returns once its query API answers.
    pub async fn start(dir: &Path) -> anyhow::Result<Jaeger> {
        let (otlp, query, grpc) = (free_port()?, free_port()?, free_port()?);
        let config_path = dir.join("jaeger.yaml");
        std::fs::write(&config_path, config(otlp, query, grpc))?;
        let mut cmd = Command::new(jaeger_bin()?);
        cmd.arg("--config").arg(&config_path);
        let proc = Proc::spawn("jaeger", cmd, dir.join("jaeger.log"))?;
        let jaeger = Jaeger {
            otlp: format!("http://127.0.0.1:{otlp}"),
            query: format!("http://127.0.0.1:{query}"),
            proc,
            http: reqwest::Client::builder().timeout(Duration::from_secs(5)).build()?,
        };
        let started = wait_until("Jaeger's query API", Duration::from_secs(30), async || {
            jaeger.get("/api/services").await.map(drop)
        })
        .await;
        started.with_context(|| format!("Jaeger did not start; its log:\n{}", jaeger.proc.log_tail(20)))?;
        Ok(jaeger)
    }

    /// The env an exporting process needs: the endpoint, and a short batch delay so spans arrive at once.
    pub fn exporter_env(&self) -> Vec<(&'static str, String)> {
        vec![("OTEL_EXPORTER_OTLP_ENDPOINT", self.otlp.clone()), ("OTEL_BSP_SCHEDULE_DELAY", "200".into())]
    }

    /// GET a query API path; the JSON body of a 200.
    pub async fn get(&self, path: &str) -> anyhow::Result<Value> {
        let response = self.http.get(format!("{}{path}", self.query)).send().await?;
        let status = response.status();
        let body = response.text().await?;
        anyhow::ensure!(status.is_success(), "GET {path}: {status}: {body}");
        Ok(serde_json::from_str(&body)?)
    }

    /// The traces of `service` Jaeger holds (the query API's `data` array, most recent first, up to 100).
    pub async fn traces(&self, service: &str) -> anyhow::Result<Vec<Trace>> {
        let body = self.get(&format!("/api/traces?service={service}&limit=100&lookback=1h")).await?;
        let data = body.get("data").and_then(Value::as_array).context("no data in the trace search")?;
        Ok(data.iter().map(Trace::from_json).collect())
    }

    /// Waits for the trace of one adapter change of `server` that began at `since_us` (see
    /// [`Trace::adapter_change`]); returns its id.
    pub async fn wait_for_change(
        &self,
        server: &str,
        adapter: &str,
        op: &str,
        since_us: u64,
    ) -> anyhow::Result<String> {
        let what = format!("Jaeger to hold the trace of {op} {adapter} for server {server}");
        wait_until(&what, Duration::from_secs(30), async || {
            let traces = self.traces(AGENT).await?;
            let mut why = Vec::new();
            for trace in &traces {
                match trace.adapter_change(server, adapter, op, since_us) {
                    Ok(_) => return Ok(trace.trace_id.clone()),
                    Err(e) => why.push(format!("{}: {e}", trace.trace_id)),
                }
            }
            anyhow::bail!("{} traces of {AGENT}, none complete: {why:?}", traces.len())
        })
        .await
    }

    /// The trace of id `trace_id`.
    pub async fn trace(&self, trace_id: &str) -> anyhow::Result<Trace> {
        let body = self.get(&format!("/api/traces/{trace_id}")).await?;
        let data = body.get("data").and_then(Value::as_array).and_then(|d| d.first()).context("no such trace")?;
        Ok(Trace::from_json(data))
    }

    /// The query API URL of one trace.
    pub fn trace_url(&self, trace_id: &str) -> String {
        format!("{}/api/traces/{trace_id}", self.query)
    }

    /// The last lines of Jaeger's log.
    pub fn log_tail(&self, lines: usize) -> String {
        self.proc.log_tail(lines)
    }
}

/// One span of a trace as the query API gives it.
#[derive(Debug, Clone, PartialEq)]
pub struct Span {
    pub span_id: String,
    pub operation: String,
    /// Start, in microseconds since the Unix epoch.
    pub start_us: u64,
    /// Duration, in microseconds.
    pub duration_us: u64,
    pub service: String,
    /// The span it is a child of (its first reference).
    pub parent: Option<String>,
    /// The spans it links to (`FOLLOWS_FROM` references).
    pub links: Vec<String>,
    /// Its attributes, as strings.
    pub tags: Vec<(String, String)>,
}

impl Span {
    /// End, in microseconds since the Unix epoch.
    pub fn end_us(&self) -> u64 {
        self.start_us + self.duration_us
    }

    /// The value of attribute `key`.
    pub fn tag(&self, key: &str) -> Option<&str> {
        self.tags.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }
}

/// The spans of one adapter change (see [`Trace::adapter_change`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Change<'a> {
    /// The agent's poll that saw it.
    pub poll: &'a Span,
    /// The agent's status apply under the poll.
    pub status_write: &'a Span,
    /// The controller's reconcile that continued the poll's trace.
    pub reconcile: &'a Span,
    /// The write of the adapter's Service under the reconcile.
    pub write: &'a Span,
}

/// One trace: its id and spans.
#[derive(Debug, Clone, PartialEq)]
pub struct Trace {
    pub trace_id: String,
    pub spans: Vec<Span>,
}

impl Trace {
    /// Reads a trace of the query API (`{traceID, spans: [{spanID, operationName, processID, references,
    /// tags}], processes: {id: {serviceName}}}`).
    pub fn from_json(trace: &Value) -> Trace {
        let text = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).unwrap_or_default().to_owned();
        let processes = trace.get("processes").cloned().unwrap_or(Value::Null);
        let spans = trace.get("spans").and_then(Value::as_array).into_iter().flatten().map(|s| {
            let refs = s.get("references").and_then(Value::as_array).cloned().unwrap_or_default();
            let of = |kind: &str| -> Vec<String> {
                refs.iter().filter(|r| text(r, "refType") == kind).map(|r| text(r, "spanID")).collect()
            };
            // Jaeger's parent is the first reference; a span linked to its own parent keeps one reference,
            // of type FOLLOWS_FROM (the link), so the parent is read from either type.
            let parent = refs.first().map(|r| text(r, "spanID"));
            let tags = s.get("tags").and_then(Value::as_array).into_iter().flatten();
            let value = |t: &Value| match t.get("value") {
                Some(Value::String(v)) => v.clone(),
                Some(other) => other.to_string(),
                None => String::new(),
            };
            Span {
                span_id: text(s, "spanID"),
                operation: text(s, "operationName"),
                start_us: s.get("startTime").and_then(Value::as_u64).unwrap_or_default(),
                duration_us: s.get("duration").and_then(Value::as_u64).unwrap_or_default(),
                service: processes.get(text(s, "processID")).map(|p| text(p, "serviceName")).unwrap_or_default(),
                parent,
                links: of("FOLLOWS_FROM"),
                tags: tags.map(|t| (text(t, "key"), value(t))).collect(),
            }
        });
        Trace { trace_id: text(trace, "traceID"), spans: spans.collect() }
    }

    /// The spans named `operation` of `service`.
    pub fn spans(&self, service: &str, operation: &str) -> impl Iterator<Item = &Span> {
        let found: Vec<&Span> =
            self.spans.iter().filter(|s| s.service == service && s.operation == operation).collect();
        found.into_iter()
    }

    /// The span with id `id`.
    pub fn span(&self, id: &str) -> Option<&Span> {
        self.spans.iter().find(|s| s.span_id == id)
    }

    /// Whether this trace is one adapter change end to end, or the first piece it lacks: an agent poll of
    /// `server` that started at `since_us` or later, the agent's status apply under it, a controller reconcile
    /// of `server` that is the poll's child and links to it, and under that reconcile an `op` (`adapter.apply`
    /// or `adapter.delete`) of the Service of `adapter` with the adapter and the server as attributes.
    pub fn adapter_change(&self, server: &str, adapter: &str, op: &str, since_us: u64) -> Result<Change<'_>, String> {
        let polls: Vec<&Span> = self
            .spans(AGENT, "dittofs.poll")
            .filter(|p| p.start_us >= since_us && p.tag("server") == Some(server))
            .collect();
        let poll = polls.first().ok_or("no agent poll of the server since the change")?;
        let status_write = self
            .spans(AGENT, "status.write")
            .find(|w| self.descends_from(w, &poll.span_id))
            .ok_or("no agent status apply under the poll")?;
        let reconcile = self
            .spans(CONTROLLER, "reconcile")
            .find(|r| r.parent.as_deref() == Some(&poll.span_id) && r.tag("server") == Some(server))
            .ok_or("no controller reconcile of the server as the poll's child")?;
        if !reconcile.links.contains(&poll.span_id) {
            return Err("the reconcile does not link to the poll".into());
        }
        let write = self
            .spans(CONTROLLER, op)
            .find(|w| {
                self.descends_from(w, &reconcile.span_id)
                    && w.tag("kind") == Some("Service")
                    && w.tag("adapter") == Some(adapter)
                    && w.tag("server") == Some(server)
            })
            .ok_or_else(|| format!("no {op} of the {adapter} Service under the reconcile"))?;
        Ok(Change { poll, status_write, reconcile, write })
    }

    /// Whether `span` descends from the span with id `ancestor` (through `CHILD_OF` references).
    pub fn descends_from(&self, span: &Span, ancestor: &str) -> bool {
        let mut at = span.parent.as_deref();
        for _ in 0..self.spans.len() {
            match at {
                Some(id) if id == ancestor => return true,
                Some(id) => at = self.span(id).and_then(|s| s.parent.as_deref()),
                None => return false,
            }
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A span as the query API gives it.
    fn span(id: &str, op: &str, process: &str, refs: &[(&str, &str)], tags: &[(&str, &str)]) -> Value {
        let refs: Vec<Value> = refs.iter().map(|(kind, to)| json!({"refType": kind, "spanID": to})).collect();
        let tags: Vec<Value> = tags.iter().map(|(k, v)| json!({"key": k, "type": "string", "value": v})).collect();
        json!({"spanID": id, "operationName": op, "processID": process, "startTime": 2_000, "references": refs, "tags": tags})
    }

    fn change(reconcile_refs: &[(&str, &str)], write_tags: &[(&str, &str)]) -> Trace {
        Trace::from_json(&json!({
            "traceID": "t1",
            "processes": {"p1": {"serviceName": AGENT}, "p2": {"serviceName": CONTROLLER}},
            "spans": [
                span("poll", "dittofs.poll", "p1", &[], &[("server", "files"), ("running", "{\"nfs\"}")]),
                span("write", "status.write", "p1", &[("CHILD_OF", "poll")], &[]),
                span("rec", "reconcile", "p2", reconcile_refs, &[("server", "files")]),
                span("svc", "adapter.apply", "p2", &[("CHILD_OF", "rec")], write_tags),
            ],
        }))
    }

    const SMB_SERVICE: [(&str, &str); 3] = [("kind", "Service"), ("adapter", "smb"), ("server", "files")];

    #[test]
    fn a_complete_change_is_recognised() {
        // What Jaeger gives for a child linked to its parent: one FOLLOWS_FROM reference.
        let trace = change(&[("FOLLOWS_FROM", "poll")], &SMB_SERVICE);
        let change = trace.adapter_change("files", "smb", "adapter.apply", 1_000);
        assert_eq!(change.map(|c| c.write.span_id.as_str()), Ok("svc"));
        assert_eq!(trace.span("rec").and_then(|s| s.parent.as_deref()), Some("poll"));
        assert_eq!(trace.span("poll").and_then(|s| s.tag("running")), Some("{\"nfs\"}"));
    }

    #[test]
    fn each_missing_piece_is_named() {
        let full = [("FOLLOWS_FROM", "poll")];
        let cases: [(Trace, &str, u64, &str); 5] = [
            (change(&full, &SMB_SERVICE), "smb", 3_000, "no agent poll of the server since the change"),
            (change(&[], &SMB_SERVICE), "smb", 0, "no controller reconcile"),
            (change(&[("CHILD_OF", "poll")], &SMB_SERVICE), "smb", 0, "does not link"),
            (change(&full, &SMB_SERVICE), "nfs", 0, "no adapter.apply of the nfs Service"),
            (change(&full, &[("kind", "NetworkPolicy"), ("adapter", "smb"), ("server", "files")]), "smb", 0, "Service"),
        ];
        for (trace, adapter, since, why) in cases {
            let err = trace.adapter_change("files", adapter, "adapter.apply", since).unwrap_err();
            assert!(err.contains(why), "{err} should say {why}");
        }
        let other = change(&full, &SMB_SERVICE);
        assert!(other.adapter_change("other", "smb", "adapter.apply", 0).is_err(), "another server's trace");
    }
}
