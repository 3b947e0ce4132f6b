//! A rate and the outcome of checking one: the values the limits policy, the counters
//! and the HTTP answers (`RateLimit-*`, `Retry-After`) share. Depends on nothing else
//! of the crate.

use std::time::Duration;

/// A rate: at most `limit` requests per `period`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rate {
    pub limit: u32,
    pub period: Duration,
}

/// The outcome of one rate-limit check, with what the `RateLimit-*` headers say.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    pub limit: u32,
    pub remaining: u32,
    /// Milliseconds until the bucket is full again.
    pub reset_ms: i64,
    /// Milliseconds until the next request is allowed (0 when allowed).
    pub retry_after_ms: i64,
}

impl Decision {
    /// Whole seconds until the next request is allowed (at least 1 when refused).
    pub fn retry_after_secs(&self) -> i64 {
        ceil_secs(self.retry_after_ms)
    }

    /// Whole seconds until the bucket is full again (`RateLimit-Reset`).
    pub fn reset_secs(&self) -> i64 {
        ceil_secs(self.reset_ms)
    }
}

/// Milliseconds to whole seconds, rounded up.
pub fn ceil_secs(ms: i64) -> i64 {
    (ms.max(0) + 999) / 1000
}
