//! Rate limiting of the `/v1` routes: one token bucket per API key
//! (`server.rate_limit_per_second`, `server.rate_limit_burst`; a rate of 0 turns it off).
//!
//! A bucket holds at most `burst` tokens and gains `per_second` tokens a second; each
//! request takes one. A request that finds less than one token is answered 429
//! `rate_limited` with a `retry-after` header (whole seconds until a token is there)
//! and never reaches its handler, so it changes nothing. The check runs after the key
//! check: only keys the server accepts get a bucket, so the table is bounded by the keys
//! in force (one shared bucket when no keys are set). A bucket belongs to the key itself
//! ([`KeyId`], a hash of its bytes), not to its place in a list, so a key keeps its bucket
//! when the key file is reloaded with lines added or removed before it; the buckets of
//! keys a reload removed are dropped ([`RateLimiter::retain`]).
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

/// Which accepted key a request came with: the 64-bit FNV-1a hash of the key's bytes
/// ([`KeyId::of`]), or [`KeyId::SHARED`] when no keys are set. Put in the request's
/// extensions by the key check. Two keys sharing a hash would share a bucket, nothing
/// more: the id only names a bucket, it is never compared in place of a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyId(pub u64);

impl KeyId {
    /// The one bucket of every request when auth is off.
    pub const SHARED: KeyId = KeyId(0);

    /// The id of the key `key`.
    pub fn of(key: &str) -> Self {
        Self(steerfeed::hash::Fnv1a::of(key.as_bytes()))
    }
}

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
    buckets: Mutex<HashMap<KeyId, Bucket>>,
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

    /// Keeps only the buckets of the keys `keep` accepts (after a reload of the keys, those
    /// still in force), so that the table stays bounded by the keys in force.
    pub fn retain(&self, keep: impl Fn(KeyId) -> bool) {
        self.lock().retain(|id, _| keep(*id));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<KeyId, Bucket>> {
        // A poisoned lock only means another request panicked mid-update of plain
        // numbers; the table is still usable.
        self.buckets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Takes one token from `key`'s bucket: `Ok(())` when there was one, else the time
    /// until there will be one.
    pub fn check(&self, key: KeyId) -> Result<(), Duration> {
        if !self.enabled() {
            return Ok(());
        }
        let now = self.clock.now();
        let mut buckets = self.lock();
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
        let k = KeyId::of("a");
        for _ in 0..3 {
            assert_eq!(limiter.check(k), Ok(()));
        }
        let wait = limiter.check(k).err();
        assert_eq!(wait, Some(Duration::from_millis(500)));
        // Another key has its own bucket.
        assert_eq!(limiter.check(KeyId::of("b")), Ok(()));
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
        // Dropping the other key's bucket leaves this one as it was.
        limiter.retain(|id| id == k);
        assert!(limiter.check(k).is_err());
        assert_eq!(limiter.lock().len(), 1);
    }

    #[test]
    fn a_zero_rate_is_off() {
        let limiter = RateLimiter::new(0.0, 0, Arc::new(Manual::default()));
        assert!(!limiter.enabled());
        for _ in 0..1000 {
            assert_eq!(limiter.check(KeyId::SHARED), Ok(()));
        }
    }
}
