//! Condition waits with deadlines: tests poll for the state they need instead of sleeping for a guess.

use std::{fmt::Debug, future::Future, time::Duration};

use tokio::time::Instant;

/// Polls `check` every `interval` until it returns `Ok(value)`, or fails after `timeout` with the last
/// `Err` state in the message ("timed out after 10s waiting for X; last state: …").
pub async fn wait_until<T, E: Debug, F, Fut>(what: &str, timeout: Duration, mut check: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let interval = (timeout / 50).clamp(Duration::from_millis(20), Duration::from_millis(250));
    let deadline = Instant::now() + timeout;
    loop {
        match check().await {
            Ok(value) => return Ok(value),
            Err(state) if Instant::now() >= deadline => {
                anyhow::bail!("timed out after {timeout:?} waiting for {what}; last state: {state:?}")
            }
            Err(_) => tokio::time::sleep(interval).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn returns_the_value_or_reports_the_last_state() {
        let mut n = 0;
        let got = wait_until("n to reach 3", Duration::from_secs(2), || {
            n += 1;
            let n = n;
            async move { if n >= 3 { Ok(n) } else { Err(n) } }
        })
        .await
        .unwrap();
        assert_eq!(got, 3);
        let err =
            wait_until("never", Duration::from_millis(50), || async { Err::<(), _>("still no") }).await.unwrap_err();
        assert!(err.to_string().contains("waiting for never; last state: \"still no\""), "{err}");
    }
}
