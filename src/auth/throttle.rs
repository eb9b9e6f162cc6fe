//! Login throttling, checked before any password is hashed. Failures are counted in fixed windows
//! per (user, client address), per client address, and per user over all addresses; a counter over
//! its limit answers 429 until its window ends, so a lockout never outlasts one window. An address
//! that has logged in as a user before ("known client") is exempt from that user's all-addresses
//! counter: failures elsewhere cannot lock the user out of their usual places.
//!
//! An attempt counts as a failure from the moment it is let through ([`Throttle::begin`]), before
//! its hash, and is settled after: so guesses sent at the same moment are counted while in
//! flight, and no more of them are checked than the limit allows.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Entries per map; beyond it expired entries are dropped first (bounded memory under a flood).
const MAX_ENTRIES: usize = 100_000;
/// How long a successful login keeps an address known for that user.
const KNOWN_FOR: Duration = Duration::from_secs(30 * 24 * 3600);

use crate::config::LoginLimits;

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

pub(crate) struct Throttle {
    limits: LoginLimits,
    state: Mutex<State>,
}

/// The client address as counted: IPv6 by /64, since one host usually holds the whole prefix.
pub(crate) fn client_key(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V6(v6) if v6.to_ipv4_mapped().is_none() => {
            let bits = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(bits.into())
        }
        IpAddr::V6(v6) => IpAddr::V4(v6.to_ipv4_mapped().expect("checked")),
        v4 => v4,
    }
}

impl Throttle {
    pub(crate) fn new(limits: LoginLimits) -> Throttle {
        Throttle {
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

    /// Lets a login attempt through, counted as a failure until settled, or `Err(retry_after)`
    /// when it must not even be checked.
    pub(crate) fn begin(&self, username: &str, addr: IpAddr) -> Result<Attempt<'_>, Duration> {
        self.begin_at(username, addr, Instant::now())
    }

    fn begin_at(&self, username: &str, addr: IpAddr, now: Instant) -> Result<Attempt<'_>, Duration> {
        let addr = client_key(addr);
        let l = self.limits;
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let pair = (username.to_owned(), addr);
        let known = state.known.get(&pair).is_some_and(|until| *until > now);
        let waits = [
            state.pairs.blocked(&pair, l.login_max_failures, l.login_window, now),
            state.addresses.blocked(&addr, l.login_max_failures_per_address, l.login_window, now),
            state.attempts.blocked(&addr, l.login_max_attempts_per_address, l.login_window, now),
            if known {
                None
            } else {
                state.users.blocked(&pair.0, l.login_max_failures_per_user, l.login_window, now)
            },
        ];
        if let Some(wait) = waits.into_iter().flatten().max() {
            return Err(wait);
        }
        let counted = [
            state.pairs.fail(pair.clone(), l.login_window, now),
            state.addresses.fail(addr, l.login_window, now),
            state.users.fail(pair.0.clone(), l.login_window, now),
            state.attempts.fail(addr, l.login_window, now),
        ];
        Ok(Attempt { throttle: self, pair, counted, settled: false })
    }

    /// Takes back what `begin` counted as a failure; the attempt itself too when `unchecked`
    /// (the password was never checked).
    fn uncount(
        &self,
        pair: &(String, IpAddr),
        counted: [Instant; 4],
        unchecked: bool,
    ) -> std::sync::MutexGuard<'_, State> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
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
    fn succeeded_at(&self, pair: (String, IpAddr), counted: [Instant; 4], now: Instant) {
        let mut state = self.uncount(&pair, counted, false);
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

/// A login attempt let through by [`Throttle::begin`]: a failure until settled. Dropped unsettled
/// (the password was never checked: hashing busy, store down), it is taken back.
pub(crate) struct Attempt<'a> {
    throttle: &'a Throttle,
    pair: (String, IpAddr),
    counted: [Instant; 4],
    settled: bool,
}

impl Attempt<'_> {
    /// Wrong password or unknown user: the failure stays counted.
    pub(crate) fn failed(mut self) {
        self.settled = true;
    }

