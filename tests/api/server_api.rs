//! The server API (`/api/*`) for application backends: keys from the CLI, their refusals, limits,
//! logs and metrics, and the channel reads, on one node and on two sharing PostgreSQL and Redis.

use crate::helpers::{
    another_node, eventually, next_json, send, serve_refused, service, spawn, Schema, Server, Ws, POSTGRES,
};
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, RETRY_AFTER, WWW_AUTHENTICATE};
use reqwest::StatusCode;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::time::{Duration, Instant};

const REDIS: &str = "127.0.0.1:6379";
/// How long a key added or revoked by the CLI may take to reach a node (it rereads every second).
const KEY_REACH: Duration = Duration::from_secs(2);

/// `wsguard apikey add NAME --scopes SCOPES` against the server's store: the one line it printed.
async fn add_key(server: &Server, name: &str, scopes: &str) -> String {
    let added = server.cli(&["apikey", "add", name, "--scopes", scopes], "").await;
    let stderr = String::from_utf8_lossy(&added.stderr);
    assert!(added.status.success(), "apikey add failed: {stderr}");
    let stdout = String::from_utf8(added.stdout).unwrap();
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 1, "the key is the only line on stdout: {stdout:?}");
    assert!(stderr.contains("shown this once"), "notes go to stderr: {stderr}");
    lines[0].to_owned()
}

async fn get(server: &Server, path: &str, key: &str) -> reqwest::Response {
    server.http.get(server.url(path)).bearer_auth(key).send().await.unwrap()
}

/// Waits until `path` answers `status` to `key` (a key added or revoked reaches nodes within a
/// second or two); the time it took.
async fn until_status(server: &Server, path: &str, key: &str, status: StatusCode) -> Duration {
    let started = Instant::now();
    eventually(&format!("{path} answering {status}"), KEY_REACH, async || {
        match get(server, path, key).await.status() {
            got if got == status => Ok(()),
            got => Err(got),
        }
    })
    .await;
    started.elapsed()
}

async fn detail(response: reqwest::Response) -> String {
    response.json::<Value>().await.unwrap()["detail"].as_str().unwrap().to_owned()
}

async fn chat(server: &Server, user: &str, password: &str) -> Ws {
    let pair = server.login(user, password).await;
    let mut ws = server.ws(&format!("/chat/ws?token={}", pair.access), &[]).await.unwrap();
    assert_eq!(next_json(&mut ws).await["type"], "welcome");
    ws
}

async fn join(ws: &mut Ws, room: &str) {
    send(ws, &json!({"type": "join", "room": room}).to_string()).await;
    while next_json(ws).await["type"] != "history" {}
}

/// Waits up to `within` for `/api/channels` to list `want`.
async fn until_channels(server: &Server, key: &str, want: Value, within: Duration) {
    eventually(&format!("/api/channels listing {want}"), within, async || {
        let got: Value = get(server, "/api/channels", key).await.json().await.unwrap();
        if got == want {
            Ok(())
        } else {
            Err(got)
        }
    })
    .await
}

async fn presence(server: &Server, key: &str, channel: &str) -> Value {
    let response = get(server, &format!("/api/channels/{channel}/presence"), key).await;
    assert_eq!(response.status(), StatusCode::OK);
    response.json().await.unwrap()
}

/// The server's log without terminal colours.
fn plain_log(server: &Server) -> String {
    let log = server.log();
    let mut plain = String::with_capacity(log.len());
    let mut chars = log.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            chars.by_ref().find(|c| *c == 'm');
        } else {
            plain.push(c);
        }
    }
    plain
}

