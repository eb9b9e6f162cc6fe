//! A socket's life: bound to its token (expiry, in-band refresh, revocation), and its limits.

use crate::helpers::{assert_echo, close_code, eventually, next_json, next_text, send, spawn, Ws};
use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::Message;

async fn secured(server: &crate::helpers::Server, access: &str) -> Ws {
    let bearer = format!("Bearer {access}");
    let mut ws = server.ws("/secured-ws", &[("authorization", &bearer)]).await.unwrap();
    assert!(next_text(&mut ws).await.starts_with("Welcome"));
    ws
}

#[tokio::test]
async fn a_socket_is_warned_then_closed_when_its_token_expires() {
    let server = spawn(&["--access-ttl=3s", "--expiry-warning=2s"]).await;
    let pair = server.login("johndoe", "secret").await;
    let started = Instant::now();
    let mut ws = server.ws(&format!("/chat/ws?token={}", pair.access), &[]).await.unwrap();
    assert_eq!(next_json(&mut ws).await["type"], "welcome");
    let warning = next_json(&mut ws).await;
    assert_eq!(warning["type"], "expiring");
    assert!(warning["in_s"].as_u64().unwrap() <= 2, "{warning}");
    assert_eq!(close_code(&mut ws, Duration::from_secs(5)).await, (4001, "token expired".to_owned()));
    // `exp` has whole seconds, so a 3 s token lives between 2 and 3 s.
    assert!(started.elapsed() >= Duration::from_millis(1500), "closed too early: {:?}", started.elapsed());
}

#[tokio::test]
async fn in_band_refresh_keeps_the_socket_past_the_first_expiry() {
    let server = spawn(&["--access-ttl=4s", "--expiry-warning=1s"]).await;
    let pair = server.login("johndoe", "secret").await;
    let mut ws = secured(&server, &pair.access).await;
    let first_exp = crate::helpers::claims(&pair.access)["exp"].as_i64().unwrap();

    // `exp` has whole seconds: a login 1.5 s later expires at least a second later.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let next = server.login("johndoe", "secret").await;
    send(&mut ws, &json!({"type": "refresh", "token": next.access}).to_string()).await;
    let refreshed = loop {
        let frame = next_json(&mut ws).await;
        if frame["type"] == "refreshed" {
            break frame;
        }
        assert_eq!(frame["type"], "expiring");
    };
    assert!(refreshed["exp"].as_i64().unwrap() > first_exp);

    // Past the first token's expiry, the socket still echoes (after the new token's warning).
    let first_expiry =
        std::time::UNIX_EPOCH + Duration::from_secs(first_exp as u64) + Duration::from_millis(300);
    tokio::time::sleep(first_expiry.duration_since(std::time::SystemTime::now()).unwrap_or_default()).await;
    send(&mut ws, "still here").await;
    loop {
        let text = next_text(&mut ws).await;
        if text == "You wrote: still here" {
            break;
        }
        assert!(text.contains("expiring"), "{text}");
    }
    // And it closes at the second token's expiry.
    assert_eq!(close_code(&mut ws, Duration::from_secs(5)).await.0, 4001);

    // Refresh with someone else's token, or garbage: an error frame, the socket stays.
    let mut ws = secured(&server, &server.login("johndoe", "secret").await.access).await;
    let jane = server.login("janedoe", "secret2").await;
    for token in [jane.access.as_str(), "garbage", next.refresh.as_str()] {
        send(&mut ws, &json!({"type": "refresh", "token": token}).to_string()).await;
        let error: serde_json::Value = serde_json::from_str(&next_text(&mut ws).await).unwrap();
        assert_eq!(error["type"], "error", "{token}");
        assert_eq!(error["code"], "forbidden");
    }
    assert_echo(&mut ws).await;
}

#[tokio::test]
async fn logout_closes_live_sockets_with_4003_within_a_second() {
    let server = spawn(&[]).await;
    let pair = server.login("johndoe", "secret").await;
    let other = server.login("johndoe", "secret").await;
    let mut ws = secured(&server, &pair.access).await;
    let mut chat = server.ws(&format!("/chat/ws?token={}", pair.access), &[]).await.unwrap();
    let mut untouched = secured(&server, &other.access).await;

    let started = Instant::now();
    let response = server.http.post(server.url("/logout")).bearer_auth(&pair.access).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 204);
    assert_eq!(close_code(&mut ws, Duration::from_secs(1)).await, (4003, "token revoked".to_owned()));
    assert_eq!(close_code(&mut chat, Duration::from_secs(1)).await.0, 4003);
    assert!(started.elapsed() < Duration::from_secs(1));
    assert_echo(&mut untouched).await;
}

