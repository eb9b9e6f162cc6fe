//! Each key's request budget on this node: a token bucket holding `burst` requests, refilled at
//! `per_sec`. Buckets exist for keys that authenticated only, so there are as many as keys used.

use crate::token_bucket::TokenBucket;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;

pub(crate) struct Budgets {
    per_sec: u32,
    burst: u32,
    buckets: Mutex<HashMap<String, TokenBucket>>,
}

impl Budgets {
    pub(crate) fn new(per_sec: u32, burst: u32) -> Budgets {
        Budgets { per_sec, burst, buckets: Mutex::default() }
    }

    /// Takes one request from `key`'s budget, or `Err(wait)` until one is there again.
    pub(crate) fn take(&self, key: &str) -> Result<(), Duration> {
        self.take_at(key, Instant::now())
    }

    fn take_at(&self, key: &str, now: Instant) -> Result<(), Duration> {
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        // A key seen before (nearly every call) allocates nothing.
        if let Some(bucket) = buckets.get_mut(key) {
            return bucket.take(now);
        }
        let bucket =
            buckets.entry(key.to_owned()).or_insert_with(|| TokenBucket::new(self.per_sec, self.burst, now));
        bucket.take(now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_key_has_its_own_budget() {
        let budgets = Budgets::new(2, 3);
        let start = Instant::now();
        for _ in 0..3 {
            assert!(budgets.take_at("a", start).is_ok());
        }
        assert!(budgets.take_at("a", start).is_err());
        assert!(budgets.take_at("b", start).is_ok(), "each key has its own budget");
        assert!(budgets.take_at("a", start + Duration::from_millis(500)).is_ok());
    }
}
