//! The chat protocol over real sockets: rooms, presence, history, ack-after-store, bad input.

use crate::helpers::{next_json, send, spawn, Server, Ws};
use crate::tokens::count_rows;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;

async fn chat(server: &Server, user: &str, password: &str) -> Ws {
    let pair = server.login(user, password).await;
    let mut ws = server.ws(&format!("/chat/ws?token={}", pair.access), &[]).await.unwrap();
    assert_eq!(next_json(&mut ws).await["type"], "welcome");
    ws
}

async fn command(ws: &mut Ws, frame: Value) {
    send(ws, &frame.to_string()).await;
}

/// The next frame of `kind`, skipping others (presence and messages interleave).
async fn next_of(ws: &mut Ws, kind: &str) -> Value {
    loop {
        let frame = next_json(ws).await;
        if frame["type"] == kind {
            return frame;
        }
    }
}

/// The next presence event about `user` (a joiner also hears of its own join).
async fn presence_of(ws: &mut Ws, user: &str) -> Value {
    loop {
        let frame = next_of(ws, "presence").await;
        if frame["user"] == user {
            return frame;
        }
    }
}

/// Joins `room` and returns (members, history messages).
async fn join(ws: &mut Ws, room: &str) -> (Vec<String>, Vec<Value>) {
    command(ws, json!({"type": "join", "room": room})).await;
    let members = next_of(ws, "members").await;
    assert_eq!(members["room"], room);
    let history = next_of(ws, "history").await;
    let users = members["users"].as_array().unwrap().iter().map(|u| u.as_str().unwrap().to_owned()).collect();
    (users, history["messages"].as_array().unwrap().clone())
}

async fn say(ws: &mut Ws, room: &str, text: &str, reference: &str) -> i64 {
    command(ws, json!({"type": "send", "room": room, "text": text, "ref": reference})).await;
    let ack = next_of(ws, "ack").await;
    assert_eq!(ack["ref"], reference);
    ack["id"].as_i64().unwrap()
}

/// No frame of `kind` arrives within `wait`.
async fn quiet(ws: &mut Ws, kind: &str, wait: Duration) {
    let deadline = tokio::time::Instant::now() + wait;
    while let Ok(Some(Ok(Message::Text(text)))) = tokio::time::timeout_at(deadline, ws.next()).await {
        let frame: Value = serde_json::from_str(&text).unwrap();
        assert_ne!(frame["type"], kind, "unexpected {frame}");
    }
}

#[tokio::test]
async fn two_users_talk_in_a_room_in_order_with_presence() {
    let server = spawn(&[]).await;
    let mut john = chat(&server, "johndoe", "secret").await;
    let mut jane = chat(&server, "janedoe", "secret2").await;

    let (members, history) = join(&mut john, "general").await;
    assert_eq!(members, ["johndoe"]);
    assert!(history.is_empty());
    let (members, _) = join(&mut jane, "general").await;
    assert_eq!(members, ["janedoe", "johndoe"]);
    let presence = presence_of(&mut john, "janedoe").await;
    assert_eq!(presence, json!({"type": "presence", "room": "general", "user": "janedoe", "event": "join"}));

    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(say(&mut john, "general", &format!("hello {i}"), &format!("c{i}")).await);
    }
    assert!(ids.windows(2).all(|w| w[0] < w[1]));
    for (i, id) in ids.iter().enumerate() {
        let message = next_of(&mut jane, "message").await;
        assert_eq!(message["id"], *id);
        assert_eq!(message["from"], "johndoe");
        assert_eq!(message["room"], "general");
        assert_eq!(message["text"], format!("hello {i}"));
        assert!(message["ts"].as_str().unwrap().ends_with('Z'));
    }
    let reply = say(&mut jane, "general", "hi john", "j1").await;
    // The sender hears its own messages too; skip those.
    let message = loop {
        let message = next_of(&mut john, "message").await;
        if message["from"] != "johndoe" {
            break message;
        }
    };
    assert_eq!((message["id"].as_i64().unwrap(), message["from"].as_str().unwrap()), (reply, "janedoe"));

    command(&mut jane, json!({"type": "leave", "room": "general"})).await;
    let presence = presence_of(&mut john, "janedoe").await;
    assert_eq!(presence["event"], "leave");
    command(&mut jane, json!({"type": "join", "room": "general"})).await;
    next_of(&mut jane, "history").await;
    drop(jane);
    assert_eq!(presence_of(&mut john, "janedoe").await["event"], "join");
    assert_eq!(presence_of(&mut john, "janedoe").await["event"], "leave", "a closed socket leaves");
}