#[tokio::test]
async fn a_reused_refresh_token_closes_the_logins_sockets() {
    let server = spawn(&["--refresh-grace=0s"]).await;
    let pair = server.login("johndoe", "secret").await;
    let mut ws = secured(&server, &pair.access).await;
    assert_eq!(server.refresh(&pair.refresh).await.status().as_u16(), 200);
    assert_eq!(server.refresh(&pair.refresh).await.status().as_u16(), 401);
    assert_eq!(close_code(&mut ws, Duration::from_secs(1)).await.0, 4003);
}

#[tokio::test]
async fn disabling_a_user_from_the_cli_closes_their_sockets() {
    let server = spawn(&[]).await;
    let pair = server.login("johndoe", "secret").await;
    let jane = server.login("janedoe", "secret2").await;
    let mut ws = secured(&server, &pair.access).await;
    let mut other = secured(&server, &jane.access).await;
    let disabled = server.cli(&["user", "disable", "johndoe"], "").await;
    assert!(disabled.status.success());
    let started = Instant::now();
    assert_eq!(close_code(&mut ws, Duration::from_secs(1)).await.0, 4003);
    assert!(started.elapsed() < Duration::from_secs(1));
    assert_echo(&mut other).await;
}

#[tokio::test]
async fn oversize_messages_close_with_1009_and_the_server_carries_on() {
    let server = spawn(&["--max-message-bytes=1024"]).await;
    let pair = server.login("johndoe", "secret").await;
    let mut bystander = secured(&server, &pair.access).await;

    let mut ws = secured(&server, &pair.access).await;
    send(&mut ws, &"x".repeat(1000)).await;
    assert_eq!(next_text(&mut ws).await.len(), "You wrote: ".len() + 1000);
    send(&mut ws, &"x".repeat(5000)).await;
    assert_eq!(close_code(&mut ws, Duration::from_secs(2)).await.0, 1009);
    assert_echo(&mut bystander).await;
}

