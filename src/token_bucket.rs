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
        // An instant read before another take's (two requests racing to the lock) must not move
        // the bucket back, or that span would refill twice.
        self.at = self.at.max(now);
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

    /// On a paused clock: a full bucket spends its burst at once, then each refusal's wait is what
    /// it takes for the next token (to the nanosecond: the wait is rounded from a fraction of a
    /// second), refused until then; idle time refills up to the capacity only.
    #[tokio::test(start_paused = true)]
    async fn the_wait_a_refusal_answers_is_when_the_next_token_is_there() {
        let nanos = Duration::from_nanos;
        for (rate, capacity) in [(1, 1), (2, 3), (3, 3), (5, 1), (7, 20), (1000, 10)] {
            let case = format!("{rate}/s, capacity {capacity}");
            let mut bucket = TokenBucket::new(rate, capacity, Instant::now());
            for _ in 0..capacity {
                assert!(bucket.take(Instant::now()).is_ok(), "{case}: the burst");
            }
            for round in 0..3 {
                let wait = bucket.take(Instant::now()).unwrap_err();
                // 1/rate, less the few nanoseconds' worth left over from the rounds before.
                let expected = Duration::from_secs(1) / rate;
                assert!(wait.abs_diff(expected) <= nanos(1000), "{case}, round {round}: {wait:?}");
                tokio::time::advance(wait - nanos(1000)).await;
                let left = bucket.take(Instant::now()).unwrap_err();
                assert!(left <= nanos(1001), "{case}, round {round}: refused early, {left:?} left");
                tokio::time::advance(nanos(1001)).await;
                assert!(bucket.take(Instant::now()).is_ok(), "{case}, round {round}: the token is back");
            }
            tokio::time::advance(Duration::from_secs(3600)).await;
            for _ in 0..capacity {
                assert!(bucket.take(Instant::now()).is_ok(), "{case}: refilled");
            }
            assert!(bucket.take(Instant::now()).is_err(), "{case}: not beyond the capacity");
        }
    }

    /// A refused take keeps the time it refilled: two half-waits make one token.
    #[tokio::test(start_paused = true)]
    async fn refusals_keep_what_has_refilled() {
        let mut bucket = TokenBucket::new(1, 1, Instant::now());
        assert!(bucket.take(Instant::now()).is_ok());
        tokio::time::advance(Duration::from_millis(600)).await;
        assert_eq!(bucket.take(Instant::now()), Err(Duration::from_millis(400)));
        tokio::time::advance(Duration::from_millis(400)).await;
        assert!(bucket.take(Instant::now()).is_ok());
    }

    /// An instant older than the last take (callers may read the clock before taking a lock)
    /// refills nothing, and does not move the bucket back: the span after it is not refilled
    /// twice.
    #[test]
    fn an_earlier_instant_refills_nothing() {
        let start = Instant::now();
        let mut bucket = TokenBucket::new(10, 1, start);
        let later = start + Duration::from_secs(5);
        assert!(bucket.take(later).is_ok());
        assert_eq!(bucket.take(start), Err(Duration::from_millis(100)));
        // 50 ms after `later`: half a token, not what 5 s after `start` would refill.
        assert!(bucket.take(later + Duration::from_millis(50)).is_err());
    }

    #[test]
    fn zero_counts_as_one() {
        let start = Instant::now();
        let mut bucket = TokenBucket::new(0, 0, start);
        assert!(bucket.take(start).is_ok());
        assert_eq!(bucket.take(start), Err(Duration::from_secs(1)));
    }
}
