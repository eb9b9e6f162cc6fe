//! The server API's publications and history over a real server: publish, broadcast, history with
//! and without `since`, what subscribers receive, and refusals that store nothing.

use crate::helpers::{eventually, next_json, send, spawn, Server, Ws};
use crate::tokens::count_rows;
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use tempfile::TempDir;

const CONFIG: &str = r#"
[[namespaces]]
name = "news"
subscribe = "any"

[[namespaces]]
name = "live"
subscribe = "any"
history_size = 0
"#;

async fn server() -> (Server, TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wsguard.toml");
    std::fs::write(&path, CONFIG).unwrap();
    let server = spawn(&[&format!("--config={}", path.display())]).await;
    let added = server.cli(&["apikey", "add", "backend", "--scopes", "publish,read"], "").await;
    assert!(added.status.success(), "{}", String::from_utf8_lossy(&added.stderr));
    let key = String::from_utf8(added.stdout).unwrap().trim().to_owned();
    // A key added by the CLI reaches the running server within a second or two.
    until_status(&server, "/api/channels", &key, StatusCode::OK).await;
    (server, dir, key)
}

async fn get(server: &Server, path: &str, key: &str) -> reqwest::Response {
    server.http.get(server.url(path)).bearer_auth(key).send().await.unwrap()
}

/// Waits until GET `path` answers `status` to `key`: a key the CLI added reaches the node at its
/// next reread of the table.
async fn until_status(server: &Server, path: &str, key: &str, status: StatusCode) {
    eventually(&format!("{path} answering {status}"), Duration::from_secs(5), async || {
        match get(server, path, key).await.status() {
            got if got == status => Ok(()),
            got => Err(got),
        }
    })
    .await
}

async fn post(server: &Server, path: &str, key: &str, body: Value) -> reqwest::Response {
    server.http.post(server.url(path)).bearer_auth(key).json(&body).send().await.unwrap()
}

async fn subscriber(server: &Server, user: &str, password: &str, channel: &str) -> Ws {
    let pair = server.login(user, password).await;
    let mut ws = server.ws(&format!("/connect?token={}", pair.access), &[]).await.unwrap();
    assert_eq!(next_json(&mut ws).await["type"], "welcome");
    send(&mut ws, &json!({"type": "subscribe", "channel": channel}).to_string()).await;
    assert_eq!(next_json(&mut ws).await["type"], "subscribed");
    ws
}

#[tokio::test]
async fn a_publication_is_stored_numbered_and_delivered_with_no_sender() {
    let (server, _config, key) = server().await;
    let mut john = subscriber(&server, "johndoe", "secret", "user:johndoe").await;
    for n in 1..=3 {
        let data = json!({"text": format!("order {n} shipped"), "n": n});
        let answer =
            post(&server, "/api/publish", &key, json!({"channel": "user:johndoe", "data": data})).await;
        assert_eq!(answer.status(), StatusCode::OK);
        assert_eq!(answer.json::<Value>().await.unwrap(), json!({"offset": n}));
        let frame = next_json(&mut john).await;
        assert_eq!((frame["type"].as_str(), frame["offset"].as_i64()), (Some("publication"), Some(n)));
        assert_eq!((&frame["data"], frame["from"].is_null()), (&data, true));
    }
    // History: newest first-page, oldest first; `since` is exclusive; a limit.
    let history: Value = get(&server, "/api/channels/user:johndoe/history", &key).await.json().await.unwrap();
    let offsets = |h: &Value| {
        h["publications"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["offset"].as_i64().unwrap())
            .collect::<Vec<_>>()
    };
    assert_eq!(offsets(&history), [1, 2, 3]);
    assert_eq!(history["epoch"].as_str().unwrap().len(), 16);
    assert_eq!(history["publications"][0]["data"]["n"], 1);
    let after: Value =
        get(&server, "/api/channels/user:johndoe/history?since=1&limit=1", &key).await.json().await.unwrap();
    assert_eq!(offsets(&after), [2]);
    let newest: Value =
        get(&server, "/api/channels/user:johndoe/history?limit=2", &key).await.json().await.unwrap();
    assert_eq!(offsets(&newest), [2, 3]);
    let empty: Value = get(&server, "/api/channels/news:never/history", &key).await.json().await.unwrap();
    assert_eq!(empty, json!({"publications": [], "epoch": ""}));
    // A namespace without history: delivered, not numbered, not kept.
    let mut live = subscriber(&server, "janedoe", "secret2", "live:feed").await;
    let answer = post(&server, "/api/publish", &key, json!({"channel": "live:feed", "data": 1})).await;
    assert_eq!(answer.json::<Value>().await.unwrap(), json!({"offset": null}));
    assert!(next_json(&mut live).await["offset"].is_null());
    assert_eq!(count_rows(&server.data_dir(), "publications").await, 3);
}

