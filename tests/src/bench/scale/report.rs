//! The scale bench's figures: apiserver requests at rest by component, verb and resource (from the audit
//! log), one Markdown section per N, the summary table over every N and the JSON a plot is drawn from.

use std::{collections::BTreeSet, path::Path, time::Duration};

use anyhow::Context as _;
use dittofs_api::names;
use serde::Serialize;

use super::super::{CONTROLLER_SA, percentile};
use crate::{audit::is_read, scenario::NS};

pub const CONTROLLER: &str = "controller";
pub const REAL_AGENTS: &str = "agents (real pods)";
pub const SIMULATED_AGENTS: &str = "agents (simulated)";

/// Requests by (component, verb, resource).
pub type Requests = crate::audit::Counts;

/// The component of an apiserver user: the controller's ServiceAccount, or a server's agent ServiceAccount
/// (`<cr>-agent`), real or simulated; anything else (the harness, kube-controller-manager) is not counted.
pub fn component_of(user: &str, real: &BTreeSet<String>) -> Option<&'static str> {
    let sa = user.strip_prefix("system:serviceaccount:")?.strip_prefix(NS)?.strip_prefix(':')?;
    if sa == CONTROLLER_SA {
        return Some(CONTROLLER);
    }
    let server = sa.strip_suffix("-agent").filter(|cr| names::agent_service_account(cr) == sa)?;
    Some(if real.contains(server) { REAL_AGENTS } else { SIMULATED_AGENTS })
}

/// The leader election's Lease: renewed every retry period whatever the load, so counted apart.
fn is_lease(resource: &str) -> bool {
    resource == "leases"
}

/// Per minute over `secs`: the requests of `component` that `keep` (verb, resource) keeps.
pub fn per_minute(requests: &Requests, secs: f64, component: &str, keep: impl Fn(&str, &str) -> bool) -> f64 {
    let n: u64 = requests.iter().filter(|((c, v, r), _)| *c == component && keep(v, r)).map(|(_, n)| n).sum();
    n as f64 * 60.0 / secs.max(1.0)
}

/// Everything measured for one N.
#[derive(Debug, Clone)]
pub struct Measured {
    pub n: usize,
    pub real: usize,
    pub cold: Cold,
    pub created: Duration,
    /// The requests from creating the N servers until all converged.
    pub converge_requests: Requests,
    pub idle_secs: f64,
    /// Controller RSS at the start and end of the idle window, KiB.
    pub rss_kib: (u64, u64),
    pub cpu_mcores: f64,
    pub requests: Requests,
    pub off: Vec<Duration>,
    pub on: Vec<Duration>,
    /// (simulated agents started, heartbeat writes, failed writes) of the load driver over the whole run.
    pub driver: (u64, u64, u64),
}

/// The cold start: how long until all converged, the CPU seconds each process spent meanwhile, and the
/// controller's RSS when all had converged and at its peak (KiB).
#[derive(Debug, Clone)]
pub struct Cold {
    pub took: Duration,
    pub cpu: Vec<(String, f64)>,
    pub rss_kib: (u64, u64),
}

impl Cold {
    /// Where the cold start's CPU went, as Markdown.
    pub fn section(&self, n: usize) -> String {
        let secs = self.took.as_secs_f64();
        let mut out = format!(
            "\n### Cold start of {n} servers: {secs:.1} s, and where the CPU went\n\nController RSS {:.1} MiB when all \
             had converged, {:.1} MiB at its peak. The machine has {} cores: {:.0} CPU-seconds available.\n\n",
            self.rss_kib.0 as f64 / 1024.0,
            self.rss_kib.1 as f64 / 1024.0,
            cores(),
            secs * cores() as f64,
        );
        out += "| process | CPU seconds | share of the available |\n|---|---|---|\n";
        for (name, cpu) in &self.cpu {
            out += &format!("| {name} | {cpu:.1} | {:.0} % |\n", 100.0 * cpu / (secs * cores() as f64).max(0.001));
        }
        out
    }
}

