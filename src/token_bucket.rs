//! A token bucket: `capacity` tokens at most, refilled at `rate` a second; each take spends one.
//! The rate of a socket's messages and of a server-API key's requests.

use std::time::Duration;
use tokio::time::Instant;

#[derive(Debug, Clone)]
pub(crate) struct TokenBucket {
    rate: f64,
    capacity: f64,
    tokens: f64,
    at: Instant,
}

impl TokenBucket {
    /// Full, as of `now`. A rate or capacity of 0 counts as 1.
    pub(crate) fn new(rate: u32, capacity: u32, now: Instant) -> TokenBucket {
        let capacity = f64::from(capacity.max(1));
        TokenBucket { rate: f64::from(rate.max(1)), capacity, tokens: capacity, at: now }
    }

    /// Spends a token, or `Err(wait)`: how long until one is there again.
    pub(crate) fn take(&mut self, now: Instant) -> Result<(), Duration> {
        let refill = now.saturating_duration_since(self.at).as_secs_f64() * self.rate;
        self.tokens = (self.tokens + refill).min(self.capacity);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            return Ok(());
        }
        Err(Duration::from_secs_f64((1.0 - self.tokens) / self.rate))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_then_the_rate_and_never_more_than_the_capacity() {
        let start = Instant::now();
        let mut bucket = TokenBucket::new(2, 3, start);
        for _ in 0..3 {
            assert!(bucket.take(start).is_ok());
        }
        let wait = bucket.take(start).unwrap_err();
        assert!(wait > Duration::from_millis(490) && wait <= Duration::from_millis(500), "{wait:?}");
        assert!(bucket.take(start + Duration::from_millis(500)).is_ok());
        assert!(bucket.take(start + Duration::from_millis(500)).is_err());
        // Idle for long: back to the capacity, not beyond.
        let later = start + Duration::from_secs(60);
        for _ in 0..3 {
            assert!(bucket.take(later).is_ok());
        }
        assert!(bucket.take(later).is_err());
    }

    #[test]
    fn zero_counts_as_one() {
        let start = Instant::now();
        let mut bucket = TokenBucket::new(0, 0, start);
        assert!(bucket.take(start).is_ok());
        assert_eq!(bucket.take(start), Err(Duration::from_secs(1)));
    }
}
