//! The Markdown report of a run: one row per fault kind — rounds, invariant violations (goal 0), worst
//! time from a fault clearing to Kubernetes matching DittoFS — then every violation and harness error
//! in full, and the run's facts (seed, DittoFS flavor, grace, duration).

use std::{fmt::Write as _, path::PathBuf, time::Duration};

use super::{
    invariants::{CHECK_EVERY, GRACE, RESTART_GRACE},
    scenarios::{Kind, Outcome},
};

/// Facts of the whole run.
#[derive(Debug, Clone)]
pub struct Run {
    pub seed: u64,
    pub took: Duration,
    pub flavor: &'static str,
    /// Checker reads that failed outside any fault.
    pub read_errors: u64,
    pub logs: PathBuf,
}

fn secs(d: Option<Duration>) -> String {
    d.map_or("—".into(), |d| format!("{:.2} s", d.as_secs_f64()))
}

/// What the convergence column measures for `kind`, where it is not "clear → match".
fn measured(kind: Kind) -> &'static str {
    match kind {
        Kind::LeaderKill => " (kill → new server reconciled)",
        Kind::RandomSpecs => " (create/edit → reconciled)",
        Kind::HostileStatus => " (honest report → nothing exposed)",
        _ => "",
    }
}

pub fn markdown(outcomes: &[Outcome], run: &Run) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "## Fault suite\n");
    let _ = writeln!(
        out,
        "DittoFS: {}. Seed {} (`FAULTS_SEED={}` repeats the run's choices). Grace {:?} ({:?} after a \
         kube-apiserver or etcd restart), checked every {:?}. Run took {:.0} s.\n",
        run.flavor,
        run.seed,
        run.seed,
        GRACE,
        RESTART_GRACE,
        CHECK_EVERY,
        run.took.as_secs_f64()
    );
    let _ = writeln!(out, "| fault | rounds | violations | worst convergence after the fault cleared | notes |");
    let _ = writeln!(out, "|---|---|---|---|---|");
    for o in outcomes {
        let mut notes = notes_of(o);
        if o.error.is_some() {
            notes = format!("**harness error** (see below){}{notes}", if notes.is_empty() { "" } else { "; " });
        }
        let _ = writeln!(
            out,
            "| {} | {} | {} | {}{} | {} |",
            o.kind.title(),
            o.rounds,
            o.violations.len(),
            secs(o.worst),
            measured(o.kind),
            notes
        );
    }
    let total: usize = outcomes.iter().map(|o| o.violations.len()).sum();
    let _ = writeln!(out, "\nViolations in total: {total}. Checker reads failed outside faults: {}.", run.read_errors);
    for o in outcomes.iter().filter(|o| !o.violations.is_empty() || o.error.is_some()) {
        let _ = writeln!(out, "\n### {}\n", o.kind.title());
        if let Some(e) = &o.error {
            let _ = writeln!(out, "- harness error: {e}");
        }
        for v in &o.violations {
            let _ = writeln!(out, "- {} `{}`: {}", v.at, v.server, v.detail.replace('\n', "\n  "));
        }
    }
    if total > 0 {
        let _ = writeln!(out, "\nLogs of the run: {}", run.logs.display());
    }
    out
}

/// The notes column: counts, worst durations, then the other facts.
fn notes_of(o: &Outcome) -> String {
    let counts = o.counts.iter().map(|(what, n)| format!("{what}: {n}"));
    let maxima = o.maxima.iter().map(|(what, d)| format!("{what} {:.2} s (worst)", d.as_secs_f64()));
    counts.chain(maxima).chain(o.notes.iter().cloned()).collect::<Vec<_>>().join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_has_a_row_per_kind_and_details_only_for_failures() {
        let ok = Outcome {
            kind: Kind::HostileStatus,
            rounds: 2,
            violations: vec![],
            worst: Some(Duration::from_millis(1234)),
            counts: vec![("writes refused by the apiserver", 7)],
            maxima: vec![],
            notes: vec![],
            error: None,
        };
        let violation = crate::faults::invariants::Violation {
            at: jiff::Timestamp::UNIX_EPOCH,
            server: "fs".into(),
            detail: "Service nfs: Kubernetes has port 1, DittoFS runs nothing".into(),
        };
        let bad =
            Outcome { kind: Kind::AgentKill, violations: vec![violation], worst: None, counts: vec![], ..ok.clone() };
        let run = Run {
            seed: 1,
            took: Duration::from_secs(60),
            flavor: "dittofs-emulator",
            read_errors: 0,
            logs: "/x".into(),
        };
        let text = markdown(&[ok, bad], &run);
        assert!(text.contains("| hostile status writes with the agent's token | 2 | 0 | 1.23 s (honest report → nothing exposed) | writes refused by the apiserver: 7 |"), "{text}");
        assert!(text.contains("| agent SIGKILL | 2 | 1 | — |  |"), "{text}");
        assert!(text.contains("### agent SIGKILL\n\n- 1970-01-01T00:00:00Z `fs`: Service nfs"), "{text}");
        assert!(!text.contains("### hostile"), "{text}");
        assert!(text.contains("Violations in total: 1."), "{text}");
    }
}
