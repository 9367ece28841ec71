//! Polling with a deadline: what tests use instead of sleeps.

use std::future::Future;
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
#[error("timed out after {secs:.1} s waiting for {what}")]
pub struct Timeout {
    pub what: String,
    pub secs: f64,
}

/// Polls `check` (every 50 ms, backing off to 500 ms) until it returns
/// `Some`, or fails with a [`Timeout`] naming `what`.
pub async fn until<T, F, Fut>(what: &str, within: Duration, check: F) -> Result<T, Timeout>
where
    F: Fn() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let start = Instant::now();
    let mut delay = Duration::from_millis(50);
    loop {
        if let Some(value) = check().await {
            return Ok(value);
        }
        if start.elapsed() > within {
            return Err(Timeout {
                what: what.to_string(),
                secs: start.elapsed().as_secs_f64(),
            });
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_millis(500));
    }
}

/// Waits until the object `name` no longer exists (deleted and, if it had
/// finalizers or owners, released and collected).
pub async fn gone<K>(api: &kube::Api<K>, name: &str, within: Duration) -> Result<(), Timeout>
where
    K: Clone + std::fmt::Debug + serde::de::DeserializeOwned,
{
    let what = format!("{name} to be gone");
    until(&what, within, || async {
        matches!(api.get_opt(name).await, Ok(None)).then_some(())
    })
    .await
}
