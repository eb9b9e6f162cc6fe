//! Budgets per key over a fixed window: how much one user may store in a day. Kept in this node's
//! memory (unlike the login throttle's counters, which Redis shares): with several nodes, each
//! grants its own budget.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

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
}
