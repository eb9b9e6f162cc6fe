//! Several wsguard processes sharing one database and Redis behave as one: cross-node chat,
//! presence, revocation, a node's death, and a Redis restart.

use crate::helpers::{
    another_node, close_code, eventually, next_json, sample, send, service, spawn, Relay, Schema, Server, Ws,
    POSTGRES,
};
use serde_json::{json, Value};
use std::process::Stdio;
use std::time::{Duration, Instant};

const REDIS: &str = "127.0.0.1:6379";

/// Two nodes sharing a PostgreSQL schema of their own and Redis, in a cluster of their own.
async fn two_nodes(redis: &str, extra: &[&str]) -> (Server, Server, Schema) {
    let schema = Schema::create().await;
    let cluster = format!("--cluster=t{}", uuid::Uuid::new_v4().simple());
    let broker = format!("--broker-url=redis://{redis}");
    let database = format!("--database-url={}", schema.url());
    let mut args = vec![cluster.as_str(), broker.as_str(), database.as_str()];
    args.extend_from_slice(extra);
    let a = spawn(&args).await;
    let b = another_node(&a).await;
    (a, b, schema)
}

/// Redis and PostgreSQL answer (or, outside CI, the test is skipped).
/// Two nodes whose config holds one namespace (`fields`: its name and more), anyone subscribing
/// and subscribers publishing; the config's folder lives as long as the returned guard.
async fn two_nodes_with_namespace(fields: &str) -> (Server, Server, Schema, tempfile::TempDir) {
    let config = tempfile::tempdir().unwrap();
    let path = config.path().join("wsguard.toml");
    let namespace = format!("[[namespaces]]\n{fields}\nsubscribe = \"any\"\npublish = \"subscribers\"\n");
    std::fs::write(&path, namespace).unwrap();
    let config_arg = format!("--config={}", path.display());
    let (a, b, schema) = two_nodes(REDIS, &[&config_arg, "--max-messages-per-sec=1000"]).await;
    (a, b, schema, config)
}

/// John on node `a` and Jane on node `b`, each subscribed to `channel`.
async fn subscribed_on_both(a: &Server, b: &Server, channel: &str) -> Vec<Ws> {
    let mut sockets = Vec::new();
    for (node, user, password) in [(a, "johndoe", "secret"), (b, "janedoe", "secret2")] {
        let mut ws = chat(node, user, password).await;
        send(&mut ws, &json!({"type": "subscribe", "channel": channel}).to_string()).await;
        next_of(&mut ws, "subscribed", Duration::from_secs(5)).await;
        sockets.push(ws);
    }
    sockets
}

/// Waits until both nodes of `node`'s cluster subscribe to `channel` in Redis: a publication on
/// one reaches the other's sockets only then.
async fn until_subscribed_in_redis(node: &Server, channel: &str) {
    let cluster = node.arg("--cluster").expect("a node of a cluster");
    let name = format!("wsguard:{cluster}:room:{channel}");
    let client = redis::Client::open(format!("redis://{REDIS}")).unwrap();
    let mut redis = client.get_multiplexed_async_connection().await.unwrap();
    eventually(&format!("both nodes subscribed to {name}"), Duration::from_secs(5), async || {
        let (_, subscribers): (String, u64) =
            redis::cmd("PUBSUB").arg("NUMSUB").arg(&name).query_async(&mut redis).await.unwrap();
        if subscribers == 2 {
            Ok(())
        } else {
            Err(subscribers)
        }
    })
    .await;
}

fn services() -> bool {
    service("Redis", REDIS) && service("PostgreSQL", POSTGRES)
}

async fn chat(server: &Server, user: &str, password: &str) -> Ws {
    let pair = server.login(user, password).await;
    let mut ws = server.ws(&format!("/chat/ws?token={}", pair.access), &[]).await.unwrap();
    assert_eq!(next_json(&mut ws).await["type"], "welcome");
    ws
}

async fn next_of(ws: &mut Ws, kind: &str, within: Duration) -> Value {
    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::Message;
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, ws.next()).await {
            Ok(Some(Ok(Message::Text(text)))) => {
                let frame: Value = serde_json::from_str(&text).unwrap();
                if frame["type"] == kind {
                    return frame;
                }
            }
            Ok(Some(Ok(_))) => continue,
            Ok(other) => panic!("socket ended while waiting for {kind}: {other:?}"),
            Err(_) => panic!("no {kind} frame within {within:?}"),
        }
    }
}

