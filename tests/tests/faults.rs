//! The bounded part of the fault suite in `make test`: every fault kind, one round (two where a round is
//! cheap), in one world of its own, with zero invariant violations. `make faults` runs the full counts.

use dittofs_tests::faults::{Kind, report, run_all};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "real-server tier: needs the Kubernetes test binaries, DittoFS and the built binaries; run `make test`"]
async fn every_fault_kind_keeps_the_invariants() -> anyhow::Result<()> {
    dittofs_tests::agent_world::init_logs();
    let (outcomes, run) = run_all(Kind::bounded_rounds).await?;
    let text = report::markdown(&outcomes, &run);
    eprintln!("{text}");
    let ran: Vec<_> = outcomes.iter().map(|o| o.kind).collect();
    assert_eq!(ran, Kind::ALL, "every kind runs here");
    for o in &outcomes {
        assert!(o.error.is_none(), "{}: the scenario failed: {}", o.kind.title(), o.error.as_deref().unwrap_or(""));
        assert_eq!(o.rounds, o.kind.bounded_rounds(), "{}: rounds run", o.kind.title());
    }
    let violated: Vec<_> = outcomes.iter().filter(|o| !o.violations.is_empty()).map(|o| o.kind.title()).collect();
    assert!(violated.is_empty(), "invariants violated under {violated:?}; see the report above");
    Ok(())
}
