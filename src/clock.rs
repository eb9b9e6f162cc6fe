//! Wall-clock time, the one place wsguard reads it: Unix seconds for tokens, revocations and
//! keys, Unix milliseconds for publications. Deadlines within a process use tokio's monotonic
//! clock instead (sockets, timeouts), which tests can pause.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// An `exp` for what never expires (the last second of 9999): far enough to be never, near enough
/// that deadlines computed from it do not overflow.
pub(crate) const NEVER: i64 = 253_402_300_799;

/// Unix seconds now (0 before 1970, which a sane clock never reports).
pub fn now_secs() -> i64 {
    since_epoch().as_secs() as i64
}

/// Unix milliseconds now.
pub fn now_ms() -> i64 {
    since_epoch().as_millis() as i64
}

/// How long until Unix second `at`, from now; zero once it has passed.
pub(crate) fn until(at: i64) -> Duration {
    let at = UNIX_EPOCH + Duration::from_secs(at.max(0) as u64);
    at.duration_since(SystemTime::now()).unwrap_or_default()
}

fn since_epoch() -> Duration {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_milliseconds_and_time_left_agree() {
        let (secs, ms) = (now_secs(), now_ms());
        assert!((ms / 1000 - secs).abs() <= 1);
        assert!(secs > 1_700_000_000, "a clock past 2023");
        assert_eq!(until(secs - 10), Duration::ZERO);
        let left = until(secs + 60);
        assert!(left > Duration::from_secs(58) && left <= Duration::from_secs(60), "{left:?}");
    }
}