#[tokio::test]
async fn keys_are_added_listed_without_secrets_and_revoked_from_the_cli() {
    let server = spawn(&[]).await;
    let key = add_key(&server, "backend", "read,publish").await;
    assert!(key.starts_with("wsg_") && key.len() == 47, "{key}");
    // Works the moment the CLI printed it: the node rereads its table for a key it lacks.
    assert_eq!(get(&server, "/api/channels", &key).await.status(), StatusCode::OK, "at once");
    let last = if key.ends_with('A') { 'B' } else { 'A' };
    let wrong = format!("{}{last}", &key[..key.len() - 1]);
    assert_eq!(get(&server, "/api/channels", &wrong).await.status(), StatusCode::UNAUTHORIZED);

    let again = server.cli(&["apikey", "add", "backend", "--scopes", "disconnect"], "").await;
    assert!(!again.status.success() && again.stdout.is_empty());
    assert!(String::from_utf8_lossy(&again.stderr).contains("API key backend already exists"));
    for bad in [
        vec!["apikey", "add", "bad name", "--scopes", "read"],
        vec!["apikey", "add", "x", "--scopes", "superuser"],
    ] {
        let refused = server.cli(&bad, "").await;
        assert!(!refused.status.success() && refused.stdout.is_empty(), "{bad:?}");
    }
    assert_eq!(get(&server, "/api/channels", &key).await.status(), StatusCode::OK, "unchanged");

    // Last used is written by the node at its next reread of the table.
    let hash = hex::encode(Sha256::digest(key.as_bytes()));
    let list = eventually("the last use recorded", KEY_REACH, async || {
        let list = String::from_utf8(server.cli(&["apikey", "list"], "").await.stdout).unwrap();
        if list.contains("never") {
            Err(list)
        } else {
            Ok(list)
        }
    })
    .await;
    assert_eq!(list.lines().count(), 1, "{list}");
    let fields: Vec<&str> = list.trim_end().split('\t').collect();
    assert_eq!(fields[..2], ["backend", "publish,read"], "{list}");
    assert!(fields[2].ends_with('Z') && fields[3].ends_with('Z'), "created, last used: {list}");
    assert!(!list.contains(&key) && !list.contains(&hash) && !list.contains("wsg_"), "{list}");

    let revoked = server.cli(&["apikey", "revoke", "backend"], "").await;
    assert!(revoked.status.success());
    let took = until_status(&server, "/api/channels", &key, StatusCode::UNAUTHORIZED).await;
    eprintln!("a revoked key was refused after {took:?}");
    assert!(!server.cli(&["apikey", "revoke", "backend"], "").await.status.success(), "no such key now");
    assert!(server.cli(&["apikey", "list"], "").await.stdout.is_empty());
}

