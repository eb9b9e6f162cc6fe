//! The scripts against a real Redis (127.0.0.1:6379), each test in a cluster of its own. Without
//! Redis they are skipped, unless CI or WSGUARD_REQUIRE_SERVICES is set: then they fail.

use super::*;
use crate::auth::throttle::tests::limits;
use crate::auth::throttle::{Counted, Throttle};
use redis::AsyncCommands;
use std::sync::atomic::{AtomicBool, Ordering};

const REDIS: &str = "127.0.0.1:6379";

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

fn required() -> bool {
    ["CI", "WSGUARD_REQUIRE_SERVICES"].iter().any(|name| {
        std::env::var(name)
            .is_ok_and(|v| !matches!(v.trim().to_ascii_lowercase().as_str(), "" | "0" | "false"))
    })
}

/// A cluster name of its own on the test Redis, and a plain connection to look at its keys.
struct Cluster {
    name: String,
    redis: redis::aio::MultiplexedConnection,
}

impl Cluster {
    /// `None` (the test is skipped) when Redis is not there and not required.
    async fn new() -> Option<Cluster> {
        let client = redis::Client::open(format!("redis://{REDIS}")).unwrap();
        match tokio::time::timeout(Duration::from_secs(2), client.get_multiplexed_async_connection()).await {
            Ok(Ok(redis)) => Some(Cluster { name: format!("t{}", uuid::Uuid::new_v4().simple()), redis }),
            _ if required() => panic!("Redis is not reachable at {REDIS}, and CI requires it"),
            _ => {
                eprintln!("skipping: Redis is not reachable at {REDIS}");
                None
            }
        }
    }

    async fn shared_via(&self, addr: &str) -> Shared {
        Shared::connect(&format!("redis://{addr}"), &self.name).await.unwrap()
    }

    async fn node(&self, limits: LoginLimits) -> Throttle {
        Throttle::shared(limits, self.shared_via(REDIS).await)
    }

    fn keys(&self, user: &str, addr: IpAddr) -> [String; 5] {
        Ticket::new(&format!("wsguard:{}:throttle:", self.name), user, addr).keys
    }

    /// `n` of each counter (pair, address, attempts, user); 0 when missing.
    async fn counts(&self, user: &str, addr: IpAddr) -> [i64; 4] {
        let mut redis = self.redis.clone();
        let mut counts = [0; 4];
        for (count, key) in counts.iter_mut().zip(&self.keys(user, addr)[..4]) {
            *count = redis.hget::<_, _, Option<i64>>(key, "n").await.unwrap().unwrap_or(0);
        }
        counts
    }

    async fn all_keys(&self) -> Vec<String> {
        let mut redis = self.redis.clone();
        redis.keys(format!("wsguard:{}:*", self.name)).await.unwrap()
    }

    async fn ttl_ms(&self, key: &str) -> i64 {
        let mut redis = self.redis.clone();
        redis::cmd("PTTL").arg(key).query_async(&mut redis).await.unwrap()
    }

    /// Runs `test` on two nodes of a cluster of its own, with the tests' limits, then removes the
    /// cluster's keys; skipped without Redis, as [`Cluster::new`] says.
    async fn two_nodes(test: impl AsyncFnOnce(&Cluster, Throttle, Throttle)) {
        let Some(cluster) = Cluster::new().await else { return };
        let (a, b) = (cluster.node(limits()).await, cluster.node(limits()).await);
        test(&cluster, a, b).await;
        cluster.clean().await;
    }

    async fn clean(self) {
        let mut redis = self.redis.clone();
        for key in self.all_keys().await {
            let _: () = redis.del(key).await.unwrap();
        }
    }
}

async fn counted(shared: &Shared, limits: &LoginLimits, user: &str, addr: IpAddr) -> Ticket {
    match shared.begin(limits, user, addr).await {
        Begun::Counted(ticket) => ticket,
        Begun::Wait(wait) => panic!("throttled for {wait:?}"),
        Begun::Unavailable => panic!("Redis unavailable"),
    }
}

