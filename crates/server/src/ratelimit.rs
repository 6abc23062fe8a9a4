//! Rate limiting of the `/v1` routes: one token bucket per API key
//! (`server.rate_limit_per_second`, `server.rate_limit_burst`; a rate of 0 turns it off).
//!
//! A bucket holds at most `burst` tokens and gains `per_second` tokens a second; each
//! request takes one. A request that finds less than one token is answered 429
//! `rate_limited` with a `retry-after` header (whole seconds until a token is there)
//! and never reaches its handler, so it changes nothing. The check runs after the key
//! check: only keys the server accepts get a bucket, so the table is bounded by
//! `server.api_keys` (one shared bucket when no keys are set).
//!
//! Time comes from a [`Clock`], so tests move it forward instead of sleeping.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A monotonic clock: the time elapsed since some fixed origin.
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// Time since the clock's origin; never goes back.
    fn now(&self) -> Duration;
}

/// The process's monotonic clock ([`Instant`]).
#[derive(Debug, Clone, Copy)]
pub struct MonotonicClock {
    origin: Instant,
}

impl Default for MonotonicClock {
    fn default() -> Self {
        Self {
            origin: Instant::now(),
        }
    }
}

impl Clock for MonotonicClock {
    fn now(&self) -> Duration {
        self.origin.elapsed()
    }
}

/// Which accepted key a request came with: the index in `server.api_keys` (0 when no
/// keys are set). Put in the request's extensions by the key check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyIndex(pub usize);

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Duration,
}

/// The buckets of all keys.
#[derive(Debug)]
pub struct RateLimiter {
    per_second: f64,
    burst: f64,
    clock: Arc<dyn Clock>,
    buckets: Mutex<HashMap<KeyIndex, Bucket>>,
}

impl RateLimiter {
    /// A limiter refilling `per_second` tokens a second up to `burst`; off when
    /// `per_second` is 0 (or not a positive number).
    pub fn new(per_second: f64, burst: u32, clock: Arc<dyn Clock>) -> Self {
        Self {
            per_second,
            burst: f64::from(burst.max(1)),
            clock,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// True when requests are limited at all.
    pub fn enabled(&self) -> bool {
        self.per_second > 0.0 && self.per_second.is_finite()
    }

    /// Takes one token from `key`'s bucket: `Ok(())` when there was one, else the time
    /// until there will be one.
    pub fn check(&self, key: KeyIndex) -> Result<(), Duration> {
        if !self.enabled() {
            return Ok(());
        }
        let now = self.clock.now();
        // A poisoned lock only means another request panicked mid-update of plain
        // numbers; the table is still usable.
        let mut buckets = self
            .buckets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let bucket = buckets.entry(key).or_insert(Bucket {
            tokens: self.burst,
            at: now,
        });
        let elapsed = now.saturating_sub(bucket.at).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * self.per_second).min(self.burst);
        bucket.at = now.max(bucket.at);
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64(
                (1.0 - bucket.tokens) / self.per_second,
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Default)]
    struct Manual(Mutex<Duration>);

    impl Clock for Manual {
        fn now(&self) -> Duration {
            *self
                .0
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
        }
    }

    impl Manual {
        fn advance(&self, d: Duration) {
            *self
                .0
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) += d;
        }
    }

    #[test]
    fn a_bucket_empties_refills_at_the_rate_and_never_beyond_the_burst() {
        let clock = Arc::new(Manual::default());
        let limiter = RateLimiter::new(2.0, 3, clock.clone());
        let k = KeyIndex(0);
        for _ in 0..3 {
            assert_eq!(limiter.check(k), Ok(()));
        }
        let wait = limiter.check(k).err();
        assert_eq!(wait, Some(Duration::from_millis(500)));
        // Another key has its own bucket.
        assert_eq!(limiter.check(KeyIndex(1)), Ok(()));
        // Half a second gives one token back, and one only.
        clock.advance(Duration::from_millis(500));
        assert_eq!(limiter.check(k), Ok(()));
        assert!(limiter.check(k).is_err());
        // A long idle time refills to the burst, not beyond.
        clock.advance(Duration::from_secs(3600));
        for _ in 0..3 {
            assert_eq!(limiter.check(k), Ok(()));
        }
        assert!(limiter.check(k).is_err());
    }

    #[test]
    fn a_zero_rate_is_off() {
        let limiter = RateLimiter::new(0.0, 0, Arc::new(Manual::default()));
        assert!(!limiter.enabled());
        for _ in 0..1000 {
            assert_eq!(limiter.check(KeyIndex(0)), Ok(()));
        }
    }
}
