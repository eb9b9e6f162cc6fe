//! Login throttling, checked before any password is hashed. Failures are counted in fixed windows
//! per (user, client address), per client address, and per user over all addresses; a counter over
//! its limit answers 429 until its window ends, so a lockout never outlasts one window. An address
//! that has logged in as a user before ("known client") is exempt from that user's all-addresses
//! counter: failures elsewhere cannot lock the user out of their usual places.
//!
//! An attempt counts as a failure from the moment it is let through ([`Throttle::begin`]), before
//! its hash, and is settled after: so guesses sent at the same moment are counted while in
//! flight, and no more of them are checked than the limit allows.
//!
//! Where the counters live: in this node's memory ([`memory`]) on a single node; in Redis
//! ([`shared`]) with `--broker-url`, so that the limits hold for the whole cluster. While Redis is
//! unreachable (an error, or no answer within [`shared::TIMEOUT`]), this node's memory counters
//! stand in: logins go on, limited per node as on a single node, and a warning is logged once per
//! outage. Whichever counted an attempt settles it.

mod memory;
mod shared;

use crate::config::LoginLimits;
use memory::Memory;
pub(crate) use shared::Shared;
use shared::{Begun, Ticket};
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// How long a successful login keeps an address known for that user.
const KNOWN_FOR: Duration = Duration::from_secs(30 * 24 * 3600);

pub(crate) struct Throttle {
    limits: LoginLimits,
    /// The counters on a single node; with Redis, the stand-in while it is unreachable.
    memory: Memory,
    shared: Option<Shared>,
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
    /// Counters in this node's memory only.
    pub(crate) fn new(limits: LoginLimits) -> Throttle {
        Throttle { limits, memory: Memory::new(limits), shared: None }
    }

    /// Counters in Redis, shared by the cluster; this node's memory while Redis is unreachable.
    pub(crate) fn shared(limits: LoginLimits, shared: Shared) -> Throttle {
        Throttle { limits, memory: Memory::new(limits), shared: Some(shared) }
    }

    /// Lets a login attempt through, counted as a failure until settled, or `Err(retry_after)`
    /// when it must not even be checked. With Redis, one round trip (bounded by
    /// [`shared::TIMEOUT`]); never an error: an unreachable Redis leaves the count to this node.
    pub(crate) async fn begin(&self, username: &str, addr: IpAddr) -> Result<Attempt<'_>, Duration> {
        let pair = (username.to_owned(), client_key(addr));
        if let Some(shared) = &self.shared {
            match shared.begin(&self.limits, &pair.0, pair.1).await {
                Begun::Counted(ticket) => {
                    return Ok(Attempt { throttle: self, pair, counted: Some(Counted::Shared(ticket)) })
                }
                Begun::Wait(wait) => return Err(wait),
                Begun::Unavailable => {}
            }
        }
        self.begin_in_memory(pair, Instant::now())
    }

    fn begin_in_memory(&self, pair: (String, IpAddr), now: Instant) -> Result<Attempt<'_>, Duration> {
        let counted = self.memory.begin_at(&pair, now)?;
        Ok(Attempt { throttle: self, pair, counted: Some(Counted::Memory(counted)) })
    }
}

/// What an attempt was counted into, to be settled there.
enum Counted {
    Memory(memory::Counted),
    Shared(Ticket),
}

/// A login attempt let through by [`Throttle::begin`]: a failure until settled. Dropped unsettled
/// (the password was never checked: hashing busy, store down, request cancelled), it is taken
/// back: at once in memory, by a spawned task in Redis (dropping never waits).
pub(crate) struct Attempt<'a> {
    throttle: &'a Throttle,
    pair: (String, IpAddr),
    /// `None` once settled.
    counted: Option<Counted>,
}

impl Attempt<'_> {
    /// Wrong password or unknown user: the failure stays counted.
    pub(crate) fn failed(mut self) {
        self.counted = None;
    }

    /// The right password: its failure counts are taken back, the (user, address) counter is
    /// reset and the address becomes known for the user. Waits for Redis (at most
    /// [`shared::TIMEOUT`]), so that the client's next login finds the address known.
    pub(crate) async fn succeeded(mut self) {
        let pair = self.pair.clone();
        match self.counted.take() {
            Some(Counted::Memory(counted)) => {
                self.throttle.memory.succeeded_at(pair, counted, Instant::now())
            }
            Some(Counted::Shared(ticket)) => {
                if let Some(shared) = &self.throttle.shared {
                    shared.succeeded(ticket).await;
                }
            }
            None => {}
        }
    }
}

impl Drop for Attempt<'_> {
    fn drop(&mut self) {
        match self.counted.take() {
            Some(Counted::Memory(counted)) => self.throttle.memory.uncount(&self.pair, counted, true),
            Some(Counted::Shared(ticket)) => {
                if let Some(shared) = &self.throttle.shared {
                    shared.unchecked(ticket);
                }
            }
            None => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(super) fn limits() -> LoginLimits {
        LoginLimits {
            login_max_failures: 3,
            login_max_failures_per_address: 5,
            login_max_failures_per_user: 4,
            login_max_attempts_per_address: 8,
            login_window: Duration::from_secs(60),
        }
    }

    fn throttle() -> Throttle {
        Throttle::new(limits())
    }

    impl Throttle {
        fn begin_at(&self, user: &str, addr: IpAddr, now: Instant) -> Result<Attempt<'_>, Duration> {
            self.begin_in_memory((user.to_owned(), client_key(addr)), now)
        }
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

    #[tokio::test]
    async fn a_success_takes_back_its_own_count_only() {
        let t = throttle();
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let now = Instant::now();
        for user in ["u1", "u2", "u3", "u4"] {
            fail(&t, user, a, now);
        }
        t.begin_at("carol", a, now).expect("let through").succeeded().await;
        fail(&t, "u5", a, now);
        let wait = t.begin_at("u6", a, now).err().expect("the address counter holds the five failures");
        assert!(wait <= Duration::from_secs(60), "{wait:?}");
    }

    #[tokio::test]
    async fn right_passwords_count_against_the_address_too() {
        let t = throttle();
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let now = Instant::now();
        for _ in 0..8 {
            t.begin_at("carol", a, now).expect("let through").succeeded().await;
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

    #[tokio::test]
    async fn known_clients_are_exempt_from_the_users_counter() {
        let t = throttle();
        let home: IpAddr = "10.0.0.1".parse().unwrap();
        let now = Instant::now();
        t.begin_at("bob", home, now).expect("let through").succeeded().await;
        for i in 0..4u8 {
            fail(&t, "bob", IpAddr::from([10, 1, 0, i]), now);
        }
        let wait = t.begin_at("bob", IpAddr::from([10, 2, 0, 1]), now).err().expect("user counter is full");
        assert!(wait > Duration::ZERO && wait <= Duration::from_secs(60), "until the window ends: {wait:?}");
        assert!(t.begin_at("bob", home, now).is_ok(), "the known client still logs in");
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
