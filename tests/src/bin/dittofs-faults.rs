//! `make faults`: the fault suite with its full counts, times `$FAULTS_ROUNDS` (see `dittofs_tests::faults`).
//! Progress and violations go to stderr as they happen, the Markdown report to stdout; the exit status is
//! non-zero when any invariant was violated or a scenario could not run to its end.

use dittofs_tests::faults::{report, run_all, scaled_rounds};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    dittofs_tests::agent_world::init_logs();
    let (outcomes, run) = run_all(scaled_rounds).await?;
    print!("{}", report::markdown(&outcomes, &run));
    let violations: usize = outcomes.iter().map(|o| o.violations.len()).sum();
    let errors = outcomes.iter().filter(|o| o.error.is_some()).count();
    anyhow::ensure!(violations == 0 && errors == 0, "{violations} violation(s), {errors} scenario error(s)");
    Ok(())
}
