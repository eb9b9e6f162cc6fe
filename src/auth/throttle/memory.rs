//! This node's own counters: the whole throttle on a single node, and the stand-in for the shared
//! ones while Redis is unreachable. Bounded in size: beyond [`MAX_ENTRIES`] per map, expired entries
//! go first, then the quietest one.

use super::KNOWN_FOR;
use crate::config::LoginLimits;
use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Entries per map; beyond it expired entries are dropped first (bounded memory under a flood).
const MAX_ENTRIES: usize = 100_000;

/// The windows an attempt was counted into: (user, address), address, user, attempts.
pub(super) type Counted = [Instant; 4];

#[derive(Clone, Copy)]
struct Window {
    start: Instant,
    failures: u32,
}

/// Counters of one kind, bounded in size.
struct Counters<K>(HashMap<K, Window>);

impl<K: Hash + Eq> Counters<K> {
    fn new() -> Self {
        Counters(HashMap::new())
    }

    /// Time until `key` may try again, when it is over `limit`.
    fn blocked(&self, key: &K, limit: u32, window: Duration, now: Instant) -> Option<Duration> {
        let entry = self.0.get(key)?;
        let ends = entry.start + window;
        (entry.failures >= limit && ends > now).then(|| ends - now)
    }

    /// Counts one failure of `key`; returns the start of the window it went into.
    fn fail(&mut self, key: K, window: Duration, now: Instant) -> Instant {
        self.fail_within(key, window, now, MAX_ENTRIES)
    }

    fn fail_within(&mut self, key: K, window: Duration, now: Instant, max_entries: usize) -> Instant {
        if self.0.len() >= max_entries && !self.0.contains_key(&key) {
            self.0.retain(|_, w| w.start + window > now);
            if self.0.len() >= max_entries {
                // Still full of live entries: drop one that tells least (fewest failures), never
                // the lot, so that many addresses cannot reset everyone's counters.
                let least = self.0.values().map(|w| w.failures).min().unwrap_or(0);
                let mut dropped = false;
                self.0.retain(|_, w| {
                    let keep = dropped || w.failures != least;
                    dropped |= !keep;
                    keep
                });
            }
        }
        let entry = self.0.entry(key).or_insert(Window { start: now, failures: 0 });
        if entry.start + window <= now {
            *entry = Window { start: now, failures: 0 };
        }
        entry.failures = entry.failures.saturating_add(1);
        entry.start
    }

    /// Takes back a failure counted into the window that started at `start`.
    fn unfail(&mut self, key: &K, start: Instant) {
        if let Some(entry) = self.0.get_mut(key) {
            if entry.start == start {
                entry.failures = entry.failures.saturating_sub(1);
            }
        }
    }
}

struct State {
    pairs: Counters<(String, IpAddr)>,
    addresses: Counters<IpAddr>,
    /// Every password check of an address, right or wrong: never taken back on success.
    attempts: Counters<IpAddr>,
    users: Counters<String>,
    known: HashMap<(String, IpAddr), Instant>,
}

pub(super) struct Memory {
    limits: LoginLimits,
    state: Mutex<State>,
}

impl Memory {
    pub(super) fn new(limits: LoginLimits) -> Memory {
        Memory {
            limits,
            state: Mutex::new(State {
                pairs: Counters::new(),
                addresses: Counters::new(),
                attempts: Counters::new(),
                users: Counters::new(),
                known: HashMap::new(),
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Counts an attempt of `pair` (its address already a [`client_key`](super::client_key)) as a
    /// failure, or `Err(retry_after)` when a counter is over its limit.
    pub(super) fn begin_at(&self, pair: &(String, IpAddr), now: Instant) -> Result<Counted, Duration> {
        let l = self.limits;
        let mut state = self.lock();
        let known = state.known.get(pair).is_some_and(|until| *until > now);
        let waits = [
            state.pairs.blocked(pair, l.login_max_failures, l.login_window, now),
            state.addresses.blocked(&pair.1, l.login_max_failures_per_address, l.login_window, now),
            state.attempts.blocked(&pair.1, l.login_max_attempts_per_address, l.login_window, now),
            if known {
                None
            } else {
                state.users.blocked(&pair.0, l.login_max_failures_per_user, l.login_window, now)
            },
        ];
        if let Some(wait) = waits.into_iter().flatten().max() {
            return Err(wait);
        }
        Ok([
            state.pairs.fail(pair.clone(), l.login_window, now),
            state.addresses.fail(pair.1, l.login_window, now),
            state.users.fail(pair.0.clone(), l.login_window, now),
            state.attempts.fail(pair.1, l.login_window, now),
        ])
    }

    /// Takes back what `begin_at` counted as a failure; the attempt itself too when `unchecked`
    /// (the password was never checked).
    pub(super) fn uncount(&self, pair: &(String, IpAddr), counted: Counted, unchecked: bool) {
        drop(self.uncounted(pair, counted, unchecked));
    }

    fn uncounted(&self, pair: &(String, IpAddr), counted: Counted, unchecked: bool) -> MutexGuard<'_, State> {
        let mut state = self.lock();
        state.pairs.unfail(pair, counted[0]);
        state.addresses.unfail(&pair.1, counted[1]);
        state.users.unfail(&pair.0, counted[2]);
        if unchecked {
            state.attempts.unfail(&pair.1, counted[3]);
        }
        state
    }

    /// The right password: this address becomes known for the user, and its own counter is reset.
    /// The address and user counters keep earlier failures, so one good account cannot launder
    /// guesses at others.
    pub(super) fn succeeded_at(&self, pair: (String, IpAddr), counted: Counted, now: Instant) {
        let mut state = self.uncounted(&pair, counted, false);
        state.pairs.0.remove(&pair);
        if state.known.len() >= MAX_ENTRIES && !state.known.contains_key(&pair) {
            state.known.retain(|_, until| *until > now);
            if state.known.len() >= MAX_ENTRIES {
                return;
            }
        }
        state.known.insert(pair, now + KNOWN_FOR);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_table_drops_one_quiet_entry_not_every_counter() {
        let mut counters = Counters::new();
        let (window, now) = (Duration::from_secs(60), Instant::now());
        for _ in 0..5 {
            counters.fail_within("attacked", window, now, 3);
        }
        counters.fail_within("a", window, now, 3);
        counters.fail_within("b", window, now, 3);
        counters.fail_within("c", window, now, 3);
        assert_eq!(counters.0.len(), 3);
        assert_eq!(counters.blocked(&"attacked", 5, window, now).map(|w| w.as_secs()), Some(60), "kept");
    }
}
