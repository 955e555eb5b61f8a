//! Retry schedule: exponential backoff with jitter, bounded, honouring a
//! server's `Retry-After`.
//!
//! Listing requests and whole download-and-verify units go through
//! [`retry`]; the operation's error says whether trying again can help.

use std::future::Future;
use std::time::Duration;

/// When and how often to try again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Delay before the second attempt; doubled for each further one.
    pub base: Duration,
    /// Longest delay between attempts (also caps `Retry-After`).
    pub max_delay: Duration,
    /// Attempts in all, the first included.
    pub attempts: u32,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            base: Duration::from_millis(1000),
            max_delay: Duration::from_secs(300),
            attempts: 6,
        }
    }
}

impl RetryPolicy {
    /// Delay after failed attempt number `attempt` (1-based): `Retry-After`
    /// when the server gave one, else `base * 2^(attempt-1)` with jitter
    /// between half and all of it, so parallel downloads spread out.
    pub fn delay(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        if let Some(wait) = retry_after {
            return wait.min(self.max_delay);
        }
        let factor = 1u32 << (attempt.saturating_sub(1)).min(16);
        let full = self.base.saturating_mul(factor).min(self.max_delay);
        let half = full / 2;
        half + full.saturating_sub(half).mul_f64(fastrand::f64())
    }
}

/// What an error says about trying again.
pub trait Transient {
    /// `None`: permanent, give up. `Some(wait)`: try again, after the
    /// server's `Retry-After` if it gave one.
    fn retry_after(&self) -> Option<Option<Duration>>;
}

/// Runs `operation` until it succeeds, fails permanently or the attempts
/// are spent. `what` names the unit in log lines.
pub async fn retry<T, E, F, Fut>(policy: RetryPolicy, what: &str, mut operation: F) -> Result<T, E>
where
    E: Transient + std::error::Error + 'static,
    F: FnMut(u32) -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let mut attempt = 1;
    loop {
        let error = match operation(attempt).await {
            Ok(value) => return Ok(value),
            Err(error) => error,
        };
        let Some(retry_after) = error.retry_after() else {
            return Err(error);
        };
        if attempt >= policy.attempts {
            return Err(error);
        }
        let delay = policy.delay(attempt, retry_after);
        tracing::warn!(
            unit = what,
            attempt,
            of = policy.attempts,
            delay_ms = delay.as_millis() as u64,
            "retrying: {}",
            error_chain(&error)
        );
        tokio::time::sleep(delay).await;
        attempt += 1;
    }
}

/// An error and its causes on one line, `: `-separated.
pub fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(inner) = cause {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        cause = inner.source();
    }
    text
}

/// Parses a `Retry-After` value: seconds or an HTTP date.
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let when = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    let wait = when.with_timezone(&chrono::Utc) - chrono::Utc::now();
    Some(wait.to_std().unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Flaky(bool);

    impl std::error::Error for Flaky {}

    impl std::fmt::Display for Flaky {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("flaky")
        }
    }

    impl Transient for Flaky {
        fn retry_after(&self) -> Option<Option<Duration>> {
            self.0.then_some(None)
        }
    }

    fn fast() -> RetryPolicy {
        RetryPolicy {
            base: Duration::from_millis(1),
            max_delay: Duration::from_millis(5),
            attempts: 3,
        }
    }

    #[test]
    fn delays_grow_and_stay_bounded() {
        let policy = RetryPolicy::default();
        let first = policy.delay(1, None);
        assert!(first >= Duration::from_millis(500) && first <= Duration::from_millis(1000));
        let fourth = policy.delay(4, None);
        assert!(fourth >= Duration::from_millis(4000) && fourth <= Duration::from_millis(8000));
        assert_eq!(
            policy.delay(30, None).max(policy.max_delay),
            policy.max_delay
        );
        assert_eq!(
            policy.delay(1, Some(Duration::from_secs(7))),
            Duration::from_secs(7)
        );
    }

    #[tokio::test]
    async fn transient_errors_are_retried_until_the_attempts_are_spent() {
        let mut calls = 0;
        let result: Result<(), Flaky> = retry(fast(), "test", |_| {
            calls += 1;
            async { Err(Flaky(true)) }
        })
        .await;
        assert!(result.is_err());
        assert_eq!(calls, 3);
    }

    #[tokio::test]
    async fn permanent_errors_are_not_retried() {
        let mut calls = 0;
        let result: Result<(), Flaky> = retry(fast(), "test", |_| {
            calls += 1;
            async { Err(Flaky(false)) }
        })
        .await;
        assert!(result.is_err());
        assert_eq!(calls, 1);
    }

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        assert_eq!(parse_retry_after("3"), Some(Duration::from_secs(3)));
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon"), None);
    }
}
