//! The login throttle across nodes: with Redis, its counters are the cluster's; while Redis is
//! unreachable, each node counts on its own and logins go on.

use crate::helpers::{another_node, eventually, service, spawn, Relay, Schema, Server, POSTGRES};
use reqwest::StatusCode;
use std::net::IpAddr;
use std::time::{Duration, Instant};

const REDIS: &str = "127.0.0.1:6379";
/// What a node logs, once, when Redis stops answering the throttle.
const UNREACHABLE: &str = "login throttle: Redis unreachable";
const BACK: &str = "login throttle: Redis answers again";

fn services() -> bool {
    service("Redis", REDIS) && service("PostgreSQL", POSTGRES)
}

/// Two nodes of a cluster of their own, sharing a PostgreSQL schema and the Redis at `redis`.
struct Cluster {
    a: Server,
    b: Server,
    schema: Schema,
    name: String,
}

impl Cluster {
    async fn start(redis: &str, extra: &[&str]) -> Cluster {
        let schema = Schema::create().await;
        let name = format!("t{}", uuid::Uuid::new_v4().simple());
        let (cluster, broker) = (format!("--cluster={name}"), format!("--broker-url=redis://{redis}"));
        let database = format!("--database-url={}", schema.url());
        let mut args = vec![cluster.as_str(), broker.as_str(), database.as_str()];
        args.extend_from_slice(extra);
        let a = spawn(&args).await;
        let b = another_node(&a).await;
        Cluster { a, b, schema, name }
    }

    /// Drops the schema and the cluster's keys (a known address would stay for 30 days).
    async fn end(self) {
        self.schema.drop().await;
        let client = redis::Client::open(format!("redis://{REDIS}")).unwrap();
        let mut redis = client.get_multiplexed_async_connection().await.unwrap();
        let keys: Vec<String> =
            redis::cmd("KEYS").arg(format!("wsguard:{}:*", self.name)).query_async(&mut redis).await.unwrap();
        if !keys.is_empty() {
            redis::cmd("DEL").arg(keys).query_async::<()>(&mut redis).await.unwrap();
        }
    }
}

/// A client whose connections come from `ip` (any 127.0.0.0/8 address reaches the server).
fn from(ip: &str) -> reqwest::Client {
    reqwest::Client::builder().local_address(ip.parse::<IpAddr>().unwrap()).build().unwrap()
}

async fn token(server: &Server, client: &reqwest::Client, username: &str, password: &str) -> StatusCode {
    let response = client
        .post(server.url("/token"))
        .form(&[("username", username), ("password", password)])
        .send()
        .await
        .unwrap();
    if response.status() == StatusCode::TOO_MANY_REQUESTS {
        let retry_after: u64 = response.headers()["retry-after"].to_str().unwrap().parse().unwrap();
        assert!((1..=600).contains(&retry_after), "Retry-After {retry_after}");
    }
    response.status()
}

#[tokio::test]
async fn failures_on_one_node_count_on_the_other() {
    if !services() {
        return;
    }
    let cluster = Cluster::start(REDIS, &["--login-max-failures=3", "--login-window=10m"]).await;
    let (a, b, attacker) = (&cluster.a, &cluster.b, from("127.0.0.2"));
    for node in [a, a, b] {
        assert_eq!(token(node, &attacker, "johndoe", "guess").await, StatusCode::UNAUTHORIZED);
    }
    // The limit is the cluster's: three failures in all, whichever nodes saw them.
    for node in [a, b] {
        assert_eq!(token(node, &attacker, "johndoe", "secret").await, StatusCode::TOO_MANY_REQUESTS);
    }
    // The user, from elsewhere, is not locked out.
    assert_eq!(token(b, &from("127.0.0.3"), "johndoe", "secret").await, StatusCode::OK);
    cluster.end().await;
}

#[tokio::test]
async fn a_known_address_stays_exempt_from_the_users_counter_on_another_node() {
    if !services() {
        return;
    }
    let cluster = Cluster::start(
        REDIS,
        &["--login-max-failures=3", "--login-max-failures-per-user=4", "--login-window=10m"],
    )
    .await;
    let (a, b, home) = (&cluster.a, &cluster.b, from("127.0.0.2"));
    assert_eq!(token(a, &home, "johndoe", "secret").await, StatusCode::OK);
    // Failures spread over addresses and nodes fill the user's counter.
    for (node, ip) in [(a, "127.0.0.3"), (a, "127.0.0.3"), (b, "127.0.0.4"), (b, "127.0.0.4")] {
        assert_eq!(token(node, &from(ip), "johndoe", "guess").await, StatusCode::UNAUTHORIZED);
    }
    for node in [a, b] {
        assert_eq!(token(node, &from("127.0.0.5"), "johndoe", "secret").await, StatusCode::TOO_MANY_REQUESTS);
    }
    // The address that logged in on A is known on B too.
    for node in [b, a, b] {
        assert_eq!(token(node, &home, "johndoe", "secret").await, StatusCode::OK);
    }
    cluster.end().await;
}

#[tokio::test]
async fn logins_go_on_under_each_nodes_own_limits_while_redis_is_cut() {
    if !services() {
        return;
    }
    let relay = Relay::start(REDIS).await;
    let via = format!("127.0.0.1:{}", relay.port);
    let cluster = Cluster::start(&via, &["--login-max-failures=3", "--login-window=10m"]).await;
    let (a, b, attacker) = (&cluster.a, &cluster.b, from("127.0.0.2"));
    // Shared while Redis answers: two failures in all.
    for node in [a, b] {
        assert_eq!(token(node, &attacker, "johndoe", "guess").await, StatusCode::UNAUTHORIZED);
    }

    relay.cut();
    // A counts on its own now, from zero: three failures there, then 429. No 5xx, no hang.
    for expected in [StatusCode::UNAUTHORIZED, StatusCode::UNAUTHORIZED, StatusCode::UNAUTHORIZED] {
        let started = Instant::now();
        assert_eq!(token(a, &attacker, "johndoe", "guess").await, expected);
        assert!(started.elapsed() < Duration::from_secs(3), "a login waited {:?}", started.elapsed());
    }
    assert_eq!(token(a, &attacker, "johndoe", "secret").await, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(token(a, &from("127.0.0.3"), "johndoe", "secret").await, StatusCode::OK, "others log in");
    assert_eq!(token(b, &from("127.0.0.3"), "janedoe", "secret2").await, StatusCode::OK);
    // The two nodes write to one log (one data folder): each warned once for this outage.
    assert_eq!(a.log().matches(UNREACHABLE).count(), 2, "once per node and outage: {}", a.log());

    relay.restore();
    // Both nodes reconnect on their own: the next logins find Redis again.
    eventually("the throttle finding Redis again on both nodes", Duration::from_secs(20), async || {
        if a.log().matches(BACK).count() >= 2 {
            return Ok(());
        }
        for node in [a, b] {
            assert_eq!(token(node, &from("127.0.0.9"), "janedoe", "secret2").await, StatusCode::OK);
        }
        Err(a.log())
    })
    .await;
    assert_eq!(a.log().matches(UNREACHABLE).count(), 2, "no warning while Redis came back");
    // Shared again, with what Redis had: a third failure on A fills the counter on B.
    assert_eq!(token(a, &attacker, "johndoe", "guess").await, StatusCode::UNAUTHORIZED);
    assert_eq!(token(b, &attacker, "johndoe", "secret").await, StatusCode::TOO_MANY_REQUESTS);
    assert!(!a.log().contains("panicked") && !b.log().contains("panicked"));
    cluster.end().await;
}