#[tokio::test]
async fn failures_on_one_node_count_on_the_other() {
    Cluster::two_nodes(async |_, a, b| {
        let addr = ip("10.0.0.1");
        for node in [&a, &a, &b] {
            node.begin("bob", addr).await.expect("let through").failed();
        }
        for node in [&a, &b] {
            let wait = node.begin("bob", addr).await.err().expect("three failures fill the pair counter");
            assert!(
                wait > Duration::from_secs(58) && wait <= Duration::from_secs(60),
                "the window's rest: {wait:?}"
            );
        }
        assert!(b.begin("bob", ip("10.0.0.2")).await.is_ok(), "another address is not blocked");
        assert!(b.begin("bobby", addr).await.is_ok(), "another user from that address is not blocked");
    })
    .await;
}

#[tokio::test]
async fn attempts_in_flight_count_on_every_node_until_settled() {
    Cluster::two_nodes(async |cluster, a, b| {
        let addr = ip("10.0.0.1");
        let mut in_flight = Vec::new();
        for _ in 0..3 {
            in_flight.push(a.begin("bob", addr).await.expect("let through"));
        }
        assert!(b.begin("bob", addr).await.is_err(), "three guesses in flight on A fill the counter on B");
        drop(in_flight);
        // Taken back by spawned tasks: soon, not at once.
        let deadline = Instant::now() + Duration::from_secs(2);
        while cluster.counts("bob", addr).await != [0; 4] {
            assert!(Instant::now() < deadline, "unchecked attempts were not taken back");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(b.begin("bob", addr).await.is_ok());
    })
    .await;
}

#[tokio::test]
async fn a_success_takes_back_its_failures_but_not_its_check() {
    let Some(cluster) = Cluster::new().await else { return };
    let a = cluster.node(limits()).await;
    let addr = ip("10.0.0.1");
    a.begin("carol", addr).await.unwrap().failed();
    let attempt = a.begin("carol", addr).await.unwrap();
    assert_eq!(cluster.counts("carol", addr).await, [2, 2, 2, 2], "counted as a failure while in flight");
    attempt.succeeded().await;
    let [pair, address, attempts, user, known] = cluster.keys("carol", addr);
    assert_eq!(cluster.counts("carol", addr).await, [0, 1, 2, 1], "pair reset; the earlier failure stays");
    assert_eq!(cluster.ttl_ms(&pair).await, -2, "the pair counter is gone");
    for counter in [address, attempts, user] {
        let ttl = cluster.ttl_ms(&counter).await;
        assert!(ttl > 55_000 && ttl <= 60_000, "{counter}: a window of 60 s, {ttl} ms left");
    }
    let ttl = cluster.ttl_ms(&known).await;
    assert!(ttl > 29 * 24 * 3600 * 1000, "known for 30 days: {ttl} ms");
    for key in cluster.all_keys().await {
        assert!(cluster.ttl_ms(&key).await > 0, "{key} lives for ever");
    }
    cluster.clean().await;
}

#[tokio::test]
async fn a_known_address_is_exempt_from_the_users_counter_on_every_node() {
    Cluster::two_nodes(async |cluster, a, b| {
        let home = ip("10.0.0.1");
        a.begin("bob", home).await.unwrap().succeeded().await;
        for i in 0..4u8 {
            b.begin("bob", IpAddr::from([10, 1, 0, i])).await.unwrap().failed();
        }
        let wait = b.begin("bob", ip("10.2.0.1")).await.err().expect("the user counter is full");
        assert!(wait > Duration::from_secs(58) && wait <= Duration::from_secs(60), "{wait:?}");
        let attempt = b.begin("bob", home).await.expect("the known address still logs in, on the other node");
        assert_eq!(
            cluster.counts("bob", home).await[3],
            5,
            "and still counts against the user while in flight"
        );
        attempt.succeeded().await;
        assert!(a.begin("bob", home).await.is_ok());
    })
    .await;
}

#[tokio::test]
async fn settling_never_touches_a_window_that_started_later() {
    let Some(cluster) = Cluster::new().await else { return };
    let shared = cluster.shared_via(REDIS).await;
    let short = LoginLimits { login_window: Duration::from_millis(300), ..limits() };
    let addr = ip("10.0.0.1");
    let first = counted(&shared, &short, "bob", addr).await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    let second = counted(&shared, &short, "bob", addr).await;
    shared.settle(first, Outcome::Unchecked).await;
    assert_eq!(cluster.counts("bob", addr).await, [1; 4], "the first attempt's windows had ended");
    shared.settle(second, Outcome::Unchecked).await;
    assert_eq!(cluster.counts("bob", addr).await, [0; 4]);
    shared.settle(counted(&shared, &short, "bob", addr).await, Outcome::Succeeded).await;
    for key in cluster.all_keys().await {
        assert!(cluster.ttl_ms(&key).await > 0, "{key} lives for ever");
    }
    cluster.clean().await;
}

#[test]
fn keys_hold_no_username_and_cannot_collide() {
    let v6 = crate::auth::throttle::client_key(ip("2001:db8::1"));
    let alice = Ticket::new("wsguard:c:throttle:", "alice", v6).keys;
    let bob = Ticket::new("wsguard:c:throttle:", "bob", v6).keys;
    assert_eq!(alice[1], "wsguard:c:throttle:address:2001:db8::");
    assert_eq!(alice[2], "wsguard:c:throttle:attempts:2001:db8::");
    for key in &alice {
        assert!(!key.contains("alice"), "{key}");
    }
    for i in [0, 3, 4] {
        assert_ne!(alice[i], bob[i]);
    }
    // The parts are NUL-separated: where one ends and the next begins is never in doubt.
    assert_ne!(digest(&["ab", "c"]), digest(&["a", "bc"]));
    let names: std::collections::HashSet<&String> = alice.iter().collect();
    assert_eq!(names.len(), 5);
}

/// A TCP relay to Redis that can stall: from then on it forwards nothing and closes nothing, like
/// a Redis that hangs or a network that drops packets.
struct Stall {
    port: u16,
    stalled: Arc<AtomicBool>,
    stall: Arc<tokio::sync::Notify>,
}

impl Stall {
    async fn start() -> Stall {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (stalled, stall) = (Arc::new(AtomicBool::new(false)), Arc::new(tokio::sync::Notify::new()));
        let (flag, notify) = (stalled.clone(), stall.clone());
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let (flag, notify) = (flag.clone(), notify.clone());
                tokio::spawn(async move {
                    let stalled = notify.notified();
                    if !flag.load(Ordering::SeqCst) {
                        let mut outbound = tokio::net::TcpStream::connect(REDIS).await.unwrap();
                        tokio::select! {
                            _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => return,
                            _ = stalled => {}
                        }
                        let _held = outbound;
                    }
                    let _held = inbound;
                    std::future::pending::<()>().await;
                });
            }
        });
        Stall { port, stalled, stall }
    }

    fn stall(&self) {
        self.stalled.store(true, Ordering::SeqCst);
        self.stall.notify_waiters();
    }
}

