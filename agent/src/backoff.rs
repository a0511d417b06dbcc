//! Retry delays towards shared servers (DittoFS's login, the apiserver): backon's exponential series from the
//! minimum, doubling up to the maximum, each delay with up to +100 % random jitter and never above the maximum,
//! so that many agents failing together (an apiserver outage) do not retry in step.

use std::time::Duration;

use backon::{BackoffBuilder as _, ExponentialBuilder};

type Series = <ExponentialBuilder as backon::BackoffBuilder>::Backoff;

#[derive(Debug)]
pub(crate) struct Backoff {
    builder: ExponentialBuilder,
    max: Duration,
    /// The series of the current run of failures; `None` after a success.
    series: Option<Series>,
}

impl Backoff {
    pub fn new(min: Duration, max: Duration) -> Backoff {
        let builder = ExponentialBuilder::default()
            .with_min_delay(min)
            .with_max_delay(max)
            .with_factor(2.0)
            .with_jitter()
            .without_max_times();
        Backoff { builder, max, series: None }
    }

    /// The delay after one more failure.
    pub fn next_delay(&mut self) -> Duration {
        let builder = self.builder;
        let series = self.series.get_or_insert_with(|| builder.build());
        // The jitter may add up to the delay itself; the maximum stays a maximum.
        series.next().unwrap_or(self.max).min(self.max)
    }

    /// A success: the next failure starts from the minimum again.
    pub fn reset(&mut self) {
        self.series = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_from_the_minimum_with_jitter_up_to_the_cap() {
        let (min, max) = (Duration::from_secs(2), Duration::from_secs(300));
        let mut b = Backoff::new(min, max);
        let delays: Vec<Duration> = (0..12).map(|_| b.next_delay()).collect();
        for (n, d) in delays.iter().enumerate() {
            // The n-th delay lies in [min·2ⁿ, 2·min·2ⁿ), cut at max.
            let base = min.saturating_mul(1 << n).min(max);
            assert!(*d >= base && *d <= (base * 2).min(max), "delay {n}: {d:?} outside [{base:?}, 2×{base:?}]");
        }
        assert_eq!(delays[11], max, "capped");
        assert!(delays[..4].iter().enumerate().any(|(n, d)| *d != min * (1 << n)), "jittered: {delays:?}");
        b.reset();
        assert!(b.next_delay() < min * 2, "a success starts the series again");
    }
}
