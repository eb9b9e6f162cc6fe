//! Every row of the WebSocket table in docs/protocol.md, every transport and every mode, success and failure.

use crate::helpers::{assert_echo, close_code, eventually, next_json, next_text, send, spawn};
use crate::refresh::cookie_login;
use futures_util::SinkExt;
use serde_json::Value;
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;

const SECOND: Duration = Duration::from_secs(1);

#[tokio::test]
async fn secured_ws_takes_a_bearer_header_and_refuses_before_the_upgrade() {
    let server = spawn(&[]).await;
    let pair = server.login("johndoe", "secret").await;
    let bearer = format!("Bearer {}", pair.access);

    let mut ws = server.ws("/secured-ws", &[("authorization", &bearer)]).await.unwrap();
    assert_eq!(next_text(&mut ws).await, "Welcome johndoe!");
    assert_echo(&mut ws).await;
    send(&mut ws, "second").await;
    assert_eq!(next_text(&mut ws).await, "You wrote: second");

    assert_eq!(server.ws_refused("/secured-ws", &[]).await, 401);
    assert_eq!(server.ws_refused("/secured-ws", &[("authorization", "Bearer garbage")]).await, 401);
    let refresh = format!("Bearer {}", pair.refresh);
    assert_eq!(server.ws_refused("/secured-ws", &[("authorization", &refresh)]).await, 401);
    assert_eq!(server.ws_refused("/secured-ws", &[("authorization", "Basic am9objpzZWNyZXQ=")]).await, 403);
    assert_eq!(server.ws_refused("/secured-ws", &[("authorization", &pair.access)]).await, 403, "no scheme");
    // The query string is not a transport of this endpoint.
    let query = format!("/secured-ws?token={}", pair.access);
    assert_eq!(server.ws_refused(&query, &[]).await, 401);

    let plain = server.http.get(server.url("/secured-ws")).bearer_auth(&pair.access).send().await.unwrap();
    assert_eq!(plain.status().as_u16(), 426, "a plain GET is told to upgrade");
    assert_echo(&mut ws).await;
}

#[tokio::test]
async fn ws_query_token_sends_claims_or_the_error_and_1008() {
    let server = spawn(&[]).await;
    let pair = server.login("johndoe", "secret").await;

    let mut ws = server.ws(&format!("/ws?token={}", pair.access), &[]).await.unwrap();
    assert_eq!(next_text(&mut ws).await, "Successfully Login!");
    let claims: Value = serde_json::from_str(&next_text(&mut ws).await).unwrap();
    assert_eq!(claims["sub"], "johndoe");
    assert_eq!(claims["type"], "access");
    assert_echo(&mut ws).await;

    for (query, error) in [
        ("/ws?token=garbage".to_owned(), "malformed token"),
        ("/ws".to_owned(), "Not authenticated"),
        (format!("/ws?token={}", pair.refresh), "wrong token type"),
    ] {
        let mut ws = server.ws(&query, &[]).await.unwrap();
        assert_eq!(next_text(&mut ws).await, error, "{query}");
        assert_eq!(close_code(&mut ws, SECOND).await.0, 1008, "{query}");
    }
}

#[tokio::test]
async fn ws_cookie_needs_the_csrf_token_and_a_matching_origin() {
    let server = spawn(&[]).await;
    let [access, csrf, ..] = cookie_login(&server, "johndoe", "secret").await;
    let cookie = format!("access_token_cookie={access}; csrf_access_token={csrf}");
    let origin = server.base.clone();

    let path = format!("/ws?csrf_token={csrf}");
    let mut ws = server.ws(&path, &[("cookie", &cookie), ("origin", &origin)]).await.unwrap();
    assert_eq!(next_text(&mut ws).await, "Successfully Login!");
    next_text(&mut ws).await;
    assert_echo(&mut ws).await;

    for path in ["/ws".to_owned(), "/ws?csrf_token=wrong".to_owned()] {
        let mut ws = server.ws(&path, &[("cookie", &cookie), ("origin", &origin)]).await.unwrap();
        assert_eq!(next_text(&mut ws).await, "CSRF token missing or incorrect", "{path}");
        assert_eq!(close_code(&mut ws, SECOND).await.0, 1008);
    }

    // Cross-site WebSocket hijacking: a page elsewhere rides on the user's cookies (even with a
    // stolen CSRF value); the upgrade is refused before anything is read.
    for evil in ["https://evil.example", "null", "http://127.0.0.1:1"] {
        let status = server.ws_refused(&path, &[("cookie", &cookie), ("origin", evil)]).await;
        assert_eq!(status, 403, "{evil}");
    }
    // A cookie without any Origin is not from a browser page: refused too.
    assert_eq!(server.ws_refused(&path, &[("cookie", &cookie)]).await, 403);
    // A configured origin is allowed.
    let listed = spawn(&["--allowed-origins=https://app.example,https://other.example"]).await;
    let [access, csrf, ..] = cookie_login(&listed, "johndoe", "secret").await;
    let cookie = format!("access_token_cookie={access}");
    let mut ws = listed
        .ws(&format!("/ws?csrf_token={csrf}"), &[("cookie", &cookie), ("origin", "https://app.example")])
        .await
        .unwrap();
    assert_eq!(next_text(&mut ws).await, "Successfully Login!");
    // A foreign origin is refused for token transports as well.
    let pair = listed.login("johndoe", "secret").await;
    let bearer = format!("Bearer {}", pair.access);
    assert_eq!(
        listed
            .ws_refused("/secured-ws", &[("authorization", &bearer), ("origin", "https://evil.example")])
            .await,
        403
    );
    // The browser shows only a closed socket: the log says why, with the origin.
    let logged = eventually("the refusal logged", Duration::from_secs(2), async || {
        let log = listed.log();
        match log.contains("its Origin is not in --allowed-origins") && log.contains("evil.example") {
            true => Ok(()),
            false => Err(log),
        }
    });
    logged.await;
}