/// `n` pings in one write.
async fn pings(ws: &mut Ws, n: usize) {
    use futures_util::SinkExt;
    use tokio_tungstenite::tungstenite::Message;
    for _ in 0..n {
        ws.feed(Message::text(json!({"type": "ping"}).to_string())).await.unwrap();
    }
    ws.flush().await.unwrap();
}

async fn gap_fills(server: &Server) -> f64 {
    let metrics = server.http.get(server.url("/metrics")).send().await.unwrap().text().await.unwrap();
    sample(&metrics, "wsguard_gap_fills_total")
}

async fn join(ws: &mut Ws, room: &str) -> Vec<String> {
    send(ws, &json!({"type": "join", "room": room}).to_string()).await;
    let members = next_of(ws, "members", Duration::from_secs(5)).await;
    next_of(ws, "history", Duration::from_secs(5)).await;
    members["users"].as_array().unwrap().iter().map(|u| u.as_str().unwrap().to_owned()).collect()
}

async fn presence_of(ws: &mut Ws, user: &str, within: Duration) -> String {
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let frame = next_of(ws, "presence", left).await;
        if frame["user"] == user {
            return frame["event"].as_str().unwrap().to_owned();
        }
    }
}

#[tokio::test]
async fn a_message_sent_on_one_node_reaches_the_other_once_and_in_order() {
    if !services() {
        return;
    }
    let (a, b, schema) = two_nodes(REDIS, &["--max-messages-per-sec=1000"]).await;
    let mut john = chat(&a, "johndoe", "secret").await;
    let mut jane = chat(&b, "janedoe", "secret2").await;
    join(&mut john, "general").await;
    let members = join(&mut jane, "general").await;
    assert_eq!(members, ["janedoe", "johndoe"], "members of both nodes");
    assert_eq!(presence_of(&mut john, "janedoe", Duration::from_secs(3)).await, "join");

    let mut acked = Vec::new();
    for i in 0..20 {
        send(
            &mut john,
            &json!({"type": "send", "room": "general", "text": format!("m{i}"), "ref": i.to_string()})
                .to_string(),
        )
        .await;
        acked.push(next_of(&mut john, "ack", Duration::from_secs(5)).await["id"].as_i64().unwrap());
    }
    let mut received = Vec::new();
    while received.len() < 20 {
        let message = next_of(&mut jane, "message", Duration::from_secs(5)).await;
        assert_eq!(message["from"], "johndoe");
        received.push(message["id"].as_i64().unwrap());
    }
    assert_eq!(received, acked, "in order, each once");
    // Nothing more: no duplicate from a second subscription.
    let extra = tokio::time::timeout(
        Duration::from_millis(500),
        next_of(&mut jane, "message", Duration::from_secs(1)),
    )
    .await;
    assert!(extra.is_err(), "duplicate delivery: {extra:?}");

    drop(jane);
    assert_eq!(presence_of(&mut john, "janedoe", Duration::from_secs(3)).await, "leave");
    schema.drop().await;
}

#[tokio::test]
async fn logout_and_disable_on_one_node_close_sockets_on_the_other() {
    if !services() {
        return;
    }
    let (a, b, schema) = two_nodes(REDIS, &[]).await;
    let pair = a.login("johndoe", "secret").await;
    let bearer = format!("Bearer {}", pair.access);
    let mut on_b = b.ws("/secured-ws", &[("authorization", &bearer)]).await.unwrap();
    crate::helpers::next_text(&mut on_b).await;
    let started = Instant::now();
    assert_eq!(a.http.post(a.url("/logout")).bearer_auth(&pair.access).send().await.unwrap().status(), 204);
    assert_eq!(close_code(&mut on_b, Duration::from_secs(1)).await.0, 4003);
    assert!(started.elapsed() < Duration::from_secs(1));

    let jane = b.login("janedoe", "secret2").await;
    let bearer = format!("Bearer {}", jane.access);
    let mut jane_a = a.ws("/secured-ws", &[("authorization", &bearer)]).await.unwrap();
    let mut jane_b = b.ws("/secured-ws", &[("authorization", &bearer)]).await.unwrap();
    crate::helpers::next_text(&mut jane_a).await;
    crate::helpers::next_text(&mut jane_b).await;
    assert!(a.cli(&["user", "disable", "janedoe"], "").await.status.success());
    assert_eq!(close_code(&mut jane_a, Duration::from_secs(1)).await.0, 4003);
    assert_eq!(close_code(&mut jane_b, Duration::from_secs(1)).await.0, 4003);
    schema.drop().await;
}