#[tokio::test]
async fn a_second_socket_of_the_same_user_is_not_a_new_presence() {
    let server = spawn(&[]).await;
    let mut watcher = chat(&server, "janedoe", "secret2").await;
    join(&mut watcher, "r").await;
    let mut first = chat(&server, "johndoe", "secret").await;
    join(&mut first, "r").await;
    assert_eq!(presence_of(&mut watcher, "johndoe").await["event"], "join");
    let mut second = chat(&server, "johndoe", "secret").await;
    let (members, _) = join(&mut second, "r").await;
    assert_eq!(members, ["janedoe", "johndoe"]);
    drop(first);
    quiet(&mut watcher, "presence", Duration::from_millis(400)).await;
    drop(second);
    assert_eq!(presence_of(&mut watcher, "johndoe").await["event"], "leave");
}

#[tokio::test]
async fn no_message_from_a_room_one_did_not_join() {
    let server = spawn(&[]).await;
    let mut john = chat(&server, "johndoe", "secret").await;
    let mut jane = chat(&server, "janedoe", "secret2").await;
    join(&mut john, "a").await;
    join(&mut jane, "b").await;
    say(&mut john, "a", "for room a only", "1").await;
    quiet(&mut jane, "message", Duration::from_millis(400)).await;

    command(&mut jane, json!({"type": "history", "room": "a"})).await;
    let error = next_of(&mut jane, "error").await;
    assert_eq!(error["code"], "forbidden");
    command(&mut jane, json!({"type": "send", "room": "a", "text": "sneaky"})).await;
    assert_eq!(next_of(&mut jane, "error").await["code"], "forbidden");
    assert_eq!(count_rows(&server.data_dir(), "publications").await, 1);
}

#[tokio::test]
async fn history_pages_by_id() {
    let server = spawn(&["--max-messages-per-sec=1000"]).await;
    let mut john = chat(&server, "johndoe", "secret").await;
    join(&mut john, "h").await;
    let mut ids = Vec::new();
    for i in 0..120 {
        ids.push(say(&mut john, "h", &format!("m{i}"), &i.to_string()).await);
    }
    let mut jane = chat(&server, "janedoe", "secret2").await;
    let (_, latest) = join(&mut jane, "h").await;
    let latest: Vec<i64> = latest.iter().map(|m| m["id"].as_i64().unwrap()).collect();
    assert_eq!(latest, ids[70..], "the join sends the newest 50, oldest first");

    let mut seen = latest.clone();
    loop {
        command(&mut jane, json!({"type": "history", "room": "h", "before": seen[0], "limit": 30})).await;
        let page = next_of(&mut jane, "history").await;
        let page: Vec<i64> =
            page["messages"].as_array().unwrap().iter().map(|m| m["id"].as_i64().unwrap()).collect();
        if page.is_empty() {
            break;
        }
        assert!(page.len() <= 30);
        seen.splice(0..0, page);
    }
    assert_eq!(seen, ids);
    for limit in [0, 101] {
        command(&mut jane, json!({"type": "history", "room": "h", "limit": limit})).await;
        assert_eq!(next_of(&mut jane, "error").await["code"], "bad_request");
    }
}

