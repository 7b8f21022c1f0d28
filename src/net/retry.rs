//! When and how often a failed request is tried again: exponential backoff with jitter, the
//! one rule of the OpenStack and AMS clients. The caller sleeps the pause with
//! `tokio::time::sleep`, so a run that is stopped (SIGTERM drops its future) stops waiting too.

use std::time::Duration;

/// When and how often a failed request is tried again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts per message in total (first one included); at least 1.
    pub max_attempts: u32,
    /// Backoff before the second attempt; doubles each time, up to `max_backoff`.
    pub base_backoff: Duration,
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 5,
            base_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(30),
        }
    }
}

impl RetryPolicy {
    /// The pause before attempt `attempt + 1` (attempt counts from 1): exponential with "equal
    /// jitter" (between half and all of the exponential value) so that many senders that failed
    /// together do not come back together. A server's `Retry-After` wins if it is longer, capped
    /// by `max_backoff`.
    pub fn backoff(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        let exp = self
            .base_backoff
            .saturating_mul(
                1u32.checked_shl(attempt.saturating_sub(1))
                    .unwrap_or(u32::MAX),
            )
            .min(self.max_backoff);
        let half = exp / 2;
        let jitter = half.mul_f64(random_unit());
        let pause = half + jitter;
        match retry_after {
            Some(ra) => pause.max(ra.min(self.max_backoff)),
            None => pause,
        }
    }
}

/// A uniform number in [0, 1) from the OpenSSL random generator (no extra dependency).
fn random_unit() -> f64 {
    let mut b = [0u8; 4];
    match openssl::rand::rand_bytes(&mut b) {
        Ok(()) => f64::from(u32::from_le_bytes(b)) / (f64::from(u32::MAX) + 1.0),
        Err(_) => 0.5,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_is_jittered_and_capped() {
        let p = RetryPolicy {
            max_attempts: 10,
            base_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(1000),
        };
        for _ in 0..100 {
            let b1 = p.backoff(1, None);
            assert!(b1 >= Duration::from_millis(50) && b1 <= Duration::from_millis(100));
            let b3 = p.backoff(3, None);
            assert!(b3 >= Duration::from_millis(200) && b3 <= Duration::from_millis(400));
            let b9 = p.backoff(9, None);
            assert!(b9 >= Duration::from_millis(500) && b9 <= Duration::from_millis(1000));
            assert!(p.backoff(40, None) <= Duration::from_millis(1000));
        }
        let ra = p.backoff(1, Some(Duration::from_millis(700)));
        assert!(ra >= Duration::from_millis(700));
        assert!(p.backoff(1, Some(Duration::from_secs(3600))) <= Duration::from_millis(1000));
    }
}
