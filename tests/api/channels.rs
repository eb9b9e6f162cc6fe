//! Channels over real sockets: namespaces from the configuration file, subscribe and publish
//! rules, personal channels, offsets, both views of the default namespace, and bad input.

use crate::helpers::{next_json, send, spawn, Server, Ws};
use crate::tokens::count_rows;
use serde_json::{json, Value};
use std::time::Duration;
use tempfile::TempDir;

const NAMESPACES: &str = r#"
[[namespaces]]
name = "room"
subscribe = "any"
publish = "subscribers"
presence = true

[[namespaces]]
name = "news"
subscribe = "any"

[[namespaces]]
name = "live"
subscribe = "any"
publish = "subscribers"
history_size = 0

[[namespaces]]
name = "vip"
"#;

/// A server whose configuration file declares [`NAMESPACES`]; the file lives as long as the guard.
async fn server() -> (Server, TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wsguard.toml");
    std::fs::write(&path, NAMESPACES).unwrap();
    let server = spawn(&[&format!("--config={}", path.display())]).await;
    (server, dir)
}

async fn connect(server: &Server, user: &str, password: &str) -> Ws {
    let pair = server.login(user, password).await;
    let mut ws = server.ws(&format!("/connect?token={}", pair.access), &[]).await.unwrap();
    assert_eq!(next_json(&mut ws).await["type"], "welcome");
    ws
}

async fn command(ws: &mut Ws, frame: Value) -> Value {
    send(ws, &frame.to_string()).await;
    next_json(ws).await
}

async fn subscribe(ws: &mut Ws, channel: &str) -> Value {
    let answer = command(ws, json!({"type": "subscribe", "channel": channel})).await;
    assert_eq!(
        (answer["type"].as_str(), answer["channel"].as_str()),
        (Some("subscribed"), Some(channel)),
        "{answer}"
    );
    answer
}

/// The next frame that is not presence.
async fn next_not_presence(ws: &mut Ws) -> Value {
    loop {
        let frame = next_json(ws).await;
        if frame["type"] != "presence" {
            return frame;
        }
    }
}

async fn refused(ws: &mut Ws, frame: Value, code: &str) {
    let answer = next_not_presence_after(ws, frame).await;
    assert_eq!((answer["type"].as_str(), answer["code"].as_str()), (Some("error"), Some(code)), "{answer}");
}

async fn next_not_presence_after(ws: &mut Ws, frame: Value) -> Value {
    send(ws, &frame.to_string()).await;
    next_not_presence(ws).await
}

/// Nothing but presence arrives within `wait`.
async fn quiet(ws: &mut Ws, wait: Duration) {
    if let Ok(frame) = tokio::time::timeout(wait, next_not_presence(ws)).await {
        panic!("expected nothing, got {frame}");
    }
}

#[tokio::test]
async fn subscribers_publish_and_receive_in_offset_order() {
    let (server, _config) = server().await;
    let mut john = connect(&server, "johndoe", "secret").await;
    let mut jane = connect(&server, "janedoe", "secret2").await;
    let first = subscribe(&mut john, "room:42").await;
    assert_eq!(
        (first["offset"].as_i64(), first["epoch"].as_str()),
        (Some(0), Some("")),
        "nothing published yet"
    );
    subscribe(&mut jane, "room:42").await;
    let mut joined = next_json(&mut john).await;
    while joined["user"] == "johndoe" {
        joined = next_json(&mut john).await; // its own join first
    }
    assert_eq!((joined["type"].as_str(), joined["channel"].as_str()), (Some("presence"), Some("room:42")));
    assert_eq!((joined["user"].as_str(), joined["event"].as_str()), (Some("janedoe"), Some("join")));

    for (i, reference) in ["a", "b", "c"].into_iter().enumerate() {
        let data = json!({"n": i, "nested": {"ok": true}});
        let frame = json!({"type": "publish", "channel": "room:42", "data": data, "ref": reference});
        let ack = next_not_presence_after(&mut jane, frame).await;
        assert_eq!(ack, json!({"type": "ack", "ref": reference, "offset": i + 1}));
        for ws in [&mut john, &mut jane] {
            let publication = next_not_presence(ws).await;
            assert_eq!(publication["type"], "publication");
            assert_eq!(
                (publication["channel"].as_str(), publication["from"].as_str()),
                (Some("room:42"), Some("janedoe"))
            );
            assert_eq!((publication["offset"].as_i64(), &publication["data"]), (Some(i as i64 + 1), &data));
            assert!(publication["ts"].as_str().unwrap().ends_with('Z'));
        }
    }
    let mut late = connect(&server, "johndoe", "secret").await;
    let position = subscribe(&mut late, "room:42").await;
    assert_eq!(position["offset"], 3, "where the channel stands");
    assert_eq!(position["epoch"].as_str().unwrap().len(), 16);

    // Unsubscribed: nothing more arrives, and publishing needs a subscription again.
    send(&mut john, &json!({"type": "unsubscribe", "channel": "room:42"}).to_string()).await;
    let frame = json!({"type": "publish", "channel": "room:42", "data": 1, "ref": "d"});
    assert_eq!(next_not_presence_after(&mut jane, frame).await["offset"], 4);
    quiet(&mut john, Duration::from_millis(300)).await;
    refused(&mut john, json!({"type": "publish", "channel": "room:42", "data": 1}), "forbidden").await;
    assert_eq!(count_rows(&server.data_dir(), "publications").await, 4);
}

