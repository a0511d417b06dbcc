//! [`wait_until`] and [`measure_until`]: poll a condition until it holds or a deadline passes, failing with what was awaited and the last observed state. The one wait loop of the harness: tests wait on facts, never on a clock.

use std::time::{Duration, Instant};

/// First and longest pause between checks: quick conditions (most, against a
/// local apiserver) finish in tens of milliseconds, slow ones are not hammered.
const FIRST_DELAY: Duration = Duration::from_millis(20);
const MAX_DELAY: Duration = Duration::from_millis(250);

/// Fixed pause between checks of [`measure_until`]: the resolution of the latencies it reports.
pub const MEASURE_EVERY: Duration = Duration::from_millis(25);

/// Calls `check` until it returns `Ok`, and returns that value.
///
/// An `Err` from `check` means "not yet": its message is the state to report.
/// So a check reads naturally with `?` on API calls and
/// `anyhow::ensure!(cond, "phase is {phase}")`. After `timeout`, fails with
/// `timed out after 10s waiting for <what>; last state: <last error>`.
///
/// ```no_run
/// # use std::time::Duration;
/// # use dittofs_tests::kube_env::wait_until;
/// # async fn f(pods: kube::Api<k8s_openapi::api::core::v1::Pod>) -> anyhow::Result<()> {
/// let pod = wait_until("pod web-0 to exist", Duration::from_secs(30), async || {
///     Ok(pods.get("web-0").await?)
/// })
/// .await?;
/// # Ok(()) }
/// ```
pub async fn wait_until<T>(
    what: &str,
    timeout: Duration,
    check: impl AsyncFnMut() -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    let mut delay = FIRST_DELAY;
    let backoff = move || {
        let now = delay;
        delay = (delay * 2).min(MAX_DELAY);
        now
    };
    Ok(poll(what, timeout, backoff, check).await?.0)
}

/// [`wait_until`] for a latency the test reports or bounds: checks every [`MEASURE_EVERY`] (no back-off, so
/// the figure is not rounded up to a back-off step) and returns the value with how long it took to hold.
pub async fn measure_until<T>(
    what: &str,
    timeout: Duration,
    check: impl AsyncFnMut() -> anyhow::Result<T>,
) -> anyhow::Result<(T, Duration)> {
    poll(what, timeout, || MEASURE_EVERY, check).await
}

async fn poll<T>(
    what: &str,
    timeout: Duration,
    mut pause: impl FnMut() -> Duration,
    mut check: impl AsyncFnMut() -> anyhow::Result<T>,
) -> anyhow::Result<(T, Duration)> {
    let start = Instant::now();
    loop {
        // Bound each check by the time left, so one hung request cannot
        // stretch the wait past its deadline.
        let left = timeout.saturating_sub(start.elapsed()).max(Duration::from_millis(100));
        let state = match tokio::time::timeout(left, check()).await {
            Ok(Ok(value)) => return Ok((value, start.elapsed())),
            Ok(Err(e)) => format!("{e:#}"),
            Err(_) => format!("the check itself did not finish within {}", fmt_duration(left)),
        };
        if start.elapsed() >= timeout {
            anyhow::bail!("timed out after {} waiting for {what}; last state: {state}", fmt_duration(timeout));
        }
        tokio::time::sleep(pause().min(timeout.saturating_sub(start.elapsed()))).await;
    }
}

/// `10s`, `1.5s` or `300ms`: what a person would write.
fn fmt_duration(d: Duration) -> String {
    if d.as_millis().is_multiple_of(1000) {
        format!("{}s", d.as_secs())
    } else if d >= Duration::from_secs(1) {
        format!("{:.1}s", d.as_secs_f64())
    } else {
        format!("{}ms", d.as_millis())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn returns_value_once_condition_holds() {
        let mut calls = 0;
        let value = wait_until("three calls", Duration::from_secs(5), async || {
            calls += 1;
            anyhow::ensure!(calls >= 3, "calls = {calls}");
            Ok(calls * 10)
        })
        .await
        .unwrap();
        assert_eq!(value, 30);
    }

    #[tokio::test]
    async fn measure_reports_how_long_the_condition_took() {
        let start = Instant::now();
        let (value, took) = measure_until("100ms to pass", Duration::from_secs(5), async || {
            anyhow::ensure!(start.elapsed() >= Duration::from_millis(100), "not yet");
            Ok("done")
        })
        .await
        .unwrap();
        assert_eq!(value, "done");
        assert!(took >= Duration::from_millis(100) && took < Duration::from_millis(600), "{took:?}");
    }

    #[tokio::test]
    async fn timeout_reports_what_and_last_state() {
        let err = wait_until("the impossible", Duration::from_millis(100), async || -> anyhow::Result<()> {
            anyhow::bail!("still impossible")
        })
        .await
        .unwrap_err();
        assert_eq!(err.to_string(), "timed out after 100ms waiting for the impossible; last state: still impossible");
    }

    #[test]
    fn durations_read_naturally() {
        assert_eq!(fmt_duration(Duration::from_secs(10)), "10s");
        assert_eq!(fmt_duration(Duration::from_millis(1500)), "1.5s");
        assert_eq!(fmt_duration(Duration::from_millis(300)), "300ms");
    }
}