/// The cores this machine runs on.
fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// One row of `target/bench-scale.json`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Figures {
    pub n: usize,
    pub cold_start_s: f64,
    /// The controller's peak RSS over the cold start.
    pub cold_peak_rss_mib: f64,
    pub created_s: f64,
    /// The controller's requests per server, from creating the N servers until all converged.
    pub controller_requests_per_server: f64,
    pub rss_mib: f64,
    pub cpu_mcores: f64,
    /// Writes of the controller at rest, its leader Lease left out (the goal is 0).
    pub controller_writes_per_min: f64,
    pub controller_reads_per_min: f64,
    pub controller_lease_writes_per_min: f64,
    /// Heartbeats of every agent, real and simulated.
    pub agent_writes_per_min: f64,
    pub toggle_median_s: f64,
    pub toggle_max_s: f64,
}

/// (median, max) of `times`, in seconds.
fn median_max(times: &[Duration]) -> (f64, f64) {
    let mut sorted = times.to_vec();
    sorted.sort();
    match sorted.last() {
        Some(max) => (percentile(&sorted, 0.5).as_secs_f64(), max.as_secs_f64()),
        None => (0.0, 0.0),
    }
}

impl Measured {
    pub fn figures(&self) -> Figures {
        let (r, s) = (&self.requests, self.idle_secs);
        let write = |v: &str| !is_read(v);
        let agents =
            per_minute(r, s, REAL_AGENTS, |v, _| write(v)) + per_minute(r, s, SIMULATED_AGENTS, |v, _| write(v));
        let (toggle_median_s, toggle_max_s) = median_max(&self.off);
        Figures {
            n: self.n,
            cold_start_s: self.cold.took.as_secs_f64(),
            cold_peak_rss_mib: self.cold.rss_kib.1 as f64 / 1024.0,
            created_s: self.created.as_secs_f64(),
            controller_requests_per_server: self
                .converge_requests
                .iter()
                .filter(|((c, _, _), _)| *c == CONTROLLER)
                .map(|(_, n)| *n as f64)
                .sum::<f64>()
                / self.n.max(1) as f64,
            rss_mib: self.rss_kib.1 as f64 / 1024.0,
            cpu_mcores: self.cpu_mcores,
            controller_writes_per_min: per_minute(r, s, CONTROLLER, |v, res| write(v) && !is_lease(res)),
            controller_reads_per_min: per_minute(r, s, CONTROLLER, |v, _| is_read(v)),
            controller_lease_writes_per_min: per_minute(r, s, CONTROLLER, |v, res| write(v) && is_lease(res)),
            agent_writes_per_min: agents,
            toggle_median_s,
            toggle_max_s,
        }
    }