    /// The right password.
    pub(crate) fn succeeded(mut self) {
        self.settled = true;
        self.throttle.succeeded_at(self.pair.clone(), self.counted, Instant::now());
    }
}

impl Drop for Attempt<'_> {
    fn drop(&mut self) {
        if !self.settled {
            drop(self.throttle.uncount(&self.pair, self.counted, true));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn throttle() -> Throttle {
        Throttle::new(LoginLimits {
            login_max_failures: 3,
            login_max_failures_per_address: 5,
            login_max_failures_per_user: 4,
            login_max_attempts_per_address: 8,
            login_window: Duration::from_secs(60),
        })
    }

    fn fail(t: &Throttle, user: &str, addr: IpAddr, now: Instant) {
        t.begin_at(user, addr, now).expect("let through").failed();
    }

    #[test]
    fn failures_block_until_the_window_ends() {
        let t = throttle();
        let (a, b) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        let start = Instant::now();
        for _ in 0..3 {
            fail(&t, "bob", a, start);
        }
        let wait = t.begin_at("bob", a, start + Duration::from_secs(10)).err().expect("blocked");
        assert_eq!(wait, Duration::from_secs(50));
        assert!(t.begin_at("bob", b, start).is_ok(), "another address is not blocked");
        assert!(t.begin_at("bob", a, start + Duration::from_secs(60)).is_ok(), "bounded in time");
    }

    #[test]
    fn attempts_in_flight_count_until_settled() {
        let t = throttle();
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let now = Instant::now();
        let in_flight: Vec<Attempt> =
            (0..3).map(|_| t.begin_at("bob", a, now).expect("let through")).collect();
        assert!(t.begin_at("bob", a, now).is_err(), "three guesses in flight fill the counter");
        drop(in_flight);
        assert!(t.begin_at("bob", a, now).is_ok(), "unchecked attempts are taken back");
    }

    #[test]
    fn a_success_takes_back_its_own_count_only() {
        let t = throttle();
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let now = Instant::now();
        for user in ["u1", "u2", "u3", "u4"] {
            fail(&t, user, a, now);
        }
        t.begin_at("carol", a, now).expect("let through").succeeded();
        fail(&t, "u5", a, now);
        let wait = t.begin_at("u6", a, now).err().expect("the address counter holds the five failures");
        assert!(wait <= Duration::from_secs(60), "{wait:?}");
    }

    #[test]
    fn right_passwords_count_against_the_address_too() {
        let t = throttle();
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let now = Instant::now();
        for _ in 0..8 {
            t.begin_at("carol", a, now).expect("let through").succeeded();
        }
        assert!(t.begin_at("carol", a, now).is_err(), "eight checks fill the address's attempts");
        assert!(t.begin_at("carol", "10.0.0.2".parse().unwrap(), now).is_ok(), "another address");
        drop(t.begin_at("dave", "10.0.0.3".parse().unwrap(), now));
        for _ in 0..8 {
            drop(
                t.begin_at("dave", "10.0.0.3".parse().unwrap(), now).expect("unchecked ones are taken back"),
            );
        }
    }

    #[test]
    fn known_clients_are_exempt_from_the_users_counter() {
        let t = throttle();
        let home: IpAddr = "10.0.0.1".parse().unwrap();
        let now = Instant::now();
        t.begin_at("bob", home, now).expect("let through").succeeded();
        for i in 0..4u8 {
            fail(&t, "bob", IpAddr::from([10, 1, 0, i]), now);
        }
        let wait = t.begin_at("bob", IpAddr::from([10, 2, 0, 1]), now).err().expect("user counter is full");
        assert!(wait > Duration::ZERO && wait <= Duration::from_secs(60), "until the window ends: {wait:?}");
        assert!(t.begin_at("bob", home, now).is_ok(), "the known client still logs in");
    }

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

    #[test]
    fn ipv6_counts_by_prefix() {
        let a: IpAddr = "2001:db8::1".parse().unwrap();
        let b: IpAddr = "2001:db8::2".parse().unwrap();
        assert_eq!(client_key(a), client_key(b));
        let mapped: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        assert_eq!(client_key(mapped), "10.0.0.1".parse::<IpAddr>().unwrap());
    }
}