#[tokio::test]
async fn each_mode_has_its_endpoint() {
    let server = spawn(&[]).await;
    let pair = server.login("johndoe", "secret").await;
    let refreshed: Value = server.refresh(&pair.refresh).await.json().await.unwrap();
    let stale_access = refreshed["access_token"].as_str().unwrap().to_owned();
    let refresh = refreshed["refresh_token"].as_str().unwrap().to_owned();

    // optional: anonymous welcome, identity with a token, refusal for a bad one.
    let mut ws = server.ws("/ws/optional", &[]).await.unwrap();
    assert_eq!(next_text(&mut ws).await, "Anonymous connection");
    assert_eq!(next_text(&mut ws).await, "null");
    assert_echo(&mut ws).await;
    let mut ws = server.ws(&format!("/ws/optional?token={stale_access}"), &[]).await.unwrap();
    assert_eq!(next_text(&mut ws).await, "Successfully Login!");
    let mut ws = server.ws("/ws/optional?token=garbage", &[]).await.unwrap();
    assert_eq!(next_text(&mut ws).await, "malformed token");
    assert_eq!(close_code(&mut ws, SECOND).await.0, 1008);

    // refresh: a refresh token, not an access token.
    let mut ws = server.ws(&format!("/ws/refresh?token={refresh}"), &[]).await.unwrap();
    assert_eq!(next_text(&mut ws).await, "Successfully Login!");
    let claims: Value = serde_json::from_str(&next_text(&mut ws).await).unwrap();
    assert_eq!(claims["type"], "refresh");
    let mut ws = server.ws(&format!("/ws/refresh?token={stale_access}"), &[]).await.unwrap();
    assert_eq!(next_text(&mut ws).await, "wrong token type");

    // fresh: only a token straight from a password login.
    let mut ws = server.ws(&format!("/ws/fresh?token={}", pair.access), &[]).await.unwrap();
    assert_eq!(next_text(&mut ws).await, "Successfully Login!");
    let mut ws = server.ws(&format!("/ws/fresh?token={stale_access}"), &[]).await.unwrap();
    assert_eq!(next_text(&mut ws).await, "fresh token required");
    assert_eq!(close_code(&mut ws, SECOND).await.0, 1008);
}

async fn assert_chat_welcome(ws: &mut crate::helpers::Ws) {
    let welcome = next_json(ws).await;
    assert_eq!(welcome["type"], "welcome");
    assert_eq!(welcome["user"], "johndoe");
    assert!(welcome["exp"].is_i64());
}

#[tokio::test]
async fn chat_ws_accepts_every_transport() {
    let server = spawn(&[]).await;
    let pair = server.login("johndoe", "secret").await;

    let bearer = format!("Bearer {}", pair.access);
    let mut ws = server.ws("/chat/ws", &[("authorization", &bearer)]).await.unwrap();
    assert_chat_welcome(&mut ws).await;

    let mut ws = server.ws(&format!("/chat/ws?token={}", pair.access), &[]).await.unwrap();
    assert_chat_welcome(&mut ws).await;

    let [access, csrf, ..] = cookie_login(&server, "johndoe", "secret").await;
    let cookie = format!("access_token_cookie={access}");
    let mut ws = server
        .ws(&format!("/chat/ws?csrf_token={csrf}"), &[("cookie", &cookie), ("origin", &server.base)])
        .await
        .unwrap();
    assert_chat_welcome(&mut ws).await;

    // Subprotocol: the server must answer with `bearer`, or browsers drop the connection.
    let mut request = tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(
        server.ws_url("/chat/ws"),
    )
    .unwrap();
    request
        .headers_mut()
        .insert("sec-websocket-protocol", format!("bearer, {}", pair.access).parse().unwrap());
    let (mut ws, response) = tokio_tungstenite::connect_async(request).await.unwrap();
    assert_eq!(response.headers()["sec-websocket-protocol"], "bearer");
    assert_chat_welcome(&mut ws).await;

    // First frame.
    let mut ws = server.ws("/chat/ws", &[]).await.unwrap();
    send(&mut ws, &serde_json::json!({"type": "auth", "token": pair.access}).to_string()).await;
    assert_chat_welcome(&mut ws).await;
    send(&mut ws, "{\"type\":\"ping\"}").await;
    assert_eq!(next_json(&mut ws).await["type"], "pong");
}