#[tokio::test]
async fn a_redis_that_stops_answering_leaves_the_count_to_this_nodes_memory() {
    let Some(cluster) = Cluster::new().await else { return };
    let relay = Stall::start().await;
    let node = Throttle::shared(limits(), cluster.shared_via(&format!("127.0.0.1:{}", relay.port)).await);
    let addr = ip("10.0.0.1");
    let attempt = node.begin("bob", addr).await.unwrap();
    assert!(matches!(attempt.counted, Some(Counted::Shared(_))));
    attempt.failed();

    relay.stall();
    let started = Instant::now();
    let attempt = node.begin("bob", addr).await.expect("let through, not refused");
    assert!(started.elapsed() < TIMEOUT + Duration::from_millis(300), "waited {:?}", started.elapsed());
    assert!(matches!(attempt.counted, Some(Counted::Memory(_))), "counted in memory");
    attempt.failed();
    // The next logins do not wait for Redis again (one asks per second), and the limits hold here.
    for _ in 0..2 {
        let started = Instant::now();
        node.begin("bob", addr).await.expect("let through").failed();
        assert!(started.elapsed() < Duration::from_millis(100), "waited {:?}", started.elapsed());
    }
    let wait = node.begin("bob", addr).await.err().expect("three failures in memory fill the counter");
    assert!(wait > Duration::from_secs(58), "{wait:?}");
    assert!(node.begin("bob", ip("10.0.0.2")).await.is_ok(), "another address still logs in");
    assert_eq!(cluster.counts("bob", addr).await, [1; 4], "Redis kept what it had counted");
    cluster.clean().await;
}
