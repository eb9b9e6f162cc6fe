//! Each key's request budget on this node: a token bucket holding `burst` requests, refilled at
//! `per_sec`. Buckets exist for keys that authenticated only, so there are as many as keys used.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub(crate) struct Budgets {
    per_sec: f64,
    burst: f64,
    buckets: Mutex<HashMap<String, Bucket>>,
}

struct Bucket {
    requests: f64,
    at: Instant,
}

impl Budgets {
    pub(crate) fn new(per_sec: u32, burst: u32) -> Budgets {
        Budgets {
            per_sec: f64::from(per_sec.max(1)),
            burst: f64::from(burst.max(1)),
            buckets: Mutex::default(),
        }
    }

    /// Takes one request from `key`'s budget, or `Err(wait)` until one is there again.
    pub(crate) fn take(&self, key: &str) -> Result<(), Duration> {
        self.take_at(key, Instant::now())
    }

    fn take_at(&self, key: &str, now: Instant) -> Result<(), Duration> {
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        let bucket = buckets.entry(key.to_owned()).or_insert(Bucket { requests: self.burst, at: now });
        let refill = now.saturating_duration_since(bucket.at).as_secs_f64() * self.per_sec;
        bucket.requests = (bucket.requests + refill).min(self.burst);
        bucket.at = now;
        if bucket.requests >= 1.0 {
            bucket.requests -= 1.0;
            return Ok(());
        }
        Err(Duration::from_secs_f64((1.0 - bucket.requests) / self.per_sec))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_then_the_rate_per_key() {
        let budgets = Budgets::new(2, 3);
        let start = Instant::now();
        for _ in 0..3 {
            assert!(budgets.take_at("a", start).is_ok());
        }
        let wait = budgets.take_at("a", start).unwrap_err();
        assert!(wait > Duration::from_millis(490) && wait <= Duration::from_millis(500), "{wait:?}");
        assert!(budgets.take_at("b", start).is_ok(), "each key has its own budget");
        assert!(budgets.take_at("a", start + Duration::from_millis(500)).is_ok());
        assert!(budgets.take_at("a", start + Duration::from_millis(500)).is_err());
        // Idle for long: back to the burst, not beyond.
        let later = start + Duration::from_secs(60);
        for _ in 0..3 {
            assert!(budgets.take_at("a", later).is_ok());
        }
        assert!(budgets.take_at("a", later).is_err());
    }
}
