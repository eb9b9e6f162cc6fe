//! `/connection/websocket`, Centrifugo's client protocol, at its edges: what a connection that is
//! not the SDK's sends, and every limit, each answered with the protocol's code. (The SDKs
//! themselves are tested in tests/centrifuge and tests/interop.)

use crate::helpers::{close_code, next_json, send, spawn, Server, Ws};
use futures_util::SinkExt;
use serde_json::{json, Value};
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;

async fn open(server: &Server) -> Ws {
    server.ws("/connection/websocket", &[]).await.expect("upgrade")
}

/// A connection past `connect` with `token`, and the connect reply.
async fn connected(server: &Server, token: &str) -> (Ws, Value) {
    let mut ws = open(server).await;
    send(&mut ws, &json!({"id": 1, "connect": {"token": token}}).to_string()).await;
    let reply = next_json(&mut ws).await;
    (ws, reply)
}

async fn closed_with(ws: &mut Ws) -> u16 {
    close_code(ws, Duration::from_secs(8)).await.0
}

#[tokio::test]
async fn connect_answers_the_sdk_and_refusals_use_the_protocol_codes() {
    let server = spawn(&["--access-ttl=2s"]).await;
    let pair = server.login("johndoe", "secret").await;

    let (_ws, reply) = connected(&server, &pair.access).await;
    assert_eq!(reply["id"], 1);
    let connect = &reply["connect"];
    assert!(connect["client"].as_str().is_some_and(|c| !c.is_empty()), "{reply}");
    assert_eq!((connect["expires"].clone(), connect["pong"].clone()), (json!(true), json!(true)));
    assert!(
        connect["ttl"].as_u64().is_some_and(|ttl| (1..=2).contains(&ttl)),
        "refreshed ahead of expiry: {reply}"
    );

    // A forged token: terminal.
    let (mut ws, _) = (open(&server).await, ());
    let forged = format!("{}x", pair.access);
    send(&mut ws, &json!({"id": 1, "connect": {"token": forged}}).to_string()).await;
    assert_eq!(closed_with(&mut ws).await, 3500, "invalid token");
    // No token at all: the same.
    let mut ws = open(&server).await;
    send(&mut ws, r#"{"id":1,"connect":{}}"#).await;
    assert_eq!(closed_with(&mut ws).await, 3500);
    // Anything but `connect` first, or not JSON: bad request.
    for first in [r#"{"id":1,"subscribe":{"channel":"a"}}"#, "not json", r#"{"connect":{"token":"x"}}"#] {
        let mut ws = open(&server).await;
        send(&mut ws, first).await;
        assert_eq!(closed_with(&mut ws).await, 3501, "{first}");
    }
    // A protobuf SDK's binary connect: the codec wsguard does not speak, terminal. Its subprotocol
    // is granted, or the SDK would drop the handshake and try again forever.
    let mut ws = server
        .ws("/connection/websocket", &[("sec-websocket-protocol", "centrifuge-protobuf")])
        .await
        .unwrap();
    ws.send(Message::Binary(vec![0x0a, 0x02].into())).await.unwrap();
    assert_eq!(closed_with(&mut ws).await, 3506);
    // An expired token: error 109 in the reply, so that the SDK fetches another.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let (_ws, reply) = connected(&server, &pair.access).await;
    assert_eq!(reply, json!({"id": 1, "error": {"code": 109, "message": "token expired"}}));
}

#[tokio::test]
async fn commands_after_connect_and_what_is_refused() {
    let server = spawn(&[]).await;
    let pair = server.login("johndoe", "secret").await;
    let (mut ws, _) = connected(&server, &pair.access).await;

    // Batched, one per line; `send` and a pong need no answer, `rpc` is not available (108, as
    // Centrifugo answers without an RPC proxy).
    send(
        &mut ws,
        "{\"id\":2,\"ping\":{}}\n{}\n{\"send\":{\"data\":1}}\n{\"id\":3,\"rpc\":{\"method\":\"m\"}}",
    )
    .await;
    assert_eq!(next_json(&mut ws).await, json!({"id": 2, "ping": {}}));
    assert_eq!(
        next_json(&mut ws).await,
        json!({"id": 3, "error": {"code": 108, "message": "RPC is not served (method \"m\")"}})
    );
    // Presence and history of a channel not subscribed: permission denied.
    send(&mut ws, r#"{"id":4,"history":{"channel":"general","limit":1}}"#).await;
    assert_eq!(next_json(&mut ws).await["error"]["code"], 103);
    // An unknown namespace: unknown channel; the same subscription twice: already subscribed.
    send(&mut ws, r#"{"id":5,"subscribe":{"channel":"nope:x"}}"#).await;
    assert_eq!(next_json(&mut ws).await["error"]["code"], 102);
    send(&mut ws, "{\"id\":6,\"subscribe\":{\"channel\":\"general\"}}\n{\"id\":7,\"subscribe\":{\"channel\":\"general\"}}").await;
    assert!(next_json(&mut ws).await["subscribe"].is_object());
    assert_eq!(next_json(&mut ws).await["error"]["code"], 105);
    // Publications that arrive together are published together, each answered in order.
    let publishes = [("a", 9), ("", 10), ("c", 11)].map(|(text, id)| {
        json!({"id": id, "publish": {"channel": "general", "data": {"text": text}}}).to_string()
    });
    send(&mut ws, &publishes.join("\n")).await;
    let (mut replies, mut texts) = (Vec::new(), Vec::new());
    while replies.len() < 3 || texts.len() < 2 {
        let frame = next_json(&mut ws).await;
        match frame["push"]["pub"]["data"]["text"].as_str() {
            Some(text) => texts.push(text.to_owned()),
            None if frame["push"].is_null() => replies.push(frame),
            None => {} // the join of our own subscription
        }
    }
    assert_eq!(replies[0], json!({"id": 9, "publish": {}}));
    assert_eq!(
        (replies[1]["id"].clone(), replies[1]["error"]["code"].clone()),
        (json!(10), json!(107)),
        "an empty chat message"
    );
    assert_eq!(replies[2], json!({"id": 11, "publish": {}}));
    assert_eq!(texts, ["a", "c"]);
    // A second connect: bad request, and the connection ends.
    send(&mut ws, r#"{"id":8,"connect":{"token":"x"}}"#).await;
    assert_eq!(closed_with(&mut ws).await, 3501);

    // The protobuf codec is not spoken.
    let (mut ws, _) = connected(&server, &pair.access).await;
    ws.send(Message::Binary(vec![1, 2, 3].into())).await.unwrap();
    assert_eq!(closed_with(&mut ws).await, 3506);
}

#[tokio::test]
async fn limits_origin_and_pings() {
    let server = spawn(&[
        "--max-message-bytes=1024",
        "--max-messages-per-sec=5",
        "--ping-interval=300ms",
        "--idle-timeout=1500ms",
    ])
    .await;
    let pair = server.login("johndoe", "secret").await;
    let status = server.ws_refused("/connection/websocket", &[("origin", "https://evil.example")]).await;
    assert_eq!(status, 403, "a foreign Origin");

    let (mut ws, _) = connected(&server, &pair.access).await;
    send(&mut ws, &format!(r#"{{"send":{{"data":"{}"}}}}"#, "x".repeat(2048))).await;
    assert_eq!(closed_with(&mut ws).await, 1009, "over --max-message-bytes");

    let (mut ws, _) = connected(&server, &pair.access).await;
    for _ in 0..20 {
        if ws.send(Message::Text("{}".into())).await.is_err() {
            break;
        }
    }
    assert_eq!(closed_with(&mut ws).await, 3013, "over --max-messages-per-sec");

    // The server pings with `{}`; a client that never answers is closed with "no pong".
    let (mut ws, _) = connected(&server, &pair.access).await;
    assert_eq!(next_json(&mut ws).await, json!({}));
    assert_eq!(closed_with(&mut ws).await, 3012);
}

#[tokio::test]
async fn join_and_leave_pushes_only_for_subscriptions_that_ask() {
    let server = spawn(&[]).await;
    let john = server.login("johndoe", "secret").await;
    let jane = server.login("janedoe", "secret2").await;
    let subscribe =
        |join_leave: bool| json!({"id": 2, "subscribe": {"channel": "general", "join_leave": join_leave}});
    let (mut quiet, _) = connected(&server, &john.access).await;
    send(&mut quiet, &subscribe(false).to_string()).await;
    assert!(next_json(&mut quiet).await["subscribe"].is_object());
    let (mut told, _) = connected(&server, &john.access).await;
    send(&mut told, &subscribe(true).to_string()).await;
    assert!(next_json(&mut told).await["subscribe"].is_object());

    let (mut other, _) = connected(&server, &jane.access).await;
    send(&mut other, &subscribe(false).to_string()).await;
    assert!(next_json(&mut other).await["subscribe"].is_object());
    let joined = next_json(&mut told).await;
    assert_eq!(joined["push"]["join"]["info"]["user"], "janedoe", "{joined}");
    let publish = json!({"id": 3, "publish": {"channel": "general", "data": {"text": "hi"}}});
    send(&mut other, &publish.to_string()).await;
    // The quiet subscription's next push is the publication: no join came before it.
    let next = next_json(&mut quiet).await;
    assert_eq!(next["push"]["pub"]["data"]["text"], "hi", "{next}");
    drop(other);
    let left = next_json(&mut told).await;
    let left = if left["push"]["pub"].is_object() { next_json(&mut told).await } else { left };
    assert_eq!(left["push"]["leave"]["info"]["user"], "janedoe", "{left}");
}
