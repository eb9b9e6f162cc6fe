//! Login throttling, checked before any password is hashed. Failures are counted in fixed windows
//! per (user, client address), per client address, and per user over all addresses; a counter over
//! its limit answers 429 until its window ends, so a lockout never outlasts one window. An address
//! that has logged in as a user before ("known client") is exempt from that user's all-addresses
//! counter: failures elsewhere cannot lock the user out of their usual places.

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

    fn fail(&mut self, key: K, window: Duration, now: Instant) {
        if self.0.len() >= MAX_ENTRIES && !self.0.contains_key(&key) {
            self.0.retain(|_, w| w.start + window > now);
            if self.0.len() >= MAX_ENTRIES {
                // Still full of live entries: forget the lot rather than grow without end.
                tracing::warn!("login throttle table full; counters reset");
                self.0.clear();
            }
        }
        let entry = self.0.entry(key).or_insert(Window { start: now, failures: 0 });
        if entry.start + window <= now {
            *entry = Window { start: now, failures: 0 };
        }
        entry.failures = entry.failures.saturating_add(1);
    }
}

struct State {
    pairs: Counters<(String, IpAddr)>,
    addresses: Counters<IpAddr>,
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
                users: Counters::new(),
                known: HashMap::new(),
            }),
        }
    }

    /// `Err(retry_after)` when this login attempt must not even be checked.
    pub(crate) fn check(&self, username: &str, addr: IpAddr) -> Result<(), Duration> {
        self.check_at(username, addr, Instant::now())
    }

    fn check_at(&self, username: &str, addr: IpAddr, now: Instant) -> Result<(), Duration> {
        let addr = client_key(addr);
        let l = self.limits;
        let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let pair = (username.to_owned(), addr);
        let known = state.known.get(&pair).is_some_and(|until| *until > now);
        let waits = [
            state.pairs.blocked(&pair, l.login_max_failures, l.login_window, now),
            state.addresses.blocked(&addr, l.login_max_failures_per_address, l.login_window, now),
            if known {
                None
            } else {
                state.users.blocked(&pair.0, l.login_max_failures_per_user, l.login_window, now)
            },
        ];
        match waits.into_iter().flatten().max() {
            Some(wait) => Err(wait),
            None => Ok(()),
        }
    }

    /// Wrong password or unknown user.
    pub(crate) fn failed(&self, username: &str, addr: IpAddr) {
        self.failed_at(username, addr, Instant::now())
    }

    fn failed_at(&self, username: &str, addr: IpAddr, now: Instant) {
        let addr = client_key(addr);
        let window = self.limits.login_window;
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.pairs.fail((username.to_owned(), addr), window, now);
        state.addresses.fail(addr, window, now);
        state.users.fail(username.to_owned(), window, now);
    }

    /// The right password: this address becomes known for the user, and its own counter is reset.
    /// The address and user counters stay, so one good account cannot launder guesses at others.
    pub(crate) fn succeeded(&self, username: &str, addr: IpAddr) {
        self.succeeded_at(username, addr, Instant::now())
    }

    fn succeeded_at(&self, username: &str, addr: IpAddr, now: Instant) {
        let pair = (username.to_owned(), client_key(addr));
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
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

    fn throttle() -> Throttle {
        Throttle::new(LoginLimits {
            login_max_failures: 3,
            login_max_failures_per_address: 5,
            login_max_failures_per_user: 4,
            login_window: Duration::from_secs(60),
        })
    }

    #[test]
    fn failures_block_until_the_window_ends() {
        let t = throttle();
        let (a, b) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        let start = Instant::now();
        for _ in 0..3 {
            assert!(t.check_at("bob", a, start).is_ok());
            t.failed_at("bob", a, start);
        }
        let wait = t.check_at("bob", a, start + Duration::from_secs(10)).unwrap_err();
        assert_eq!(wait, Duration::from_secs(50));
        assert!(t.check_at("bob", b, start).is_ok(), "another address is not blocked");
        assert!(t.check_at("bob", a, start + Duration::from_secs(60)).is_ok(), "bounded in time");
    }

    #[test]
    fn known_clients_are_exempt_from_the_users_counter() {
        let t = throttle();
        let home: IpAddr = "10.0.0.1".parse().unwrap();
        let now = Instant::now();
        t.succeeded_at("bob", home, now);
        for i in 0..4u8 {
            t.failed_at("bob", IpAddr::from([10, 1, 0, i]), now);
        }
        let wait = t.check_at("bob", IpAddr::from([10, 2, 0, 1]), now).expect_err("user counter is full");
        assert!(wait > Duration::ZERO && wait <= Duration::from_secs(60), "until the window ends: {wait:?}");
        assert!(t.check_at("bob", home, now).is_ok(), "the known client still logs in");
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