#[tokio::test]
async fn a_dead_nodes_members_leave_within_bounded_time() {
    if !services() {
        return;
    }
    let (a, b, schema) = two_nodes(REDIS, &[]).await;
    let mut john = chat(&a, "johndoe", "secret").await;
    let mut jane = chat(&b, "janedoe", "secret2").await;
    join(&mut john, "r").await;
    join(&mut jane, "r").await;
    assert_eq!(presence_of(&mut john, "janedoe", Duration::from_secs(3)).await, "join");

    let started = Instant::now();
    b.kill().await;
    // Liveness key TTL (10 s) + one heartbeat (3 s) bounds it.
    assert_eq!(presence_of(&mut john, "janedoe", Duration::from_secs(16)).await, "leave");
    eprintln!("dead node's member left after {:?}", started.elapsed());
    let mut fresh = chat(&a, "johndoe", "secret").await;
    assert_eq!(join(&mut fresh, "r").await, ["johndoe"]);
    schema.drop().await;
}

/// A Redis of this test's own, so that restarting it disturbs no other test.
struct OwnRedis {
    port: u16,
    child: Option<tokio::process::Child>,
}

impl OwnRedis {
    async fn start() -> OwnRedis {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut redis = OwnRedis { port, child: None };
        redis.restart().await;
        redis
    }

    fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    async fn restart(&mut self) {
        let child = tokio::process::Command::new("redis-server")
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("redis-server (Debian package redis-server) must be installed");
        self.child = Some(child);
        eventually("redis-server to listen", Duration::from_secs(5), async || {
            std::net::TcpStream::connect(self.addr())
        })
        .await;
    }

    async fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().await.unwrap();
        }
    }
}