#[tokio::test]
async fn chat_ws_refuses_bad_tokens_on_every_transport() {
    let server = spawn(&[]).await;
    let pair = server.login("johndoe", "secret").await;

    assert_eq!(server.ws_refused("/chat/ws", &[("authorization", "Bearer garbage")]).await, 401);
    assert_eq!(server.ws_refused("/chat/ws", &[("authorization", "Basic x")]).await, 403);

    let mut ws = server.ws("/chat/ws?token=garbage", &[]).await.unwrap();
    assert_eq!(close_code(&mut ws, SECOND).await, (1008, "malformed token".to_owned()));

    let cookie = format!("access_token_cookie={}", pair.access);
    let mut ws = server
        .ws("/chat/ws?csrf_token=wrong", &[("cookie", &cookie), ("origin", &server.base)])
        .await
        .unwrap();
    assert_eq!(close_code(&mut ws, SECOND).await.0, 1008);

    let mut ws = server.ws("/chat/ws", &[("sec-websocket-protocol", "bearer, garbage")]).await.unwrap();
    assert_eq!(close_code(&mut ws, SECOND).await.0, 1008);

    // A first frame that is not an auth frame, or a bad token in it.
    let mut ws = server.ws("/chat/ws", &[]).await.unwrap();
    send(&mut ws, "{\"type\":\"join\",\"room\":\"general\"}").await;
    assert_eq!(close_code(&mut ws, SECOND).await.0, 1008);
    let mut ws = server.ws("/chat/ws", &[]).await.unwrap();
    send(&mut ws, "{\"type\":\"auth\",\"token\":\"garbage\"}").await;
    assert_eq!(close_code(&mut ws, SECOND).await, (1008, "malformed token".to_owned()));
    let mut ws = server.ws("/chat/ws", &[]).await.unwrap();
    ws.send(Message::Binary(vec![1, 2, 3].into())).await.unwrap();
    assert_eq!(close_code(&mut ws, SECOND).await.0, 1008);

    // Silence: closed after 5 seconds.
    let started = std::time::Instant::now();
    let mut ws = server.ws("/chat/ws", &[]).await.unwrap();
    assert_eq!(close_code(&mut ws, Duration::from_secs(7)).await.0, 1008);
    assert!(started.elapsed() >= Duration::from_millis(4900));
}

/// A browser shows a refused socket as closed; the log says why, once per kind of refusal and
/// interval (anyone can knock), on every endpoint.
#[tokio::test]
async fn refused_handshakes_are_logged_once_per_kind_with_their_reason() {
    let server = spawn(&[]).await;
    for _ in 0..3 {
        let mut ws = server.ws("/ws?token=garbage", &[]).await.unwrap();
        assert_eq!(close_code(&mut ws, SECOND).await.0, 1008);
    }
    assert_eq!(server.ws_refused("/secured-ws", &[]).await, 401);
    let mut ws = server.ws("/connection/websocket", &[]).await.unwrap();
    send(&mut ws, "not a connect command").await;
    assert_eq!(close_code(&mut ws, SECOND * 2).await.0, 3501);

    let lines = |kind: &str| {
        let log = server.plain_log();
        let field = format!("kind=\"{kind}\"");
        log.lines()
            .filter(|l| l.contains("WebSocket refused") && l.contains(&field))
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    let logged = eventually("the three kinds logged", SECOND, async || match lines("bad_connect").len() {
        1 => Ok(()),
        _ => Err(server.plain_log()),
    });
    logged.await;
    let malformed = lines("malformed");
    assert_eq!(malformed.len(), 1, "one line for three refusals within the interval: {malformed:?}");
    assert!(
        malformed[0].contains("client=127.0.0.1") && malformed[0].contains("reason="),
        "{}",
        malformed[0]
    );
    assert_eq!(lines("missing").len(), 1);
    assert!(lines("bad_connect")[0].contains("3501"), "{:?}", lines("bad_connect"));
}