#[tokio::test]
async fn missing_unknown_and_malformed_keys_get_401_and_a_missing_scope_403() {
    let server = spawn(&[]).await;
    let publisher = add_key(&server, "publisher", "publish").await;
    let reader = add_key(&server, "reader", "read").await;
    until_status(&server, "/api/channels", &reader, StatusCode::OK).await;
    let url = server.url("/api/channels");

    let none = server.http.get(&url).send().await.unwrap();
    assert_eq!(none.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(none.headers()[WWW_AUTHENTICATE], "Bearer");
    assert_eq!(detail(none).await, "Not authenticated");
    // A user's access token is no API key; nor is a near miss, the stored hash, or another scheme.
    let user = server.login("johndoe", "secret").await.access;
    let last = if reader.ends_with('A') { 'B' } else { 'A' };
    let near = format!("{}{last}", &reader[..reader.len() - 1]);
    let hash = hex::encode(Sha256::digest(reader.as_bytes()));
    for wrong in [user.as_str(), near.as_str(), hash.as_str(), "wsg_", "x"] {
        let response = get(&server, "/api/channels", wrong).await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{wrong}");
        assert!(response.headers()[WWW_AUTHENTICATE]
            .to_str()
            .unwrap()
            .starts_with("Bearer error=\"invalid_token\""));
        assert_eq!(detail(response).await, "Invalid API key", "the same answer for every wrong key");
    }
    for malformed in [format!("Basic {reader}"), "Bearer".to_owned(), "Bearer  ".to_owned(), reader.clone()] {
        let response = server.http.get(&url).header(AUTHORIZATION, &malformed).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{malformed}");
        assert_eq!(response.headers()[WWW_AUTHENTICATE], "Bearer");
        assert_eq!(detail(response).await, "Invalid authentication credentials");
    }

    for path in ["/api/channels", "/api/channels/general/presence"] {
        let response = get(&server, path, &publisher).await;
        assert_eq!(response.status(), StatusCode::FORBIDDEN, "{path}");
        assert_eq!(detail(response).await, "This API key lacks the read scope");
    }
}

#[tokio::test]
async fn bodies_over_the_limit_get_413_and_bad_channels_422() {
    let server = spawn(&["--api-max-body-bytes=2048"]).await;
    let key = add_key(&server, "reader", "read").await;
    until_status(&server, "/api/channels", &key, StatusCode::OK).await;
    let with_body = |bytes: usize| {
        server
            .http
            .get(server.url("/api/channels"))
            .bearer_auth(&key)
            .header(CONTENT_TYPE, "application/json")
            .body(format!("\"{}\"", "x".repeat(bytes - 2)))
    };
    assert_eq!(with_body(2048).send().await.unwrap().status(), StatusCode::OK, "at the limit");
    let over = with_body(2049).send().await.unwrap();
    assert_eq!(over.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(detail(over).await, "Request body too large (limit 2048 bytes)");

    for bad in ["bad%20name", "a%2Fb", &"x".repeat(65), "%C3%A9", "%FF"] {
        let response = get(&server, &format!("/api/channels/{bad}/presence"), &key).await;
        assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY, "{bad}");
        assert!(!detail(response).await.is_empty());
    }
    let (status, stderr) = serve_refused(&server.data_dir(), &["--api-max-body-bytes=10"]).await;
    assert!(!status.success());
    assert!(stderr.contains("api_max_body_bytes must be at least 1024"), "{stderr}");
}

#[tokio::test]
async fn a_key_over_its_rate_gets_429_then_recovers_and_other_keys_are_untouched() {
    let server = spawn(&["--api-requests-per-sec=2", "--api-burst=3"]).await;
    let busy = add_key(&server, "busy", "read").await;
    let calm = add_key(&server, "calm", "read").await;
    // Both keys reach the node at the same reread, or `busy` first; waiting spent nothing of
    // `busy`'s budget (refusals of an unknown key spend none).
    until_status(&server, "/api/channels", &calm, StatusCode::OK).await;
    for _ in 0..3 {
        assert_eq!(get(&server, "/api/channels", &busy).await.status(), StatusCode::OK);
    }
    let limited = get(&server, "/api/channels", &busy).await;
    assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = limited.headers()[RETRY_AFTER].to_str().unwrap().parse().unwrap();
    assert!((1..=2).contains(&retry), "Retry-After {retry}");
    assert!(detail(limited).await.contains("Too many requests"));
    assert_eq!(get(&server, "/api/channels", &calm).await.status(), StatusCode::OK, "budgets are per key");

    // Time must pass: what is tested is that waiting Retry-After is enough.
    tokio::time::sleep(Duration::from_secs(retry)).await;
    assert_eq!(get(&server, "/api/channels", &busy).await.status(), StatusCode::OK, "recovered");
}

#[tokio::test]
async fn channels_and_presence_follow_chat_sockets() {
    let server = spawn(&[]).await;
    let key = add_key(&server, "reader", "read").await;
    until_status(&server, "/api/channels", &key, StatusCode::OK).await;
    assert_eq!(
        get(&server, "/api/channels", &key).await.json::<Value>().await.unwrap(),
        json!({"channels": []})
    );

    let (mut john_1, mut john_2, mut jane) = (
        chat(&server, "johndoe", "secret").await,
        chat(&server, "johndoe", "secret").await,
        chat(&server, "janedoe", "secret2").await,
    );
    join(&mut john_1, "general").await;
    join(&mut john_2, "general").await;
    join(&mut jane, "general").await;
    join(&mut jane, "ops").await;
    let both =
        json!({"channels": [{"channel": "general", "subscribers": 3}, {"channel": "ops", "subscribers": 1}]});
    until_channels(&server, &key, both, Duration::from_secs(2)).await;
    assert_eq!(presence(&server, &key, "general").await, json!({"users": ["janedoe", "johndoe"]}));
    assert_eq!(presence(&server, &key, "ops").await, json!({"users": ["janedoe"]}));
    assert_eq!(presence(&server, &key, "empty").await, json!({"users": []}));

    drop(jane);
    until_channels(
        &server,
        &key,
        json!({"channels": [{"channel": "general", "subscribers": 2}]}),
        Duration::from_secs(2),
    )
    .await;
    assert_eq!(presence(&server, &key, "general").await, json!({"users": ["johndoe"]}));
    drop((john_1, john_2));
}

#[tokio::test]
async fn calls_are_logged_and_counted_by_key_name_never_by_key() {
    let server = spawn(&[]).await;
    let key = add_key(&server, "billing.v2", "read").await;
    until_status(&server, "/api/channels", &key, StatusCode::OK).await;
    let wrong = "wsg_a-wrong-key-that-must-not-be-logged";
    assert_eq!(get(&server, "/api/channels", wrong).await.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(get(&server, "/api/channels/x/presence", &key).await.status(), StatusCode::OK);

    let log = plain_log(&server);
    let line = log
        .lines()
        .find(|l| l.contains("api call") && l.contains("/api/channels/x/presence"))
        .unwrap_or_else(|| panic!("no log line of the call: {log}"));
    for part in ["key=\"billing.v2\"", "method=GET", "status=200", "latency_ms="] {
        assert!(line.contains(part), "{part} missing from {line}");
    }
    assert!(log
        .lines()
        .any(|l| l.contains("api call") && l.contains("key=\"(none)\"") && l.contains("status=401")));
    let hash = hex::encode(Sha256::digest(key.as_bytes()));
    for secret in [key.as_str(), hash.as_str(), wrong] {
        assert!(!log.contains(secret), "the log holds {secret}");
    }

    let metrics = server.http.get(server.url("/metrics")).send().await.unwrap().text().await.unwrap();
    let count = |labels: &str| -> u64 {
        let prefix = format!("wsguard_api_requests_total{{{labels}}} ");
        metrics.lines().find_map(|l| l.strip_prefix(&prefix)).map_or(0, |n| n.parse().unwrap())
    };
    // The key's calls: waiting for the key, then two; before the node knew the key, 401s.
    assert!(count("key=\"billing.v2\",status=\"2xx\"") >= 2, "{metrics}");
    assert!(count("key=\"(none)\",status=\"4xx\"") >= 1, "{metrics}");
}

/// Two nodes sharing a PostgreSQL schema and Redis, in a cluster of their own.
async fn two_nodes() -> (Server, Server, Schema) {
    let schema = Schema::create().await;
    let cluster = format!("--cluster=t{}", uuid::Uuid::new_v4().simple());
    let broker = format!("--broker-url=redis://{REDIS}");
    let database = format!("--database-url={}", schema.url());
    let a = spawn(&[cluster.as_str(), broker.as_str(), database.as_str()]).await;
    let b = another_node(&a).await;
    (a, b, schema)
}

#[tokio::test]
async fn across_two_nodes_keys_channels_and_presence_are_the_clusters() {
    if !(service("Redis", REDIS) && service("PostgreSQL", POSTGRES)) {
        return;
    }
    let (a, b, schema) = two_nodes().await;
    let key = add_key(&a, "backend", "read").await;
    until_status(&a, "/api/channels", &key, StatusCode::OK).await;
    until_status(&b, "/api/channels", &key, StatusCode::OK).await;

    let mut john = chat(&a, "johndoe", "secret").await;
    let mut jane = chat(&b, "janedoe", "secret2").await;
    join(&mut john, "general").await;
    join(&mut jane, "general").await;
    join(&mut jane, "ops").await;
    let both =
        json!({"channels": [{"channel": "general", "subscribers": 2}, {"channel": "ops", "subscribers": 1}]});
    until_channels(&a, &key, both.clone(), Duration::from_secs(2)).await;
    until_channels(&b, &key, both, Duration::from_secs(2)).await;
    assert_eq!(presence(&a, &key, "general").await, json!({"users": ["janedoe", "johndoe"]}));
    assert_eq!(presence(&a, &key, "ops").await, json!({"users": ["janedoe"]}));

    // A node's sockets stop counting when it dies: liveness key TTL (10 s) bounds it.
    b.kill().await;
    let general = json!({"channels": [{"channel": "general", "subscribers": 1}]});
    until_channels(&a, &key, general, Duration::from_secs(14)).await;

    // A key revoked from the CLI stops working on every node.
    let c = another_node(&a).await;
    until_status(&c, "/api/channels", &key, StatusCode::OK).await;
    assert!(a.cli(&["apikey", "revoke", "backend"], "").await.status.success());
    until_status(&a, "/api/channels", &key, StatusCode::UNAUTHORIZED).await;
    until_status(&c, "/api/channels", &key, StatusCode::UNAUTHORIZED).await;
    drop(john);
    schema.drop().await;
}