    /// The Markdown section of this N.
    pub fn section(&self) -> String {
        let f = self.figures();
        let (n, real, simulated) = (self.n, self.real, self.n - self.real);
        let mut out = format!("\n## N = {n} ({real} real pods, {simulated} simulated agents)\n\n");
        out += "| phase | until all converged |\n|---|---|\n";
        out += &format!("| cold start: {n} servers exist, then the controller starts | {:.1} s |\n", f.cold_start_s);
        out += &format!("| {n} servers created at once, the controller running | {:.1} s |\n", f.created_s);
        out += &self.cold.section(n);
        out += &format!(
            "\n### Requests from creating the {n} servers until all converged ({:.1} s)\n\n| component | verb | \
             resource | per server |\n|---|---|---|---|\n",
            f.created_s
        );
        for ((component, verb, resource), count) in &self.converge_requests {
            out += &format!("| {component} | {verb} | {resource} | {:.2} |\n", *count as f64 / n.max(1) as f64);
        }
        out += &format!("\n### At rest over {:.0} s\n\n", self.idle_secs);
        out += &format!(
            "Controller RSS {:.1} → {:.1} MiB, CPU {:.2} millicores. Controller writes {:.1}/min besides its \
             leader Lease ({:.1}/min: renewals at the harness's retry period), reads {:.1}/min (a watch counts \
             when it starts). The agents' heartbeats: {:.1} writes/min. Load driver over the whole run: {} \
             simulated agents started, {} heartbeat writes, {} failed writes.\n\n",
            self.rss_kib.0 as f64 / 1024.0,
            f.rss_mib,
            f.cpu_mcores,
            f.controller_writes_per_min,
            f.controller_lease_writes_per_min,
            f.controller_reads_per_min,
            f.agent_writes_per_min,
            self.driver.0,
            self.driver.1,
            self.driver.2,
        );
        out += "| component | verb | resource | kind | per minute |\n|---|---|---|---|---|\n";
        for ((component, verb, resource), count) in &self.requests {
            let kind = if is_read(verb) { "read" } else { "write" };
            let rate = *count as f64 * 60.0 / self.idle_secs.max(1.0);
            out += &format!("| {component} | {verb} | {resource} | {kind} | {rate:.1} |\n");
        }
        out += &format!("\n### One SMB toggle on a real pod while the other {} servers are at rest\n\n", n - 1);
        out += "| step | n | median | max |\n|---|---|---|---|\n";
        for (label, times) in
            [("SMB disabled → its Service gone", &self.off), ("SMB enabled → its Service back", &self.on)]
        {
            let (median, max) = median_max(times);
            out += &format!("| {label} | {} | {median:.2} s | {max:.2} s |\n", times.len());
        }
        out
    }
}

/// The summary over every N.
pub fn summary(all: &[Figures]) -> String {
    let mut out = String::from(
        "\n## Summary\n\n| N | cold start → converged | created at once → converged | controller RSS at rest | \
         controller CPU at rest | controller writes/min at rest | toggle median |\n|---|---|---|---|---|---|---|\n",
    );
    for f in all {
        out += &format!(
            "| {} | {:.1} s | {:.1} s | {:.1} MiB | {:.2} mcores | {:.1} | {:.2} s |\n",
            f.n, f.cold_start_s, f.created_s, f.rss_mib, f.cpu_mcores, f.controller_writes_per_min, f.toggle_median_s
        );
    }
    out
}

/// Writes the figures so far as a JSON array.
pub fn write_json(path: &Path, all: &[Figures]) -> anyhow::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    }
    std::fs::write(path, serde_json::to_vec_pretty(all)?).with_context(|| format!("write {}", path.display()))
}

