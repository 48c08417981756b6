//! Exponential backoff with jitter for reconnecting.

use std::time::Duration;

use rand_core::{OsRng, RngCore};

/// Backoff settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackoffConfig {
    /// The first delay's upper bound.
    pub initial: Duration,
    /// No delay is longer than this.
    pub max: Duration,
}

impl Default for BackoffConfig {
    /// First retry after 100–200 ms, doubling to at most 30 s.
    fn default() -> Self {
        Self {
            initial: Duration::from_millis(200),
            max: Duration::from_secs(30),
        }
    }
}

/// "Equal jitter" backoff: attempt `n` waits a random time between half and
/// all of `min(initial * 2^n, max)`. Half keeps a floor so a crowd of
/// clients does not hammer a recovering server; the random half spreads
/// them out.
#[derive(Debug, Clone)]
pub struct Backoff {
    config: BackoffConfig,
    attempt: u32,
}

impl Backoff {
    /// A fresh backoff at attempt zero.
    pub fn new(config: BackoffConfig) -> Self {
        Self { config, attempt: 0 }
    }

    /// How many delays were handed out since the last reset.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// Back to the first delay (after a connection that worked).
    pub fn reset(&mut self) {
        self.attempt = 0;
    }

    /// The next delay.
    pub fn next_delay(&mut self) -> Duration {
        let ceiling = self
            .config
            .initial
            .saturating_mul(1u32 << self.attempt.min(20))
            .min(self.config.max);
        self.attempt = self.attempt.saturating_add(1);
        let half = ceiling / 2;
        let spread = u64::try_from(half.as_micros()).unwrap_or(u64::MAX);
        let jitter = if spread == 0 {
            0
        } else {
            OsRng.next_u64() % (spread + 1)
        };
        half + Duration::from_micros(jitter)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_with_jitter_and_caps() {
        let config = BackoffConfig {
            initial: Duration::from_millis(200),
            max: Duration::from_secs(5),
        };
        let mut b = Backoff::new(config);
        let first = b.next_delay();
        assert!(first >= Duration::from_millis(100) && first <= Duration::from_millis(200));
        let second = b.next_delay();
        assert!(second >= Duration::from_millis(200) && second <= Duration::from_millis(400));
        for n in 2..40 {
            let d = b.next_delay();
            assert!(d <= Duration::from_secs(5), "{d:?}");
            if n >= 5 {
                assert!(d >= Duration::from_millis(2500), "{d:?}");
            }
        }
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(200));
    }

    #[test]
    fn jitter_spreads_delays() {
        let mut seen = std::collections::HashSet::new();
        for _ in 0..20 {
            let mut b = Backoff::new(BackoffConfig::default());
            seen.insert(b.next_delay());
        }
        assert!(seen.len() > 10, "delays should differ: {seen:?}");
    }
}