#[tokio::test]
async fn bad_commands_get_error_frames_store_nothing_and_keep_the_socket() {
    let server = spawn(&[]).await;
    let mut john = chat(&server, "johndoe", "secret").await;
    join(&mut john, "general").await;
    let long_room = "r".repeat(65);
    let too_long = "x".repeat(4097);
    let cases = [
        ("{\"type\":\"dance\"}".to_owned(), "bad_request"),
        ("not json".to_owned(), "bad_request"),
        ("{\"type\":\"send\",\"room\":\"general\"}".to_owned(), "bad_request"),
        (json!({"type": "join", "room": long_room}).to_string(), "bad_request"),
        (json!({"type": "join", "room": "no spaces"}).to_string(), "bad_request"),
        (json!({"type": "join", "room": ""}).to_string(), "bad_request"),
        (json!({"type": "send", "room": "general", "text": ""}).to_string(), "bad_request"),
        (json!({"type": "send", "room": "general", "text": too_long}).to_string(), "too_big"),
        (json!({"type": "send", "room": "elsewhere", "text": "hi"}).to_string(), "forbidden"),
        (
            json!({"type": "send", "room": "general", "text": "hi", "from": "admin"}).to_string(),
            "bad_request",
        ),
        (json!({"type": "leave", "room": "elsewhere"}).to_string(), "bad_request"),
        // A room's message follows the chat's rules whichever frame carries it.
        (json!({"type": "publish", "channel": "general", "data": {"text": ""}}).to_string(), "bad_request"),
        (json!({"type": "publish", "channel": "general", "data": {"text": too_long}}).to_string(), "too_big"),
    ];
    for (frame, code) in cases {
        send(&mut john, &frame).await;
        let error = next_of(&mut john, "error").await;
        assert_eq!(error["code"], code, "{frame}");
        assert!(error["detail"].as_str().is_some_and(|d| !d.is_empty()));
    }
    // Sent together, publications are checked one by one all the same.
    let batch = [json!({"text": too_long}), json!({"text": ""})].map(|data| {
        Ok(Message::text(json!({"type": "publish", "channel": "general", "data": data}).to_string()))
    });
    john.send_all(&mut futures_util::stream::iter(batch)).await.unwrap();
    assert_eq!(next_of(&mut john, "error").await["code"], "too_big");
    assert_eq!(next_of(&mut john, "error").await["code"], "bad_request");
    john.send(Message::Binary(vec![1, 2].into())).await.unwrap();
    assert_eq!(next_of(&mut john, "error").await["code"], "bad_request");

    command(&mut john, json!({"type": "ping"})).await;
    assert_eq!(next_of(&mut john, "pong").await, json!({"type": "pong"}));
    assert_eq!(count_rows(&server.data_dir(), "publications").await, 0, "nothing stored");
    let id = say(&mut john, "general", "still works", "ok").await;
    assert!(id > 0);
}

