//! Webhooks, end to end: real wsguard processes and a real HTTP endpoint that answers, fails
//! (500) or refuses connections; events in order, signed, kept across a restart, once per
//! cluster; and a bad `[webhooks]` refused at start.

use crate::helpers::{
    another_node, eventually, next_json, sample, send, serve_in, serve_refused, service, spawn, Schema,
    Server, Ws, POSTGRES,
};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tempfile::TempDir;

const SECRET: &str = "5d1f0c0b7a2e49d88c3f6a1b2e4d7c90aa31f2c4e5b6d7e8f9a0b1c2d3e4f5a6";
const REDIS: &str = "127.0.0.1:6379";

/// The application's webhook endpoint on a port of its own: answers with `status`, or is down
/// (the port refuses connections); records every POST and what it answered.
struct Endpoint {
    addr: SocketAddr,
    state: Arc<EndpointState>,
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

#[derive(Default)]
struct EndpointState {
    status: Mutex<u16>,
    posts: Mutex<Vec<(HeaderMap, Bytes, u16)>>,
}

impl Endpoint {
    async fn start() -> Endpoint {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = Endpoint {
            addr: listener.local_addr().unwrap(),
            state: Arc::new(EndpointState { status: Mutex::new(204), ..EndpointState::default() }),
            task: Mutex::default(),
        };
        endpoint.serve(listener);
        endpoint
    }

    fn serve(&self, listener: tokio::net::TcpListener) {
        let app = axum::Router::new()
            .route("/rt/hooks", axum::routing::post(receive))
            .with_state(self.state.clone());
        let task = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        *self.task.lock().unwrap() = Some(task);
    }

    fn url(&self) -> String {
        format!("http://{}/rt/hooks", self.addr)
    }

    fn answer(&self, status: u16) {
        *self.state.status.lock().unwrap() = status;
    }

    /// Closes the port: connections are refused.
    fn down(&self) {
        if let Some(task) = self.task.lock().unwrap().take() {
            task.abort();
        }
    }

    async fn up(&self) {
        let listener = eventually("the endpoint's port again", Duration::from_secs(5), async || {
            tokio::net::TcpListener::bind(self.addr).await.map_err(|e| e.to_string())
        })
        .await;
        self.serve(listener);
    }

    /// The POSTs answered with `status`.
    fn posts(&self, status: u16) -> Vec<(HeaderMap, Bytes)> {
        let posts = self.state.posts.lock().unwrap();
        posts.iter().filter(|(_, _, s)| *s == status).map(|(h, b, _)| (h.clone(), b.clone())).collect()
    }

    /// The events acknowledged so far, as `name channel user`, in the order received; checks
    /// every POST's signature and headers on the way.
    fn delivered(&self) -> Vec<String> {
        let mut events = Vec::new();
        for (headers, body) in self.posts(204) {
            assert_eq!(headers["content-type"], "application/json");
            let signature = headers["x-wsguard-signature"].to_str().unwrap();
            let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
            mac.update(&body);
            assert_eq!(signature, hex::encode(mac.finalize().into_bytes()), "signed with the secret");
            let body: Value = serde_json::from_slice(&body).unwrap();
            assert!(body["time_ms"].as_i64().unwrap() > 1_700_000_000_000, "{body}");
            for event in body["events"].as_array().unwrap() {
                let user = event.get("user").and_then(Value::as_str).unwrap_or("-");
                events.push(format!(
                    "{} {} {user} #{}",
                    event["name"].as_str().unwrap(),
                    event["channel"].as_str().unwrap(),
                    event["id"]
                ));
            }
        }
        events
    }