#[tokio::test]
async fn a_redis_restart_loses_no_acked_message_and_fan_out_resumes() {
    if !services() {
        return;
    }
    let mut redis = OwnRedis::start().await;
    let (a, b, schema) = two_nodes(&redis.addr(), &["--max-messages-per-sec", "100000"]).await;
    let mut john = chat(&a, "johndoe", "secret").await;
    let mut jane = chat(&b, "janedoe", "secret2").await;
    join(&mut john, "r").await;
    join(&mut jane, "r").await;

    redis.stop().await;
    // Redis is gone: sending still stores and acks, the sockets stay open, and the sender's node
    // delivers to its own sockets, which never waited for Redis.
    let mut during = Vec::new();
    for i in 0..3 {
        send(
            &mut john,
            &json!({"type": "send", "room": "r", "text": format!("during {i}"), "ref": i.to_string()})
                .to_string(),
        )
        .await;
        let (mut acked, mut delivered) = (None, None);
        while acked.is_none() || delivered.is_none() {
            let frame = tokio::time::timeout(Duration::from_secs(10), next_json(&mut john)).await.unwrap();
            match frame["type"].as_str() {
                Some("ack") => acked = frame["id"].as_i64(),
                Some("message") => delivered = frame["id"].as_i64(),
                _ => {}
            }
        }
        assert_eq!(acked, delivered, "delivered on the sender's node while Redis is down");
        during.push(acked.unwrap());
    }
    let ready = a.http.get(a.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 503);
    assert_eq!(ready.json::<Value>().await.unwrap()["broker"], "unavailable");

    redis.restart().await;
    // The nodes reconnect on their own; fan-out resumes, and the first message that reaches jane
    // brings the ones she missed during the outage, fetched from the store, in order. She keeps
    // sending frames all the while: each one that comes in while her socket waits on that fetch
    // must not start it over.
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut seen = Vec::new();
    let resumed = loop {
        assert!(Instant::now() < deadline, "fan-out did not resume");
        send(&mut john, &json!({"type": "send", "room": "r", "text": "after", "ref": "x"}).to_string()).await;
        // A window per attempt: until fan-out resumes, what john sends now never reaches jane
        // live, so no condition can end it early.
        let wait = tokio::time::Instant::now() + Duration::from_millis(700);
        let mut tick = tokio::time::interval(Duration::from_millis(2));
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(wait) => break,
                _ = tick.tick() => pings(&mut jane, 5).await,
                message = next_of(&mut jane, "message", Duration::from_secs(1)) => {
                    seen.push(message["id"].as_i64().unwrap());
                }
            }
        }
        let id = next_of(&mut john, "ack", Duration::from_secs(5)).await["id"].as_i64().unwrap();
        if seen.last() == Some(&id) {
            break id;
        }
    };
    assert!(resumed > during[2]);
    assert!(seen.windows(2).all(|w| w[1] == w[0] + 1), "in order, each once: {seen:?}");
    assert!(during.iter().all(|id| seen.contains(id)), "missed during the outage: {seen:?}");
    // One gap, one fetch: on jane's node only, however many frames she sent meanwhile.
    assert_eq!(gap_fills(&b).await, 1.0);
    assert_eq!(gap_fills(&a).await, 0.0, "the sender's node delivered its own in order");
    assert_eq!(a.http.get(a.url("/readyz")).send().await.unwrap().status(), 200);

    // What was acked during the outage is in history.
    send(&mut jane, &json!({"type": "history", "room": "r", "limit": 100}).to_string()).await;
    let history = next_of(&mut jane, "history", Duration::from_secs(5)).await;
    let ids: Vec<i64> =
        history["messages"].as_array().unwrap().iter().map(|m| m["id"].as_i64().unwrap()).collect();
    for id in during {
        assert!(ids.contains(&id), "acked message {id} lost");
    }
    // Presence is rebuilt from the nodes' own state.
    let mut late = chat(&b, "janedoe", "secret2").await;
    eventually("presence rebuilt with johndoe", Duration::from_secs(8), async || {
        let members = join(&mut late, "r").await;
        if members.contains(&"johndoe".to_owned()) {
            Ok(())
        } else {
            Err(members)
        }
    })
    .await;
    schema.drop().await;
}

#[tokio::test]
async fn a_postgres_outage_answers_503_and_service_resumes() {
    if !services() {
        return;
    }
    let schema = Schema::create().await;
    let relay = Relay::start(POSTGRES).await;
    let database = format!("--database-url={}", schema.url_via(&format!("127.0.0.1:{}", relay.port)));
    let server = spawn(&[database.as_str()]).await;
    let pair = server.login("johndoe", "secret").await;
    let mut ws = chat(&server, "janedoe", "secret2").await;
    join(&mut ws, "r").await;
    // Another login of jane's: a token the socket has not seen, to refresh to.
    let later = server.login("janedoe", "secret2").await;

    relay.cut();
    // Past the principal cache (1 s), requests that need the database answer 503. Time must
    // pass: until the cache expires, answering from it is right.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let me = server.me(&pair.access).await;
    assert_eq!(me.status(), 503);
    assert!(me.json::<Value>().await.unwrap()["detail"].as_str().unwrap().contains("unavailable"));
    let login = server.token_form(&[("username", "johndoe"), ("password", "secret")]).await;
    assert_eq!(login.status(), 503);
    let ready = server.http.get(server.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 503);
    assert_eq!(ready.json::<Value>().await.unwrap()["store"], "unavailable");
    send(&mut ws, &json!({"type": "send", "room": "r", "text": "lost?", "ref": "1"}).to_string()).await;
    let error = next_of(&mut ws, "error", Duration::from_secs(10)).await;
    assert_eq!(error["code"], "unavailable", "not acked: not stored");
    // An in-band refresh needs the login's state: not a verdict on the token, the client may retry.
    send(&mut ws, &json!({"type": "refresh", "token": later.access}).to_string()).await;
    let refused = next_of(&mut ws, "error", Duration::from_secs(10)).await;
    assert_eq!(refused["code"], "unavailable", "{refused}");
    assert_eq!(server.http.get(server.url("/healthz")).send().await.unwrap().status(), 200, "alive");

    relay.restore();
    eventually("service to resume", Duration::from_secs(15), async || {
        match server.me(&pair.access).await.status() {
            reqwest::StatusCode::OK => Ok(()),
            status => Err(status),
        }
    })
    .await;
    assert_eq!(server.http.get(server.url("/readyz")).send().await.unwrap().status(), 200);
    send(&mut ws, &json!({"type": "send", "room": "r", "text": "back", "ref": "2"}).to_string()).await;
    assert_eq!(next_of(&mut ws, "ack", Duration::from_secs(5)).await["ref"], "2");
    send(&mut ws, &json!({"type": "refresh", "token": later.access}).to_string()).await;
    assert!(next_of(&mut ws, "refreshed", Duration::from_secs(5)).await["exp"].is_i64(), "the socket stayed");
    assert!(!server.log().contains("panicked"), "nothing panicked");
    schema.drop().await;
}