#[tokio::test]
async fn every_acknowledged_message_survives_a_crash() {
    let server = spawn(&["--max-messages-per-sec=1000"]).await;
    let pair = server.login("johndoe", "secret").await;
    let mut ws = server.ws(&format!("/chat/ws?token={}", pair.access), &[]).await.unwrap();
    next_json(&mut ws).await;
    join(&mut ws, "durable").await;

    // Send without waiting, collect acks as they come, and kill the server mid-stream.
    let (mut sink, mut stream) = ws.split();
    let sender = tokio::spawn(async move {
        for i in 0..2000 {
            let frame =
                json!({"type": "send", "room": "durable", "text": format!("m{i}"), "ref": i.to_string()});
            if sink.send(Message::Text(frame.to_string().into())).await.is_err() {
                break;
            }
            // Paced on purpose: frames still come when the server is killed below.
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    });
    let mut acked = Vec::new();
    while let Ok(Some(Ok(Message::Text(text)))) =
        tokio::time::timeout(Duration::from_secs(5), stream.next()).await
    {
        let frame: Value = serde_json::from_str(&text).unwrap();
        if frame["type"] == "ack" {
            acked.push(frame["id"].as_i64().unwrap());
            if acked.len() == 100 {
                break;
            }
        }
    }
    assert_eq!(acked.len(), 100);
    let server = server.restart().await;
    sender.abort();

    let pair = server.login("johndoe", "secret").await;
    let mut ws = server.ws(&format!("/chat/ws?token={}", pair.access), &[]).await.unwrap();
    next_json(&mut ws).await;
    join(&mut ws, "durable").await;
    let mut stored = Vec::new();
    let mut before: Option<i64> = None;
    loop {
        let mut request = json!({"type": "history", "room": "durable", "limit": 100});
        if let Some(b) = before {
            request["before"] = json!(b);
        }
        command(&mut ws, request).await;
        let page = next_of(&mut ws, "history").await;
        let ids: Vec<i64> =
            page["messages"].as_array().unwrap().iter().map(|m| m["id"].as_i64().unwrap()).collect();
        if ids.is_empty() {
            break;
        }
        before = Some(ids[0]);
        stored.extend(ids);
    }
    for id in &acked {
        assert!(stored.contains(id), "acked message {id} lost");
    }
}

#[tokio::test]
async fn a_users_daily_chat_quota_stores_nothing_beyond_it() {
    let server = spawn(&["--chat-bytes-per-user-per-day=10"]).await;
    let mut john = chat(&server, "johndoe", "secret").await;
    let mut jane = chat(&server, "janedoe", "secret2").await;
    join(&mut john, "general").await;
    join(&mut jane, "general").await;
    say(&mut john, "general", "hello", "1").await;
    say(&mut john, "general", "world", "2").await;
    command(&mut john, json!({"type": "send", "room": "general", "text": "!", "ref": "3"})).await;
    let error = next_of(&mut john, "error").await;
    assert_eq!(error["code"], "rate_limited", "{error}");
    assert_eq!(count_rows(&server.data_dir(), "publications").await, 2, "nothing stored beyond the quota");
    say(&mut jane, "general", "mine", "j1").await; // her own quota
    command(&mut john, json!({"type": "ping"})).await;
    assert_eq!(next_of(&mut john, "pong").await["type"], "pong", "the socket stays open");
}

/// Joins `room` with `since` and returns the ids of the messages recovered and the history frame.
async fn rejoin(ws: &mut Ws, room: &str, offset: i64, epoch: &str) -> (Vec<i64>, Value) {
    command(ws, json!({"type": "join", "room": room, "since": {"offset": offset, "epoch": epoch}})).await;
    assert_eq!(next_of(ws, "members").await["room"], room);
    let mut ids = Vec::new();
    loop {
        let frame = next_json(ws).await;
        match frame["type"].as_str() {
            Some("message") => ids.push(frame["id"].as_i64().unwrap()),
            Some("history") => return (ids, frame),
            _ => {}
        }
    }
}

#[tokio::test]
async fn a_member_who_comes_back_gets_what_was_said_meanwhile_once() {
    let server = spawn(&[]).await;
    let mut john = chat(&server, "johndoe", "secret").await;
    command(&mut john, json!({"type": "join", "room": "back"})).await;
    let first = next_of(&mut john, "history").await;
    assert_eq!((first["offset"].as_i64(), first["epoch"].as_str()), (Some(0), Some("")));
    say(&mut john, "back", "one", "c1").await;
    let (_, history) = join(&mut john, "back").await;
    assert_eq!(history.len(), 1);
    drop(john);

    let mut jane = chat(&server, "janedoe", "secret2").await;
    join(&mut jane, "back").await;
    command(&mut jane, json!({"type": "join", "room": "back"})).await;
    let now = next_of(&mut jane, "history").await;
    let epoch = now["epoch"].as_str().unwrap().to_owned();
    assert_eq!(now["offset"], 1);
    assert!(!epoch.is_empty());
    for (i, text) in ["two", "three", "four"].into_iter().enumerate() {
        assert_eq!(say(&mut jane, "back", text, &format!("j{i}")).await, i as i64 + 2);
    }

    let mut john = chat(&server, "johndoe", "secret").await;
    let (ids, answer) = rejoin(&mut john, "back", 1, &epoch).await;
    assert_eq!(ids, [2, 3, 4], "the missed messages, in order, once");
    assert_eq!(answer["messages"], json!([]));
    assert_eq!((answer["recovered"].as_bool(), answer["offset"].as_i64()), (Some(true), Some(4)));
    assert_eq!(answer["epoch"], epoch.as_str());
    say(&mut jane, "back", "five", "j5").await;
    let live = next_of(&mut john, "message").await;
    assert_eq!(live["id"], 5, "then the live ones");
    assert_eq!(live["epoch"], epoch.as_str(), "a numbered frame names its epoch");

    // Another epoch: the newest messages instead, and not recovered.
    let mut other = chat(&server, "johndoe", "secret").await;
    let (ids, answer) = rejoin(&mut other, "back", 1, "0000000000000000").await;
    assert!(ids.is_empty());
    assert_eq!(answer["recovered"], false);
    assert_eq!(answer["messages"].as_array().unwrap().len(), 5);
    // Already in the room: nothing recovered, the same answer as a plain join.
    let (ids, answer) = rejoin(&mut other, "back", 1, &epoch).await;
    assert!(ids.is_empty());
    assert_eq!((answer["recovered"].as_bool(), answer["offset"].as_i64()), (Some(false), Some(5)));
}