    /// Waits until `count` events are acknowledged: them, without their ids, which must all differ.
    async fn until_delivered(&self, count: usize, within: Duration) -> Vec<String> {
        let events =
            eventually(&format!("{count} events delivered"), within, async || match self.delivered() {
                events if events.len() >= count => Ok(events),
                events => Err(events),
            })
            .await;
        let ids: std::collections::BTreeSet<&str> =
            events.iter().map(|e| e.rsplit_once(" #").unwrap().1).collect();
        assert_eq!(ids.len(), events.len(), "none twice: {events:?}");
        events.iter().map(|e| e.rsplit_once(" #").unwrap().0.to_owned()).collect()
    }
}

async fn receive(State(state): State<Arc<EndpointState>>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let status = *state.status.lock().unwrap();
    state.posts.lock().unwrap().push((headers, body, status));
    StatusCode::from_u16(status).unwrap()
}

/// A file only its owner may read, as secret files must be.
fn private_file(dir: &Path, name: &str, contents: &str) -> PathBuf {
    let path = dir.join(name);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(&path).unwrap().write_all(contents.as_bytes()).unwrap();
    path
}

/// A configuration with `doc` (presence) and `news` (none), and `[webhooks]` posting to `url`
/// with `extra` lines; its folder, and the `--config` argument.
fn config(url: &str, extra: &str) -> (TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let secret = private_file(dir.path(), "hooks.secret", SECRET);
    let file = format!(
        "[[namespaces]]\nname = \"doc\"\nsubscribe = \"any\"\npresence = true\n\n\
         [[namespaces]]\nname = \"news\"\nsubscribe = \"any\"\n\n\
         [webhooks]\nurl = \"{url}\"\nsecret_file = \"{}\"\ntimeout = \"1s\"\n{extra}",
        secret.display()
    );
    let path = dir.path().join("wsguard.toml");
    std::fs::write(&path, file).unwrap();
    let arg = format!("--config={}", path.display());
    (dir, arg)
}

async fn connect(server: &Server, user: &str, password: &str) -> Ws {
    let pair = server.login(user, password).await;
    let mut ws = server.ws(&format!("/connect?token={}", pair.access), &[]).await.unwrap();
    assert_eq!(next_json(&mut ws).await["type"], "welcome");
    ws
}

/// Subscribes to `channel`, waiting for the answer (presence frames skipped).
async fn subscribe(ws: &mut Ws, channel: &str) {
    send(ws, &json!({"type": "subscribe", "channel": channel}).to_string()).await;
    assert_eq!(answer(ws).await["type"], "subscribed");
}

/// Unsubscribes from `channel`, which has no answer: a command answered after it (an error)
/// tells that it was done.
async fn unsubscribe(ws: &mut Ws, channel: &str) {
    send(ws, &json!({"type": "unsubscribe", "channel": channel}).to_string()).await;
    send(ws, &json!({"type": "unsubscribe", "channel": "doc:never"}).to_string()).await;
    assert_eq!(answer(ws).await["type"], "error");
}

async fn answer(ws: &mut Ws) -> Value {
    loop {
        let frame = next_json(ws).await;
        if frame["type"] != "presence" {
            return frame;
        }
    }
}

const SECOND: Duration = Duration::from_secs(1);

#[tokio::test]
async fn joining_and_leaving_are_posted_in_order_and_signed() {
    let endpoint = Endpoint::start().await;
    let (_dir, config) = config(&endpoint.url(), "");
    let server = spawn(&[&config]).await;
    let mut john = connect(&server, "johndoe", "secret").await;
    let mut jane = connect(&server, "janedoe", "secret2").await;
    subscribe(&mut john, "doc:1").await;
    subscribe(&mut jane, "doc:1").await;
    // A second socket of a user already there is no event.
    let mut john_again = connect(&server, "johndoe", "secret").await;
    subscribe(&mut john_again, "doc:1").await;
    unsubscribe(&mut john, "doc:1").await;
    unsubscribe(&mut john_again, "doc:1").await;
    // Her socket closes in its own time: the order across channels is not promised, only within one.
    drop(jane);
    endpoint.until_delivered(6, 10 * SECOND).await;
    // Without presence: the channel's events only.
    subscribe(&mut john, "news:1").await;
    unsubscribe(&mut john, "news:1").await;

    let events = endpoint.until_delivered(8, 10 * SECOND).await;
    assert_eq!(
        events,
        [
            "channel_occupied doc:1 -",
            "presence_join doc:1 johndoe",
            "presence_join doc:1 janedoe",
            "presence_leave doc:1 johndoe",
            "presence_leave doc:1 janedoe",
            "channel_vacated doc:1 -",
            "channel_occupied news:1 -",
            "channel_vacated news:1 -",
        ]
    );
    let metrics = server.http.get(server.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(sample(&metrics, "wsguard_webhook_deliveries_total{outcome=\"ok\"}") >= 1.0);
    assert_eq!(sample(&metrics, "wsguard_webhook_events_total{result=\"recorded\"}"), 8.0);
    assert_eq!(sample(&metrics, "wsguard_webhook_events_total{result=\"delivered\"}"), 8.0);
    eventually("an empty queue in /metrics", 3 * SECOND, async || {
        let metrics = server.http.get(server.url("/metrics")).send().await.unwrap().text().await.unwrap();
        match sample(&metrics, "wsguard_webhook_queue_depth") {
            0.0 => Ok(()),
            depth => Err(depth),
        }
    })
    .await;
}

/// The application down (500, then refusing connections) while events happen and wsguard is
/// stopped (SIGTERM) and started again: once it is back, every event arrives, in order, once.
/// `max_retry_interval = "1s"` stands in for the default 30 s cap, so the outage (about 6 s here)
/// spans as many retries, relative to the cap, as a minute would by default.
#[tokio::test]
async fn an_endpoint_down_across_a_restart_gets_every_event_once_in_order() {
    let endpoint = Endpoint::start().await;
    endpoint.answer(500);
    let (_dir, config) = config(&endpoint.url(), "max_retry_interval = \"1s\"\n");
    let server = spawn(&[&config]).await;
    let mut john = connect(&server, "johndoe", "secret").await;
    subscribe(&mut john, "doc:1").await;
    unsubscribe(&mut john, "doc:1").await;
    eventually("a POST answered 500", 5 * SECOND, async || match endpoint.posts(500).len() {
        0 => Err(0),
        n => Ok(n),
    })
    .await;
    endpoint.down();
    // Jane is still in doc:2 when the server stops: she leaves with it.
    let mut jane = connect(&server, "janedoe", "secret2").await;
    subscribe(&mut jane, "doc:2").await;
    tokio::time::sleep(SECOND).await;
    let metrics = server.http.get(server.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(sample(&metrics, "wsguard_webhook_deliveries_total{outcome=\"status\"}") >= 1.0);
    assert!(sample(&metrics, "wsguard_webhook_deliveries_total{outcome=\"unreachable\"}") >= 1.0);
    assert_eq!(sample(&metrics, "wsguard_webhook_queue_depth"), 6.0);
    assert!(sample(&metrics, "wsguard_webhook_oldest_event_age_seconds") >= 1.0);
    let log = server.log();
    assert!(log.contains("webhooks: a delivery failed") && log.contains(&endpoint.url()), "{log}");
    assert!(!log.contains(SECRET), "the secret is never logged");

    let data = server.data.clone();
    let mut server = server;
    assert_eq!(unsafe { libc::kill(server.pid() as i32, libc::SIGTERM) }, 0);
    assert!(server.exit_status(15 * SECOND).await.success());
    drop((john, jane));
    let server = serve_in(data, &[&config]).await;
    let mut john = connect(&server, "johndoe", "secret").await;
    subscribe(&mut john, "doc:3").await;
    tokio::time::sleep(2 * SECOND).await;
    assert!(endpoint.posts(204).is_empty(), "nothing acknowledged yet");

    endpoint.answer(204);
    endpoint.up().await;
    let events = endpoint.until_delivered(10, 5 * SECOND).await;
    assert_eq!(
        events,
        [
            "channel_occupied doc:1 -",
            "presence_join doc:1 johndoe",
            "presence_leave doc:1 johndoe",
            "channel_vacated doc:1 -",
            "channel_occupied doc:2 -",
            "presence_join doc:2 janedoe",
            "presence_leave doc:2 janedoe",
            "channel_vacated doc:2 -",
            "channel_occupied doc:3 -",
            "presence_join doc:3 johndoe",
        ]
    );
    tokio::time::sleep(SECOND).await;
    assert_eq!(endpoint.delivered().len(), 10, "none twice");
}

/// A node that crashes (SIGKILL) with a user in a channel: its next start says the user left and
/// the channel was vacated.
#[tokio::test]
async fn users_of_a_crashed_node_leave_at_its_next_start() {
    let endpoint = Endpoint::start().await;
    let (_dir, config) = config(&endpoint.url(), "");
    let server = spawn(&[&config]).await;
    let mut john = connect(&server, "johndoe", "secret").await;
    subscribe(&mut john, "doc:1").await;
    endpoint.until_delivered(2, 10 * SECOND).await;
    let _server = server.restart().await;
    let events = endpoint.until_delivered(4, 10 * SECOND).await;
    assert_eq!(events[2..], ["presence_leave doc:1 johndoe", "channel_vacated doc:1 -"]);
}

/// Two nodes on one PostgreSQL and Redis: John on one and Jane on the other in one channel make
/// one occupation and one vacating, and every event is posted once, by one node.
#[tokio::test]
async fn two_nodes_record_and_post_each_event_once() {
    if !service("PostgreSQL", POSTGRES) || !service("Redis", REDIS) {
        return;
    }
    let endpoint = Endpoint::start().await;
    let (_dir, config) = config(&endpoint.url(), "");
    let schema = Schema::create().await;
    let cluster = format!("--cluster=t{}", uuid::Uuid::new_v4().simple());
    let broker = format!("--broker-url=redis://{REDIS}");
    let database = format!("--database-url={}", schema.url());
    let a = spawn(&[&cluster, &broker, &database, &config]).await;
    let b = another_node(&a).await;
    let mut john = connect(&a, "johndoe", "secret").await;
    let mut jane = connect(&b, "janedoe", "secret2").await;
    // At once: whichever node records first occupies the channel.
    tokio::join!(subscribe(&mut john, "doc:1"), subscribe(&mut jane, "doc:1"));
    let events = endpoint.until_delivered(3, 10 * SECOND).await;
    let joins: std::collections::BTreeSet<&str> = events[1..].iter().map(String::as_str).collect();
    assert_eq!(events[0], "channel_occupied doc:1 -");
    assert_eq!(joins, ["presence_join doc:1 janedoe", "presence_join doc:1 johndoe"].into());
    unsubscribe(&mut john, "doc:1").await;
    endpoint.until_delivered(4, 10 * SECOND).await;
    unsubscribe(&mut jane, "doc:1").await;
    let events = endpoint.until_delivered(6, 10 * SECOND).await;
    assert_eq!(
        events[3..],
        ["presence_leave doc:1 johndoe", "presence_leave doc:1 janedoe", "channel_vacated doc:1 -"]
    );
    tokio::time::sleep(SECOND).await;
    assert_eq!(endpoint.delivered().len(), 6, "each event once, not once per node");
    let mut delivered = 0.0;
    for node in [&a, &b] {
        let metrics = node.http.get(node.url("/metrics")).send().await.unwrap().text().await.unwrap();
        delivered += sample(&metrics, "wsguard_webhook_events_total{result=\"delivered\"}");
    }
    assert_eq!(delivered, 6.0, "one node posted each");
    drop((a, b));
    schema.drop().await;
}

#[tokio::test]
async fn a_bad_webhooks_section_stops_the_start() {
    let data = tempfile::tempdir().unwrap();
    let secret = private_file(data.path(), "hooks.secret", SECRET);
    let open = data.path().join("open.secret");
    std::fs::write(&open, SECRET).unwrap();
    std::fs::set_permissions(&open, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    let cases = [
        (
            format!("url = \"ftp://app/hooks\"\nsecret_file = \"{}\"", secret.display()),
            "webhooks: url must be an http:// or https:// URL".to_owned(),
        ),
        (
            format!("url = \"http://app/hooks\"\nsecret_file = \"{}\"", open.display()),
            format!("chmod 600 {}", open.display()),
        ),
        (
            format!(
                "url = \"http://app/hooks\"\nsecret_file = \"{}\"\nevents = [\"channel_created\"]",
                secret.display()
            ),
            "webhooks: events: unknown event \"channel_created\"".to_owned(),
        ),
    ];
    for (section, expected) in cases {
        let path = data.path().join("wsguard.toml");
        std::fs::write(&path, format!("[webhooks]\n{section}\n")).unwrap();
        let (status, stderr) = serve_refused(data.path(), &[&format!("--config={}", path.display())]).await;
        assert!(!status.success());
        assert!(stderr.contains(&expected), "{section}: {stderr}");
        assert!(!stderr.contains(SECRET), "{stderr}");
    }
}