#[tokio::test]
async fn rules_refuse_what_they_do_not_allow_and_store_nothing() {
    let (server, _config) = server().await;
    let mut john = connect(&server, "johndoe", "secret").await;
    subscribe(&mut john, "news:today").await;
    refused(&mut john, json!({"type": "publish", "channel": "news:today", "data": {}}), "forbidden").await;
    // The claim rule: wsguard's own tokens carry no `channels` claim.
    refused(&mut john, json!({"type": "subscribe", "channel": "vip:lounge"}), "forbidden").await;
    // Personal channels: only their user subscribes, only the server API publishes.
    subscribe(&mut john, "user:johndoe").await;
    refused(&mut john, json!({"type": "subscribe", "channel": "user:janedoe"}), "forbidden").await;
    refused(&mut john, json!({"type": "publish", "channel": "user:johndoe", "data": {}}), "forbidden").await;
    for (frame, why) in [
        (json!({"type": "subscribe", "channel": "nope:x"}), "unknown namespace"),
        (json!({"type": "subscribe", "channel": "news:"}), "empty name"),
        (json!({"type": "subscribe", "channel": "news:a b"}), "space"),
        (json!({"type": "subscribe", "channel": format!("news:{}", "x".repeat(200))}), "too long"),
        (json!({"type": "subscribe"}), "no channel"),
        (json!({"type": "subscribe", "channel": "news:x", "since": 3}), "unknown field"),
        (json!({"type": "unsubscribe", "channel": "room:never"}), "not subscribed"),
        (json!({"type": "publish", "channel": "room:x"}), "no data"),
        (json!({"type": "publish", "channel": "room:x", "data": 1, "ref": "r".repeat(65)}), "long ref"),
    ] {
        send(&mut john, &frame.to_string()).await;
        let answer = next_not_presence(&mut john).await;
        assert_eq!(
            (answer["type"].as_str(), answer["code"].as_str()),
            (Some("error"), Some("bad_request")),
            "{why}: {answer}"
        );
    }
    assert_eq!(count_rows(&server.data_dir(), "publications").await, 0, "nothing stored");
    assert_eq!(command(&mut john, json!({"type": "ping"})).await["type"], "pong", "the socket stays open");
}

#[tokio::test]
async fn a_namespace_without_history_numbers_and_stores_nothing() {
    let (server, _config) = server().await;
    let mut john = connect(&server, "johndoe", "secret").await;
    let answer = subscribe(&mut john, "live:feed").await;
    assert_eq!((answer["offset"].as_i64(), answer["epoch"].as_str()), (Some(0), Some("")));
    let ack =
        command(&mut john, json!({"type": "publish", "channel": "live:feed", "data": "x", "ref": "1"})).await;
    assert_eq!(ack, json!({"type": "ack", "ref": "1", "offset": null}));
    let publication = next_json(&mut john).await;
    assert_eq!((publication["data"].as_str(), publication["offset"].is_null()), (Some("x"), true));
    assert_eq!(count_rows(&server.data_dir(), "publications").await, 0);
}

#[tokio::test]
async fn rooms_and_subscribers_see_one_channel_in_their_own_frames() {
    let (server, _config) = server().await;
    let mut reader = connect(&server, "johndoe", "secret").await;
    let mut chatter = connect(&server, "janedoe", "secret2").await;
    subscribe(&mut reader, "general").await;
    send(&mut chatter, &json!({"type": "join", "room": "general"}).to_string()).await;
    assert_eq!(next_not_presence(&mut chatter).await["type"], "members");
    assert_eq!(next_not_presence(&mut chatter).await["type"], "history");

    let ack = next_not_presence_after(
        &mut chatter,
        json!({"type": "send", "room": "general", "text": "hi", "ref": "s"}),
    )
    .await;
    assert_eq!((ack["ref"].as_str(), ack["id"].as_i64()), (Some("s"), Some(1)));
    let message = next_not_presence(&mut chatter).await;
    assert_eq!(
        (message["type"].as_str(), message["text"].as_str(), message["id"].as_i64()),
        (Some("message"), Some("hi"), Some(1))
    );
    let publication = next_not_presence(&mut reader).await;
    assert_eq!(
        (publication["type"].as_str(), publication["offset"].as_i64()),
        (Some("publication"), Some(1))
    );
    assert_eq!(publication["data"], json!({"text": "hi"}));

    // A subscriber's `{"text": …}` is a chat message to the room; other data stays a publication.
    let frame = json!({"type": "publish", "channel": "general", "data": {"text": "yo"}, "ref": "p"});
    assert_eq!(next_not_presence_after(&mut reader, frame).await["offset"], 2);
    assert_eq!(next_not_presence(&mut reader).await["offset"], 2);
    let message = next_not_presence(&mut chatter).await;
    assert_eq!(
        (message["type"].as_str(), message["from"].as_str(), message["text"].as_str()),
        (Some("message"), Some("johndoe"), Some("yo"))
    );
    let frame = json!({"type": "publish", "channel": "general", "data": [1, 2]});
    assert_eq!(next_not_presence_after(&mut reader, frame).await["offset"], 3);
    assert_eq!(next_not_presence(&mut reader).await["data"], json!([1, 2]));
    let other = next_not_presence(&mut chatter).await;
    assert_eq!((other["type"].as_str(), &other["data"]), (Some("publication"), &json!([1, 2])));

    // One socket follows a channel one way only.
    refused(&mut reader, json!({"type": "join", "room": "general"}), "bad_request").await;
}

#[tokio::test]
async fn a_socket_follows_at_most_32_channels() {
    let (server, _config) = server().await;
    let mut john = connect(&server, "johndoe", "secret").await;
    for i in 0..32 {
        subscribe(&mut john, &format!("news:{i}")).await;
    }
    refused(&mut john, json!({"type": "subscribe", "channel": "news:one-more"}), "bad_request").await;
    refused(&mut john, json!({"type": "join", "room": "one-more"}), "bad_request").await;
    subscribe(&mut john, "news:0").await; // again: no new place needed
}