#[tokio::test]
async fn publications_from_both_nodes_reach_subscribers_on_both_in_offset_order() {
    if !services() {
        return;
    }
    let (a, b, schema, _config) = two_nodes_with_namespace("name = \"room\"").await;
    const EACH: i64 = 40;
    let mut sockets = subscribed_on_both(&a, &b, "room:x").await;
    // Both subscribed on both nodes before anyone publishes.
    until_subscribed_in_redis(&a, "room:x").await;
    // Each socket's publications in one write: each node takes them as one batch (one commit,
    // one fan-out, one pipeline to Redis).
    for ws in &mut sockets {
        use futures_util::SinkExt;
        for i in 0..EACH {
            let frame = json!({"type": "publish", "channel": "room:x", "data": i, "ref": i.to_string()});
            ws.feed(tokio_tungstenite::tungstenite::Message::Text(frame.to_string().into())).await.unwrap();
        }
        ws.flush().await.unwrap();
    }
    for ws in &mut sockets {
        let (mut acked, mut received) = (Vec::new(), Vec::new());
        while acked.len() < EACH as usize || received.len() < 2 * EACH as usize {
            let frame = next_json(ws).await;
            match frame["type"].as_str() {
                Some("ack") => acked.push(frame["offset"].as_i64().unwrap()),
                Some("publication") => received.push(frame["offset"].as_i64().unwrap()),
                _ => {}
            }
        }
        assert!(acked.windows(2).all(|w| w[0] < w[1]), "one socket's publications in its order");
        assert_eq!(received, (1..=2 * EACH).collect::<Vec<_>>(), "every publication once, in offset order");
    }
    drop((a, b));
    schema.drop().await;
}

#[tokio::test]
async fn unnumbered_publications_from_both_nodes_reach_everyone_in_one_order() {
    if !services() {
        return;
    }
    let (a, b, schema, _config) = two_nodes_with_namespace("name = \"live\"\nhistory_size = 0").await;
    const EACH: usize = 40;
    let mut sockets = subscribed_on_both(&a, &b, "live:x").await;
    until_subscribed_in_redis(&a, "live:x").await;
    // Both nodes publish at once, interleaved.
    for i in 0..EACH {
        for (n, ws) in sockets.iter_mut().enumerate() {
            let frame = json!({"type": "publish", "channel": "live:x", "data": format!("{n}-{i}")});
            send(ws, &frame.to_string()).await;
        }
    }
    let mut orders = Vec::new();
    for ws in &mut sockets {
        let mut received = Vec::new();
        while received.len() < 2 * EACH {
            let frame = next_json(ws).await;
            if frame["type"] == "publication" {
                assert!(frame["offset"].is_null() || frame.get("offset").is_none(), "{frame}");
                received.push(frame["data"].as_str().unwrap().to_owned());
            }
        }
        orders.push(received);
    }
    assert_eq!(orders[0], orders[1], "both nodes' sockets see one order");
    let mut all = orders[0].clone();
    all.sort();
    all.dedup();
    assert_eq!(all.len(), 2 * EACH, "every publication once");
    drop((a, b));
    schema.drop().await;
}