#[tokio::test]
async fn a_broadcast_reaches_every_channel_or_with_one_bad_name_none() {
    let (server, _config, key) = server().await;
    let mut eu = subscriber(&server, "johndoe", "secret", "news:eu").await;
    let mut us = subscriber(&server, "janedoe", "secret2", "news:us").await;
    let body = json!({"channels": ["news:eu", "news:us", "general"], "data": {"headline": "h"}});
    let answer = post(&server, "/api/broadcast", &key, body).await;
    assert_eq!(answer.status(), StatusCode::OK);
    assert_eq!(
        answer.json::<Value>().await.unwrap(),
        json!({"offsets": {"news:eu": 1, "news:us": 1, "general": 1}})
    );
    for ws in [&mut eu, &mut us] {
        assert_eq!(next_json(ws).await["data"]["headline"], "h");
    }
    let before = count_rows(&server.data_dir(), "publications").await;
    for (body, why) in [
        (json!({"channels": ["news:eu", "nope:x"], "data": 1}), "unknown namespace"),
        (json!({"channels": ["news:eu", "news:eu"], "data": 1}), "repeated"),
        (json!({"channels": [], "data": 1}), "none"),
        (
            json!({"channels": (0..101).map(|i| format!("news:{i}")).collect::<Vec<_>>(), "data": 1}),
            "too many",
        ),
        (json!({"channels": ["news:eu"]}), "no data"),
    ] {
        let answer = post(&server, "/api/broadcast", &key, body).await;
        assert_eq!(answer.status(), StatusCode::UNPROCESSABLE_ENTITY, "{why}");
        assert!(!answer.json::<Value>().await.unwrap()["detail"].as_str().unwrap().is_empty());
    }
    assert_eq!(count_rows(&server.data_dir(), "publications").await, before, "nothing stored for a refusal");
}

#[tokio::test]
async fn bad_publications_get_422_and_store_nothing() {
    let (server, _config, key) = server().await;
    for (body, why) in [
        (json!({"channel": 5, "data": 1}), "channel not a string"),
        (json!({"channel": "news:x"}), "no data"),
        (json!({"data": 1}), "no channel"),
        (json!({"channel": "news:x", "data": 1, "from": "admin"}), "a sender may not be set"),
        (json!({"channel": "nope:x", "data": 1}), "unknown namespace"),
        (json!({"channel": "news:a b", "data": 1}), "bad name"),
        (json!({"channel": "", "data": 1}), "empty name"),
        // A room's chat message has the chat's text rules.
        (json!({"channel": "general", "data": {"text": ""}}), "empty text"),
        (json!({"channel": "general", "data": {"text": "x".repeat(4097)}}), "text too long"),
        (json!({"channels": ["news:x", "general"], "data": {"text": ""}}), "broadcast, one room"),
    ] {
        let path = if body.get("channels").is_some() { "/api/broadcast" } else { "/api/publish" };
        let answer = post(&server, path, &key, body).await;
        assert_eq!(answer.status(), StatusCode::UNPROCESSABLE_ENTITY, "{why}");
        assert!(!answer.json::<Value>().await.unwrap()["detail"].as_str().unwrap().is_empty(), "{why}");
    }
    let raw = server.http.post(server.url("/api/publish")).bearer_auth(&key);
    let answer = raw.header("content-type", "application/json").body("{not json").send().await.unwrap();
    assert_eq!(answer.status(), StatusCode::UNPROCESSABLE_ENTITY, "malformed JSON");
    for path in [
        "/api/channels/news:x/history?limit=0",
        "/api/channels/news:x/history?since=-1",
        "/api/channels/nope:x/history",
        "/api/channels/news:x/presence",
    ] {
        assert_eq!(get(&server, path, &key).await.status(), StatusCode::UNPROCESSABLE_ENTITY, "{path}");
    }
    // A read-only key may not publish.
    let added = server.cli(&["apikey", "add", "reader", "--scopes", "read"], "").await;
    let reader = String::from_utf8(added.stdout).unwrap().trim().to_owned();
    eventually("the read key refused with 403", Duration::from_secs(5), async || {
        match post(&server, "/api/publish", &reader, json!({"channel": "news:x", "data": 1})).await.status() {
            StatusCode::FORBIDDEN => Ok(()),
            status => Err(status),
        }
    })
    .await;
    assert_eq!(count_rows(&server.data_dir(), "publications").await, 0);
}