#[tokio::test]
async fn floods_close_with_4029() {
    let server = spawn(&["--max-messages-per-sec=5"]).await;
    let pair = server.login("johndoe", "secret").await;
    let mut bystander = secured(&server, &pair.access).await;
    let mut ws = secured(&server, &pair.access).await;
    for i in 0..30 {
        if ws.send(Message::Text(format!("m{i}").into())).await.is_err() {
            break;
        }
    }
    assert_eq!(close_code(&mut ws, Duration::from_secs(2)).await, (4029, "rate limited".to_owned()));
    // Within the rate, a socket lives on.
    for _ in 0..3 {
        assert_echo(&mut bystander).await;
        // Paced below the rate on purpose: the time between messages is what is tested.
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test]
async fn binary_and_invalid_utf8_get_their_close_codes() {
    let server = spawn(&[]).await;
    let pair = server.login("johndoe", "secret").await;
    let mut ws = secured(&server, &pair.access).await;
    ws.send(Message::Binary(vec![0, 1, 2].into())).await.unwrap();
    assert_eq!(close_code(&mut ws, Duration::from_secs(1)).await.0, 1003);

    let mut ws = secured(&server, &pair.access).await;
    let bad = Frame::message(vec![0xff, 0xfe, 0xfd], OpCode::Data(Data::Text), true);
    ws.send(Message::Frame(bad)).await.unwrap();
    assert_eq!(close_code(&mut ws, Duration::from_secs(1)).await.0, 1007);

    let mut ws = secured(&server, &pair.access).await;
    send(&mut ws, "{not json").await;
    assert_eq!(next_text(&mut ws).await, "You wrote: {not json");
}

#[tokio::test]
async fn silent_sockets_time_out_and_answering_ones_stay() {
    let server = spawn(&["--idle-timeout=1500ms", "--ping-interval=300ms"]).await;
    let pair = server.login("johndoe", "secret").await;
    let mut silent = secured(&server, &pair.access).await;
    let mut alive = secured(&server, &pair.access).await;

    // `alive` keeps reading, so its client answers the pings; `silent` does not read at all.
    let deadline = Instant::now() + Duration::from_millis(2500);
    let mut pings = 0;
    while Instant::now() < deadline {
        if let Ok(Some(Ok(Message::Ping(_)))) =
            tokio::time::timeout(Duration::from_millis(100), alive.next()).await
        {
            pings += 1;
        }
    }
    assert!(pings >= 2, "server pinged {pings} times");
    assert_echo(&mut alive).await;
    // The silent client's pongs are long overdue: it reads the pings and the close frame, unless
    // the server, done waiting for its close reply, has already dropped the connection.
    let end = tokio::time::timeout(Duration::from_secs(1), async {
        loop {
            match silent.next().await {
                Some(Ok(Message::Close(frame))) => {
                    return Ok(frame.map(|f| (u16::from(f.code), f.reason.to_string())))
                }
                Some(Ok(_)) => continue,
                Some(Err(err)) => return Err(err.to_string()),
                None => return Err("ended".into()),
            }
        }
    })
    .await
    .expect("the silent socket is closed, not left open");
    if let Ok(frame) = end {
        assert_eq!(frame, Some((1000, "idle timeout".to_owned())));
    }
}

#[tokio::test]
async fn sockets_per_user_are_capped() {
    let server = spawn(&["--max-sockets-per-user=2"]).await;
    let pair = server.login("johndoe", "secret").await;
    let bearer = format!("Bearer {}", pair.access);
    let first = secured(&server, &pair.access).await;
    let _second = secured(&server, &pair.access).await;
    assert_eq!(server.ws_refused("/secured-ws", &[("authorization", &bearer)]).await, 429);
    let mut ws = server.ws(&format!("/ws?token={}", pair.access), &[]).await.unwrap();
    assert_eq!(next_text(&mut ws).await, "too many sockets for this user");
    assert_eq!(close_code(&mut ws, Duration::from_secs(1)).await.0, 4029);
    // Another user is not affected; a closed socket frees its place.
    let jane = server.login("janedoe", "secret2").await;
    secured(&server, &jane.access).await;
    drop(first);
    let mut again =
        eventually("the closed socket's place to come back", Duration::from_secs(2), async || {
            server.ws("/secured-ws", &[("authorization", &bearer)]).await
        })
        .await;
    assert!(next_text(&mut again).await.starts_with("Welcome"));
}

#[tokio::test]
async fn a_client_close_is_answered_with_a_close_frame() {
    let server = spawn(&[]).await;
    let pair = server.login("johndoe", "secret").await;
    let mut ws = secured(&server, &pair.access).await;
    ws.close(Some(tokio_tungstenite::tungstenite::protocol::CloseFrame {
        code: tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode::Normal,
        reason: "bye".into(),
    }))
    .await
    .unwrap();
    assert_eq!(close_code(&mut ws, Duration::from_secs(1)).await.0, 1000);
}

#[tokio::test]
async fn sockets_without_a_token_are_capped() {
    let server = spawn(&["--max-anonymous-sockets=2"]).await;
    let mut first = server.ws("/ws/optional", &[]).await.unwrap();
    assert_eq!(next_text(&mut first).await, "Anonymous connection");
    // A chat socket yet to send its auth frame holds a place too.
    let mut waiting = server.ws("/chat/ws", &[]).await.unwrap();
    assert_eq!(server.ws_refused("/ws/optional", &[]).await, 429);
    assert_eq!(server.ws_refused("/chat/ws", &[]).await, 429);
    // Sockets with a token are not counted.
    let pair = server.login("johndoe", "secret").await;
    let mut bound = server.ws(&format!("/ws/optional?token={}", pair.access), &[]).await.unwrap();
    assert_eq!(next_text(&mut bound).await, "Successfully Login!");
    // Authenticated, the chat socket gives its place back; so does a closed anonymous one.
    send(&mut waiting, &json!({"type": "auth", "token": pair.access}).to_string()).await;
    assert_eq!(next_json(&mut waiting).await["type"], "welcome");
    let mut second = server.ws("/ws/optional", &[]).await.unwrap();
    assert_eq!(next_text(&mut second).await, "Anonymous connection");
    first.close(None).await.unwrap();
    drop(first);
    let mut third =
        eventually("the closed socket's place to come back", Duration::from_secs(2), async || {
            server.ws("/ws/optional", &[]).await
        })
        .await;
    assert_eq!(next_text(&mut third).await, "Anonymous connection");
}
