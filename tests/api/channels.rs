//! Channels over real sockets: namespaces from the configuration file, subscribe and publish
//! rules, personal channels, offsets, both views of the default namespace, and bad input.

use crate::helpers::{next_json, send, spawn, Server, Ws};
use crate::tokens::count_rows;
use futures_util::SinkExt;
use serde_json::{json, Value};
use std::time::Duration;
use tempfile::TempDir;
use tokio_tungstenite::tungstenite::Message;

const NAMESPACES: &str = r#"
[[namespaces]]
name = "room"
subscribe = "any"
publish = "subscribers"
presence = true
# Room for every publication of the recovery test (300).
history_size = 1000

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
    server_with(&[]).await
}

async fn server_with(args: &[&str]) -> (Server, TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wsguard.toml");
    std::fs::write(&path, NAMESPACES).unwrap();
    let config = format!("--config={}", path.display());
    let mut args = args.to_vec();
    args.push(&config);
    let server = spawn(&args).await;
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

    // Unsubscribed: publishing needs a subscription again, and nothing more arrives. `unsubscribe`
    // has no answer: the refusal, answered after it, is what shows it was applied before Jane
    // publishes.
    send(&mut john, &json!({"type": "unsubscribe", "channel": "room:42"}).to_string()).await;
    refused(&mut john, json!({"type": "publish", "channel": "room:42", "data": 1}), "forbidden").await;
    let frame = json!({"type": "publish", "channel": "room:42", "data": 1, "ref": "d"});
    assert_eq!(next_not_presence_after(&mut jane, frame).await["offset"], 4);
    quiet(&mut john, Duration::from_millis(300)).await;
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
async fn commands_that_arrive_together_are_answered_and_published_in_order() {
    let (server, _config) = server_with(&["--max-messages-per-sec=1000"]).await;
    let mut john = connect(&server, "johndoe", "secret").await;
    let mut jane = connect(&server, "janedoe", "secret2").await;
    subscribe(&mut john, "room:7").await;
    subscribe(&mut jane, "room:7").await;
    // As many as the socket takes at once: the longest run.
    const RUN: usize = 64;
    let publish =
        |i: usize| json!({"type": "publish", "channel": "room:7", "data": i, "ref": format!("p{i}")});
    // One write: runs of publications, broken by refused ones, a frame that is not JSON, a ping.
    let mut frames: Vec<String> = (0..RUN).map(|i| publish(i).to_string()).collect();
    frames
        .push(json!({"type": "publish", "channel": "news:today", "data": 0, "ref": "api only"}).to_string());
    frames
        .push(json!({"type": "publish", "channel": "room:7", "data": 0, "ref": "r".repeat(65)}).to_string());
    frames.push("not json".to_owned());
    frames.extend((RUN..RUN + 5).map(|i| publish(i).to_string()));
    frames.push(json!({"type": "ping"}).to_string());
    frames.extend((RUN + 5..RUN + 10).map(|i| publish(i).to_string()));
    for frame in &frames {
        jane.feed(Message::Text(frame.as_str().into())).await.unwrap();
    }
    jane.flush().await.unwrap();

    let mut answers = Vec::new();
    while answers.len() < frames.len() {
        let frame = next_not_presence(&mut jane).await;
        if frame["type"] != "publication" {
            answers.push(frame);
        }
    }
    let ack = |i: usize| json!({"type": "ack", "ref": format!("p{i}"), "offset": i + 1});
    let mut expected: Vec<Value> = (0..RUN).map(ack).collect();
    let error = |code: &str| (Some("error".to_owned()), Some(code.to_owned()));
    let kinds: Vec<_> = answers[RUN..RUN + 3]
        .iter()
        .map(|a| (a["type"].as_str().map(str::to_owned), a["code"].as_str().map(str::to_owned)))
        .collect();
    assert_eq!(kinds, [error("forbidden"), error("bad_request"), error("bad_request")], "{answers:?}");
    expected.extend(answers[RUN..RUN + 3].iter().cloned());
    expected.extend((RUN..RUN + 5).map(ack));
    expected.push(json!({"type": "pong"}));
    expected.extend((RUN + 5..RUN + 10).map(ack));
    assert_eq!(answers, expected);

    for i in 0..RUN as u64 + 10 {
        let publication = next_not_presence(&mut john).await;
        assert_eq!((publication["offset"].as_u64(), publication["data"].as_u64()), (Some(i + 1), Some(i)));
    }
    quiet(&mut john, Duration::from_millis(200)).await;
    assert_eq!(count_rows(&server.data_dir(), "publications").await, RUN as i64 + 10);
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

/// Subscribes with `since` and returns the recovered publications' offsets and the answer.
async fn resubscribe(ws: &mut Ws, channel: &str, offset: i64, epoch: &str) -> (Vec<i64>, Value) {
    let frame = json!({"type": "subscribe", "channel": channel, "since": {"offset": offset, "epoch": epoch}});
    send(ws, &frame.to_string()).await;
    let mut recovered = Vec::new();
    loop {
        let frame = next_not_presence(ws).await;
        match frame["type"].as_str() {
            Some("publication") => recovered.push(frame["offset"].as_i64().unwrap()),
            Some("subscribed") => return (recovered, frame),
            _ => panic!("unexpected {frame}"),
        }
    }
}

#[tokio::test]
async fn a_client_that_comes_back_recovers_what_it_missed_or_is_told_it_cannot() {
    let (server, _config) = server().await;
    let mut publisher = connect(&server, "janedoe", "secret2").await;
    subscribe(&mut publisher, "room:r").await;
    let publish = |i: i64| json!({"type": "publish", "channel": "room:r", "data": i});
    for i in 1..=3 {
        send(&mut publisher, &publish(i).to_string()).await;
    }
    let mut john = connect(&server, "johndoe", "secret").await;
    let seen = subscribe(&mut john, "room:r").await;
    let epoch = seen["epoch"].as_str().unwrap().to_owned();
    assert_eq!(seen["offset"], 3);
    drop(john);
    for i in 4..=10 {
        send(&mut publisher, &publish(i).to_string()).await;
    }
    // Back: 4..10 in order, exactly once, then the answer; then live ones.
    let mut john = connect(&server, "johndoe", "secret").await;
    let (recovered, answer) = resubscribe(&mut john, "room:r", 3, &epoch).await;
    assert_eq!(recovered, (4..=10).collect::<Vec<_>>());
    assert_eq!((answer["recovered"].as_bool(), answer["offset"].as_i64()), (Some(true), Some(10)));
    send(&mut publisher, &publish(11).to_string()).await;
    let live = next_not_presence(&mut john).await;
    assert_eq!((live["offset"].as_i64(), live["epoch"].as_str()), (Some(11), Some(epoch.as_str())));

    // Up to date: nothing to recover, and recovered.
    let mut other = connect(&server, "johndoe", "secret").await;
    let (recovered, answer) = resubscribe(&mut other, "room:r", 11, &epoch).await;
    assert!(recovered.is_empty());
    assert_eq!(answer["recovered"], true);
    // Another epoch, or an offset the channel never reached: nothing stale, and not recovered.
    for (offset, epoch) in [(3, "0000000000000000"), (99, epoch.as_str())] {
        let mut ws = connect(&server, "johndoe", "secret").await;
        let (recovered, answer) = resubscribe(&mut ws, "room:r", offset, epoch).await;
        assert!(recovered.is_empty(), "{offset} {epoch}");
        assert_eq!((answer["recovered"].as_bool(), answer["offset"].as_i64()), (Some(false), Some(11)));
    }
    // Never seen anything: everything from 1.
    let mut fresh = connect(&server, "johndoe", "secret").await;
    let (recovered, _) = resubscribe(&mut fresh, "room:r", 0, "").await;
    assert_eq!(recovered, (1..=11).collect::<Vec<_>>());
    refused(
        &mut fresh,
        json!({"type": "subscribe", "channel": "room:s", "since": {"offset": -1, "epoch": ""}}),
        "bad_request",
    )
    .await;
}

#[tokio::test]
async fn a_recovery_is_bounded_in_bytes_as_well_as_in_count() {
    let (server, _config) = server().await;
    let mut publisher = connect(&server, "janedoe", "secret2").await;
    subscribe(&mut publisher, "room:big").await;
    // 40 publications of 60,000 bytes: 2.4 MB, over the 2 MiB one recovery sends.
    for i in 1..=40 {
        let data = json!({"n": i, "blob": "x".repeat(60_000)});
        let frame = json!({"type": "publish", "channel": "room:big", "data": data});
        let ack = next_not_presence_after(&mut publisher, frame).await;
        assert_eq!(ack["offset"], i, "{ack}");
        assert_eq!(next_not_presence(&mut publisher).await["offset"], i);
    }
    let epoch = subscribe(&mut publisher, "room:big").await["epoch"].as_str().unwrap().to_owned();
    let mut john = connect(&server, "johndoe", "secret").await;
    let (recovered, answer) = resubscribe(&mut john, "room:big", 0, "").await;
    assert!(recovered.is_empty(), "nothing, rather than more than a recovery sends");
    assert_eq!((answer["recovered"].as_bool(), answer["offset"].as_i64()), (Some(false), Some(40)));
    // The last 30 (1.8 MB) fit.
    let mut jane = connect(&server, "janedoe", "secret2").await;
    let (recovered, answer) = resubscribe(&mut jane, "room:big", 10, &epoch).await;
    assert_eq!((recovered, answer["recovered"].as_bool()), ((11..=40).collect(), Some(true)));
}

#[tokio::test]
async fn past_the_history_window_recovery_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wsguard.toml");
    std::fs::write(&path, "[[namespaces]]\nname = \"short\"\nsubscribe = \"any\"\npublish = \"subscribers\"\nhistory_size = 5\n").unwrap();
    let server = spawn(&[&format!("--config={}", path.display())]).await;
    let mut publisher = connect(&server, "janedoe", "secret2").await;
    let first = subscribe(&mut publisher, "short:x").await;
    assert_eq!(first["offset"], 0);
    for i in 1..=8 {
        let ack = command(&mut publisher, json!({"type": "publish", "channel": "short:x", "data": i})).await;
        assert_eq!(ack["offset"], i);
        assert_eq!(next_json(&mut publisher).await["offset"], i);
    }
    let epoch = subscribe(&mut publisher, "short:x").await["epoch"].as_str().unwrap().to_owned();
    let mut john = connect(&server, "johndoe", "secret").await;
    let (recovered, answer) = resubscribe(&mut john, "short:x", 2, &epoch).await;
    assert!(recovered.is_empty(), "4..8 are kept, 3 is gone: nothing stale");
    assert_eq!((answer["recovered"].as_bool(), answer["offset"].as_i64()), (Some(false), Some(8)));
    let mut jane = connect(&server, "janedoe", "secret2").await;
    let (recovered, answer) = resubscribe(&mut jane, "short:x", 3, &epoch).await;
    assert_eq!((recovered, answer["recovered"].as_bool()), ((4..=8).collect(), Some(true)));
}

#[tokio::test]
async fn recovery_while_publications_keep_coming_has_no_gap_and_no_repeat() {
    let (server, _config) = server_with(&["--max-messages-per-sec=10000"]).await;
    let mut publisher = connect(&server, "janedoe", "secret2").await;
    subscribe(&mut publisher, "room:busy").await;
    let ack = next_not_presence_after(
        &mut publisher,
        json!({"type": "publish", "channel": "room:busy", "data": 1}),
    )
    .await;
    assert_eq!(ack["offset"], 1);
    let mut john = connect(&server, "johndoe", "secret").await;
    let seen = subscribe(&mut john, "room:busy").await;
    let epoch = seen["epoch"].as_str().unwrap().to_owned();
    assert_eq!(seen["offset"], 1);
    drop(john);
    const TOTAL: i64 = 300;
    let (started, feeding) = tokio::sync::oneshot::channel();
    let mut started = Some(started);
    let feeder = tokio::spawn(async move {
        for i in 2..=TOTAL {
            send(&mut publisher, &json!({"type": "publish", "channel": "room:busy", "data": i}).to_string())
                .await;
            if let Some(started) = started.take_if(|_| i == 50) {
                let _ = started.send(());
            }
            if i % 50 == 0 {
                // Paced on purpose: publications keep coming while john resubscribes.
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        publisher
    });
    // John comes back once the feed is under way.
    tokio::time::timeout(Duration::from_secs(5), feeding).await.expect("the feed did not start").unwrap();
    let mut john = connect(&server, "johndoe", "secret").await;
    let (mut offsets, answer) = resubscribe(&mut john, "room:busy", 1, &epoch).await;
    assert_eq!(answer["recovered"], true, "{answer}");
    while offsets.last().copied().unwrap_or(1) < TOTAL {
        let frame = next_not_presence(&mut john).await;
        offsets.push(frame["offset"].as_i64().unwrap());
    }
    assert_eq!(offsets, (2..=TOTAL).collect::<Vec<_>>(), "recovered, then live: each once, in order");
    drop(feeder.await.unwrap());
}