/// Two nodes on one PostgreSQL schema and Redis, and a key with every scope.
async fn cluster() -> (Server, Server, crate::helpers::Schema, String) {
    let schema = crate::helpers::Schema::create().await;
    let cluster = format!("--cluster=t{}", uuid::Uuid::new_v4().simple());
    let database = format!("--database-url={}", schema.url());
    let a = spawn(&[cluster.as_str(), "--broker-url=redis://127.0.0.1:6379", database.as_str()]).await;
    let b = crate::helpers::another_node(&a).await;
    let added = a.cli(&["apikey", "add", "ops", "--scopes", "disconnect,publish,read"], "").await;
    let key = String::from_utf8(added.stdout).unwrap().trim().to_owned();
    until_status(&a, "/api/channels", &key, StatusCode::OK).await;
    (a, b, schema, key)
}

#[tokio::test]
async fn disconnect_and_revoke_through_one_node_close_sockets_on_the_other_within_a_second() {
    use crate::helpers::{close_code, service, POSTGRES};
    if !(service("Redis", "127.0.0.1:6379") && service("PostgreSQL", POSTGRES)) {
        return;
    }
    let (a, b, schema, key) = cluster().await;
    let pair = b.login("johndoe", "secret").await;
    let mut john = b.ws(&format!("/connect?token={}", pair.access), &[]).await.unwrap();
    assert_eq!(next_json(&mut john).await["type"], "welcome");

    // Disconnect: closed with 4003, and the same token opens a socket again.
    let started = Instant::now();
    assert_eq!(
        post(&a, "/api/users/johndoe/disconnect", &key, json!({})).await.status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(close_code(&mut john, Duration::from_secs(2)).await.0, 4003);
    assert!(started.elapsed() < Duration::from_millis(1500), "closed in {:?}", started.elapsed());
    let mut john = b.ws(&format!("/connect?token={}", pair.access), &[]).await.unwrap();
    assert_eq!(next_json(&mut john).await["type"], "welcome", "a disconnect revokes nothing");

    // Revoke: closed with 4003, the token refused on both nodes, the login ended; a new login works.
    let mut jane =
        a.ws(&format!("/connect?token={}", a.login("janedoe", "secret2").await.access), &[]).await.unwrap();
    assert_eq!(next_json(&mut jane).await["type"], "welcome");
    let started = Instant::now();
    assert_eq!(post(&a, "/api/users/johndoe/revoke", &key, json!({})).await.status(), StatusCode::NO_CONTENT);
    assert_eq!(close_code(&mut john, Duration::from_secs(2)).await.0, 4003);
    assert!(started.elapsed() < Duration::from_millis(1500), "closed in {:?}", started.elapsed());
    for node in [&a, &b] {
        // Refused after the upgrade on this transport: closed with 1008, no welcome.
        let mut ws = node.ws(&format!("/connect?token={}", pair.access), &[]).await.unwrap();
        let (code, reason) = close_code(&mut ws, Duration::from_secs(2)).await;
        assert_eq!((code, reason.as_str()), (1008, "token has been revoked"));
        assert_eq!(node.refresh(&pair.refresh).await.status(), StatusCode::UNAUTHORIZED, "the login ended");
    }
    // Time must pass: the revocation covers tokens issued up to its second, so a new login's
    // `iat` (whole seconds) has to fall in a later one.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let mut again =
        b.ws(&format!("/connect?token={}", b.login("johndoe", "secret").await.access), &[]).await.unwrap();
    assert_eq!(next_json(&mut again).await["type"], "welcome");
    send(&mut jane, &json!({"type": "ping"}).to_string()).await;
    assert_eq!(next_json(&mut jane).await["type"], "pong", "other users are untouched");

    // Bad names and a key without the scope.
    assert_eq!(
        post(&a, "/api/users/no%20one/revoke", &key, json!({})).await.status(),
        StatusCode::UNPROCESSABLE_ENTITY
    );
    let added = a.cli(&["apikey", "add", "reader", "--scopes", "read"], "").await;
    let reader = String::from_utf8(added.stdout).unwrap().trim().to_owned();
    eventually("a read key refused with 403", Duration::from_secs(5), async || {
        match post(&a, "/api/users/janedoe/disconnect", &reader, json!({})).await.status() {
            StatusCode::FORBIDDEN => Ok(()),
            status => Err(status),
        }
    })
    .await;
    send(&mut jane, &json!({"type": "ping"}).to_string()).await;
    assert_eq!(next_json(&mut jane).await["type"], "pong", "a refused call closed nothing");
    drop((a, b));
    schema.drop().await;
}
