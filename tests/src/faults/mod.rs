//! The fault suite (`make faults`; a bounded part runs in `make test`, `tests/tests/faults.rs`): one world
//! ([`world`]) of a real control plane, controller processes, DittoServers with their pods and a proxy in
//! front of the apiserver ([`proxy`]); an invariant checker ([`invariants`]) that compares, every 100 ms,
//! what Kubernetes exposes with what DittoFS runs; one function per fault kind ([`scenarios`]), each
//! toggling adapters around its fault and measuring the convergence after it clears; and the Markdown
//! report ([`report`]). docs/reliability.md explains the rules and holds the figures.

pub mod invariants;
pub mod observe;
pub mod proxy;
pub mod report;
pub mod scenarios;
pub mod watched;
pub mod world;

use std::time::{Duration, Instant};

pub use scenarios::{Kind, Outcome};
pub use world::World;

/// A small seeded PRNG (SplitMix64): every random choice of a run follows from its seed, which the run
/// prints, so a failing run can be repeated with `FAULTS_SEED`.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    /// `$FAULTS_SEED`, else one from the clock; returns the seed too.
    pub fn from_env() -> (Rng, u64) {
        Rng::from_var("FAULTS_SEED")
    }

    /// The seed in env var `var`, else one from the clock; returns the seed too.
    pub fn from_var(var: &str) -> (Rng, u64) {
        let seed = std::env::var(var).ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
            let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
            now.as_nanos() as u64
        });
        (Rng::new(seed), seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n` > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    pub fn chance(&mut self, one_in: u64) -> bool {
        self.below(one_in) == 0
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }

    /// A duration in `0..max`.
    pub fn up_to(&mut self, max: Duration) -> Duration {
        Duration::from_millis(self.below(max.as_millis() as u64))
    }
}

/// How many rounds of each kind a run does: the full counts times `$FAULTS_ROUNDS` (a factor, default 1;
/// at least one round each). `$FAULTS_ONLY` (comma-separated words) keeps the kinds whose title contains one
/// of them, to repeat one kind.
pub fn scaled_rounds(kind: Kind) -> u32 {
    let factor: f64 = std::env::var("FAULTS_ROUNDS").ok().and_then(|s| s.parse().ok()).unwrap_or(1.0);
    if let Ok(only) = std::env::var("FAULTS_ONLY")
        && !only.split(',').any(|w| !w.trim().is_empty() && kind.title().contains(w.trim()))
    {
        return 0;
    }
    ((f64::from(kind.full_rounds()) * factor).round() as u32).max(1)
}

/// Runs every kind with `rounds(kind)` rounds in one world, printing progress on stderr; returns the
/// outcomes (an error of the harness itself becomes a failed outcome, never a skipped one) and the run's
/// facts for the report.
pub async fn run_all(rounds: impl Fn(Kind) -> u32) -> anyhow::Result<(Vec<Outcome>, report::Run)> {
    let (rng, seed) = Rng::from_env();
    let started = Instant::now();
    eprintln!("faults: seed {seed} (FAULTS_SEED={seed} repeats this run's choices)");
    let mut world = World::start(rng).await?;
    eprintln!("faults: world up in {:.1} s; logs in {}", started.elapsed().as_secs_f64(), world.log_dir().display());
    let mut outcomes = Vec::new();
    for kind in Kind::ALL {
        let n = rounds(kind);
        if n == 0 {
            continue;
        }
        let began = Instant::now();
        eprintln!("faults: {} — {n} round(s)…", kind.title());
        let outcome = scenarios::run(&mut world, kind, n).await;
        eprintln!(
            "faults: {} done in {:.0} s: {} violation(s){}",
            kind.title(),
            began.elapsed().as_secs_f64(),
            outcome.violations.len(),
            outcome.error.as_ref().map(|e| format!(", ERROR: {e}")).unwrap_or_default()
        );
        outcomes.push(outcome);
    }
    let run = report::Run {
        seed,
        took: started.elapsed(),
        flavor: if crate::dittofs::Flavor::from_env()?.is_real() { "real dfs" } else { "dittofs-emulator" },
        read_errors: world.checker.read_errors(),
        logs: world.log_dir().to_owned(),
    };
    let failed = outcomes.iter().any(|o| !o.violations.is_empty() || o.error.is_some());
    if failed {
        // Keep the logs of a failed run for the investigation; a clean run cleans up.
        let kept = std::mem::replace(&mut world.dir, tempfile::tempdir()?).keep();
        // The control plane's logs too (its own directory goes with it).
        for entry in std::fs::read_dir(world.cp.dir())?.flatten() {
            if entry.file_name().to_string_lossy().ends_with(".log") {
                std::fs::copy(entry.path(), kept.join(entry.file_name()))?;
            }
        }
        eprintln!("faults: logs kept in {}", kept.display());
    }
    world.shutdown().await;
    Ok((outcomes, run))
}