/// The plot of the figures against N: convergence times, the controller's RSS and CPU at rest, one toggle.
pub fn plot(all: &[Figures]) -> String {
    use crate::bench::plot::{Series, against_n};
    let series = |label, unit, value: fn(&Figures) -> f64| Series {
        label,
        unit,
        points: all.iter().map(|f| (f.n as f64, value(f))).collect(),
    };
    against_n(
        "The controller against N DittoServers",
        &[
            series("cold start → all converged", "s", |f| f.cold_start_s),
            series("N created at once → all converged", "s", |f| f.created_s),
            series("controller RSS at rest", "MiB", |f| f.rss_mib),
            series("controller CPU at rest", "millicores", |f| f.cpu_mcores),
            series("one toggle (SMB off), median", "s", |f| f.toggle_median_s),
        ],
    )
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    #[test]
    fn users_are_told_apart_and_a_watch_counts_once() {
        let real: BTreeSet<String> = ["s0000".to_owned()].into();
        let sa = |name: &str| format!("system:serviceaccount:{NS}:{name}");
        assert_eq!(component_of(&sa("dittofs-controller"), &real), Some(CONTROLLER));
        assert_eq!(component_of(&sa("s0000-agent"), &real), Some(REAL_AGENTS));
        assert_eq!(component_of(&sa("s0001-agent"), &real), Some(SIMULATED_AGENTS));
        assert_eq!(component_of(&sa("default"), &real), None);
        assert_eq!(component_of("system:serviceaccount:other:s0001-agent", &real), None);
        assert_eq!(component_of("system:kube-controller-manager", &real), None);

        let dir = tempfile::tempdir().unwrap();
        let (audit, _) = crate::audit::AuditLog::in_dir(dir.path()).unwrap();
        let log = dir.path().join("audit.log");
        let event = |user: &str, verb: &str, stage: &str, resource: Value| {
            json!({"user": {"username": sa(user)}, "verb": verb, "stage": stage, "objectRef": resource}).to_string()
        };
        let ds = json!({"resource": "dittoservers", "subresource": "status"});
        let lines = [
            event("s0001-agent", "patch", "ResponseComplete", ds.clone()),
            event("dittofs-controller", "watch", "ResponseStarted", json!({"resource": "services"})),
            event("dittofs-controller", "watch", "ResponseComplete", json!({"resource": "services"})),
            event("dittofs-controller", "update", "ResponseComplete", json!({"resource": "leases"})),
            event("default", "get", "ResponseComplete", ds),
            "not json".to_owned(),
        ];
        std::fs::write(&log, lines.join("\n")).unwrap();
        let counts = audit.count_since(0, |u| component_of(u, &real)).unwrap();
        let key = |c, v: &str, r: &str| (c, v.to_owned(), r.to_owned());
        let want: Requests = [
            (key(SIMULATED_AGENTS, "patch", "dittoservers/status"), 1),
            (key(CONTROLLER, "watch", "services"), 1),
            (key(CONTROLLER, "update", "leases"), 1),
        ]
        .into();
        assert_eq!(counts, want);
        assert_eq!(per_minute(&counts, 30.0, CONTROLLER, |_, r| is_lease(r)), 2.0);
    }

    #[test]
    fn figures_summary_and_json() {
        let secs = |s: &[u64]| s.iter().map(|&ms| Duration::from_millis(ms)).collect::<Vec<_>>();
        let requests: Requests = [
            ((CONTROLLER, "update".to_owned(), "leases".to_owned()), 120),
            ((CONTROLLER, "list".to_owned(), "services".to_owned()), 3),
            ((SIMULATED_AGENTS, "patch".to_owned(), "dittoservers/status".to_owned()), 50),
            ((REAL_AGENTS, "patch".to_owned(), "dittoservers/status".to_owned()), 1),
        ]
        .into();
        let m = Measured {
            n: 100,
            real: 2,
            cold: Cold {
                took: Duration::from_millis(12_500),
                cpu: vec![("kube-apiserver".to_owned(), 10.0), ("dittofs-controller".to_owned(), 2.5)],
                rss_kib: (25 * 1024, 40 * 1024),
            },
            created: Duration::from_secs(9),
            converge_requests: [((CONTROLLER, "patch".to_owned(), "services".to_owned()), 500)].into(),
            idle_secs: 60.0,
            rss_kib: (20 * 1024, 30 * 1024),
            cpu_mcores: 1.5,
            requests,
            off: secs(&[900, 300, 500]),
            on: secs(&[700]),
            driver: (98, 50, 0),
        };
        let f = m.figures();
        assert_eq!((f.controller_writes_per_min, f.controller_lease_writes_per_min), (0.0, 120.0));
        assert_eq!((f.controller_reads_per_min, f.agent_writes_per_min, f.rss_mib), (3.0, 51.0, 30.0));
        assert_eq!((f.toggle_median_s, f.toggle_max_s), (0.5, 0.9));
        assert_eq!((f.cold_peak_rss_mib, f.controller_requests_per_server), (40.0, 5.0));
        assert!(m.section().contains("| kube-apiserver | 10.0 |"));
        assert!(m.section().contains("| controller | patch | services | 5.00 |"));
        assert!(m.section().contains("| SMB disabled → its Service gone | 3 | 0.50 s | 0.90 s |"));
        assert!(
            summary(std::slice::from_ref(&f))
                .contains("| 100 | 12.5 s | 9.0 s | 30.0 MiB | 1.50 mcores | 0.0 | 0.50 s |")
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out/bench-scale.json");
        write_json(&path, &[f]).unwrap();
        let back: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(back[0]["n"], 100);
        assert_eq!(back[0]["toggle_max_s"], 0.9);
    }
}
