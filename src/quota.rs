//! Budgets per key over a fixed window: how much one user may store in a day. Kept in this node's
//! memory (unlike the login throttle's counters, which Redis shares): with several nodes, each
//! grants its own budget.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;

/// Keys tracked at most; beyond it expired ones go first, then the least used one.
const MAX_KEYS: usize = 100_000;

pub(crate) struct Quota {
    limit: u64,
    window: Duration,
    used: Mutex<HashMap<String, (Instant, u64)>>,
}

impl Quota {
    pub(crate) fn new(limit: u64, window: Duration) -> Quota {
        Quota { limit, window, used: Mutex::default() }
    }

    /// Takes `amount` from `key`'s budget, or `Err(wait)` until its window ends when it would go
    /// over (nothing is taken then).
    pub(crate) fn take(&self, key: &str, amount: u64) -> Result<(), Duration> {
        self.take_at(key, amount, Instant::now())
    }

    fn take_at(&self, key: &str, amount: u64, now: Instant) -> Result<(), Duration> {
        let mut used = self.used.lock().unwrap_or_else(|e| e.into_inner());
        if used.len() >= MAX_KEYS && !used.contains_key(key) {
            used.retain(|_, (start, _)| *start + self.window > now);
            if used.len() >= MAX_KEYS {
                let least = used.iter().min_by_key(|(_, (_, spent))| *spent).map(|(k, _)| k.clone());
                if let Some(least) = least {
                    used.remove(&least);
                }
            }
        }
        let (start, spent) = used.entry(key.to_owned()).or_insert((now, 0));
        if *start + self.window <= now {
            (*start, *spent) = (now, 0);
        }
        if spent.saturating_add(amount) > self.limit {
            return Err(*start + self.window - now);
        }
        *spent += amount;
        Ok(())
    }

    /// Gives back what `take` took for something that was not stored after all.
    pub(crate) fn give_back(&self, key: &str, amount: u64) {
        let mut used = self.used.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, spent)) = used.get_mut(key) {
            *spent = spent.saturating_sub(amount);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_budget_holds_for_its_window_then_renews() {
        let quota = Quota::new(10, Duration::from_secs(60));
        let now = Instant::now();
        assert!(quota.take_at("alice", 6, now).is_ok());
        assert_eq!(quota.take_at("alice", 5, now + Duration::from_secs(20)), Err(Duration::from_secs(40)));
        assert!(quota.take_at("alice", 4, now).is_ok(), "what fits still goes");
        assert!(quota.take_at("bob", 10, now).is_ok(), "each key has its own");
        assert!(quota.take_at("alice", 10, now + Duration::from_secs(60)).is_ok(), "a new window");
        quota.give_back("bob", 10);
        assert!(quota.take_at("bob", 10, now).is_ok(), "given back");
    }

    // `take` reads std's clock, which tokio's paused time does not drive: these tests pass the
    // instants to `take_at` instead.

    /// The window runs from a key's first take; its end is the first instant of the next one.
    #[test]
    fn the_wait_runs_to_the_windows_end_and_a_refusal_takes_nothing() {
        let (second, window) = (Duration::from_secs(1), Duration::from_secs(60));
        let quota = Quota::new(10, window);
        let start = Instant::now();
        assert!(quota.take_at("k", 8, start + 5 * second).is_ok());
        for (at, amount, expected) in [
            (5, 3, Err(window)),
            (30, 3, Err(35 * second)),
            (64, 3, Err(second)),
            (30, 2, Ok(())),           // a refusal took nothing: 2 still fit
            (40, 1, Err(25 * second)), // and now nothing does
            (65, 10, Ok(())),          // the next window begins at the end of the first
            (66, 1, Err(59 * second)), // and runs from there
        ] {
            assert_eq!(quota.take_at("k", amount, start + at * second), expected, "{amount} at {at} s");
        }
    }

    #[test]
    fn more_than_the_limit_never_fits_and_nothing_overflows() {
        let quota = Quota::new(10, Duration::from_secs(60));
        let now = Instant::now();
        assert_eq!(quota.take_at("k", 11, now), Err(Duration::from_secs(60)));
        assert!(quota.take_at("k", 10, now).is_ok(), "the refusal took nothing");
        assert!(quota.take_at("k", u64::MAX, now).is_err());
        quota.give_back("k", u64::MAX);
        quota.give_back("nobody", 5);
        assert!(quota.take_at("k", 10, now).is_ok(), "given back down to zero, not below");
        assert!(quota.take_at("k", 1, now).is_err());
    }

    /// Full, the table forgets expired keys first and, only when none has expired, the key that
    /// spent least (whose budget renews early: the cost of the bound).
    #[test]
    fn a_full_table_drops_expired_keys_first_then_the_least_spent() {
        let window = Duration::from_secs(60);
        let quota = Quota::new(10, window);
        let start = Instant::now();
        let half = start + window / 2;
        // Half the keys taken at the start (expired at the end of the window), half later; one
        // later key has spent least.
        for i in 0..MAX_KEYS - 1 {
            let at = if i % 2 == 0 { start } else { half };
            assert!(quota.take_at(&format!("key-{i}"), 2, at).is_ok());
        }
        assert!(quota.take_at("light", 1, half).is_ok());
        let end = start + window;
        assert!(quota.take_at("new", 2, end).is_ok());
        assert_eq!(quota.used.lock().unwrap().len(), MAX_KEYS / 2 + 1, "the expired ones went");
        assert!(quota.take_at("light", 10, end).is_err(), "a live key keeps what it spent");
        assert!(quota.take_at("key-1", 9, end).is_err(), "a live key keeps what it spent");

        // Full again with live keys only: the least spent one goes.
        for i in 0..MAX_KEYS {
            assert!(quota.take_at(&format!("more-{i}"), 2, end).is_ok());
            if quota.used.lock().unwrap().len() == MAX_KEYS {
                break;
            }
        }
        assert!(quota.take_at("newest", 2, end).is_ok());
        assert_eq!(quota.used.lock().unwrap().len(), MAX_KEYS);
        assert!(!quota.used.lock().unwrap().contains_key("light"), "the least spent went");
        assert!(quota.take_at("light", 10, end).is_ok(), "and its budget starts afresh");
    }
}
