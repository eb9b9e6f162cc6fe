//! The application's connect and refresh proxies on wsguard's own sockets (`/connect`): a real
//! application (`application.rs`) admits sockets without a token from their forwarded headers,
//! prolongs or ends them, refuses, closes, fails in every way; and wsguard's start refuses a bad
//! `[proxy]`.

use crate::application::{Application, Reply};
use crate::helpers::{close_code, eventually, next_json, sample, send, serve_refused, spawn, Server, Ws};
use serde_json::json;
use std::time::Duration;
use tempfile::TempDir;

const SECOND: Duration = Duration::from_secs(1);

/// wsguard with `[proxy]` pointing at `app`, and the folder holding its configuration.
async fn with_proxy(app: &Application) -> (Server, TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("wsguard.toml");
    let file = format!(
        "[proxy]\nconnect = \"{}\"\nrefresh = \"{}\"\ntimeout = \"300ms\"\nforward_headers = [\"Cookie\", \"X-Request-Id\"]\n",
        app.url("connect"),
        app.url("refresh")
    );
    std::fs::write(&config, file).unwrap();
    (spawn(&[&format!("--config={}", config.display())]).await, dir)
}

/// `/connect` without a token, with a session cookie.
async fn open(server: &Server) -> Ws {
    let headers = [("cookie", "session=s3cr3t"), ("x-request-id", "req-1"), ("user-agent", "test")];
    server.ws("/connect", &headers).await.unwrap()
}

#[tokio::test]
async fn the_application_admits_a_socket_by_its_cookie_prolongs_it_then_lets_it_end() {
    let app = Application::start().await;
    let (server, _dir) = with_proxy(&app).await;
    let now = wsguard::clock::now_secs();
    app.reply("connect", Reply::Json(json!({"result": {"user": "alice", "expire_at": now + 2}})));
    app.reply("refresh", Reply::Json(json!({"result": {"expire_at": now + 4}})));

    let mut ws = open(&server).await;
    let welcome = next_json(&mut ws).await;
    assert_eq!((welcome["type"].as_str(), welcome["user"].as_str()), (Some("welcome"), Some("alice")));
    assert_eq!(welcome["exp"], now + 2);
    let connect = &app.calls("connect")[0];
    assert_eq!(connect.headers["cookie"], "session=s3cr3t");
    assert_eq!(connect.headers["x-request-id"], "req-1");
    assert!(connect.headers.get("user-agent").is_none_or(|agent| agent != "test"), "not in forward_headers");
    assert_eq!(connect.headers["content-type"], "application/json");
    let client = connect.body["client"].as_str().unwrap().to_owned();
    assert_eq!(
        connect.body,
        json!({"client": client, "transport": "websocket", "protocol": "json", "encoding": "json"})
    );

    // Its own channel works as a token's socket's does.
    send(&mut ws, &json!({"type": "subscribe", "channel": "user:alice"}).to_string()).await;
    assert_eq!(next_json(&mut ws).await["type"], "subscribed");

    // At expire_at the application prolongs it once, then says it has expired: closed as a
    // token's expiry is.
    let prolonged = eventually("the first refresh", 4 * SECOND, async || match app.calls("refresh").len() {
        0 => Err(0),
        n => Ok(n),
    });
    prolonged.await;
    app.reply("refresh", Reply::Json(json!({"result": {"expired": true}})));
    let (code, _) = close_code(&mut ws, 5 * SECOND).await;
    assert_eq!(code, 4001);
    let refreshes = app.calls("refresh");
    assert_eq!(refreshes.len(), 2, "{refreshes:?}");
    assert_eq!(
        refreshes[0].body,
        json!({"client": client, "transport": "websocket", "protocol": "json", "encoding": "json", "user": "alice"})
    );
}

/// Opens `/connect` and sends a first frame that is not `auth`: the answer comes at once.
async fn refused_with(server: &Server) -> (u16, String) {
    let mut ws = open(server).await;
    send(&mut ws, r#"{"type":"ping"}"#).await;
    close_code(&mut ws, 5 * SECOND).await
}

#[tokio::test]
async fn refusals_and_failures_admit_no_one_and_a_token_still_does() {
    let app = Application::start().await;
    let (server, _dir) = with_proxy(&app).await;

    app.reply("connect", Reply::Json(json!({"error": {"code": 1000, "message": "no session"}})));
    assert_eq!(refused_with(&server).await, (1008, "no session".into()));
    // A client with a token sends it in a first frame: the application's refusal leaves that to it.
    let pair = server.login("johndoe", "secret").await;
    let mut ws = open(&server).await;
    send(&mut ws, &json!({"type": "auth", "token": pair.access}).to_string()).await;
    assert_eq!(next_json(&mut ws).await["user"], "johndoe");

    app.reply("connect", Reply::Json(json!({"result": {"user": ""}})));
    assert_eq!(refused_with(&server).await, (1008, "anonymous connections are not admitted".into()));
    app.reply("connect", Reply::Json(json!({"result": {"user": "no such/user"}})));
    assert_eq!(refused_with(&server).await.0, 1013, "a name wsguard cannot take is the application's fault");

    for failing in [
        Reply::Status(500),
        Reply::Status(302),
        Reply::Garbage,
        Reply::Json(json!({"result": {}})),
        Reply::Slow(2 * SECOND, json!({"result": {"user": "alice"}})),
    ] {
        app.reply("connect", failing.clone());
        let (code, reason) = refused_with(&server).await;
        assert_eq!(code, 1013, "{failing:?}: {reason}");
    }

    app.reply("connect", Reply::Json(json!({"disconnect": {"code": 4501, "reason": "unauthorized"}})));
    let mut ws = open(&server).await;
    assert_eq!(
        close_code(&mut ws, 5 * SECOND).await,
        (4501, "unauthorized".into()),
        "at once, no first frame"
    );

    let metrics = server.http.get(server.url("/metrics")).send().await.unwrap().text().await.unwrap();
    let count = |outcome: &str| {
        sample(&metrics, &format!("wsguard_proxy_requests_total{{event=\"connect\",outcome=\"{outcome}\"}}"))
    };
    assert_eq!((count("error"), count("result"), count("disconnect")), (2.0, 2.0, 1.0));
    assert_eq!((count("status"), count("garbage"), count("timeout")), (2.0, 2.0, 1.0));
    assert_eq!(sample(&metrics, "wsguard_proxy_request_duration_seconds_count{event=\"connect\"}"), 10.0);
}

#[tokio::test]
async fn revocation_closes_a_socket_the_application_admitted() {
    let app = Application::start().await;
    let (server, _dir) = with_proxy(&app).await;
    app.reply("connect", Reply::Json(json!({"result": {"user": "alice"}})));
    let mut ws = open(&server).await;
    let welcome = next_json(&mut ws).await;
    assert_eq!(welcome["user"], "alice");
    assert_eq!(welcome["exp"], 253_402_300_799_i64, "no expire_at: it does not expire");
    let revoked = server.cli(&["user", "revoke", "alice"], "").await;
    assert!(revoked.status.success(), "{}", String::from_utf8_lossy(&revoked.stderr));
    assert_eq!(close_code(&mut ws, 3 * SECOND).await.0, 4003);
    assert!(app.calls("refresh").is_empty());
}

#[tokio::test]
async fn the_refresh_proxy_failing_keeps_the_socket_and_asks_again() {
    let app = Application::start().await;
    let (server, _dir) = with_proxy(&app).await;
    let now = wsguard::clock::now_secs();
    app.reply("connect", Reply::Json(json!({"result": {"user": "alice", "expire_at": now + 1}})));
    app.reply("refresh", Reply::Status(503));
    let mut ws = open(&server).await;
    assert_eq!(next_json(&mut ws).await["user"], "alice");
    eventually("a failed refresh", 4 * SECOND, async || match app.calls("refresh").len() {
        0 => Err(0),
        n => Ok(n),
    })
    .await;
    // Still open: it answers.
    send(&mut ws, &json!({"type": "subscribe", "channel": "user:alice"}).to_string()).await;
    assert_eq!(next_json(&mut ws).await["type"], "subscribed");
    // Asked again within the retry interval, which now prolongs it.
    app.reply("refresh", Reply::Json(json!({"result": {"expire_at": wsguard::clock::now_secs() + 60}})));
    eventually("a second refresh", 7 * SECOND, async || match app.calls("refresh").len() {
        n if n >= 2 => Ok(n),
        n => Err(n),
    })
    .await;
    send(&mut ws, &json!({"type": "unsubscribe", "channel": "user:alice"}).to_string()).await;
    send(&mut ws, &json!({"type": "subscribe", "channel": "user:alice"}).to_string()).await;
    assert_eq!(next_json(&mut ws).await["type"], "subscribed", "still open");
}

#[tokio::test]
async fn centrifugos_connect_without_a_token_goes_to_the_application() {
    let app = Application::start().await;
    let (server, _dir) = with_proxy(&app).await;
    let connect = |ws: Ws| async move {
        let mut ws = ws;
        let command = json!({"id": 1, "connect": {"name": "py", "version": "0.7.0", "data": {"k": 1}}});
        send(&mut ws, &command.to_string()).await;
        ws
    };
    let open = async || server.ws("/connection/websocket", &[("cookie", "session=s3cr3t")]).await.unwrap();

    app.reply(
        "connect",
        Reply::Json(json!({"result": {"user": "alice", "expire_at": 0, "data": {"hi": true}}})),
    );
    let mut ws = connect(open().await).await;
    let reply = next_json(&mut ws).await;
    let client = reply["connect"]["client"].as_str().unwrap();
    assert_eq!(
        (reply["connect"]["expires"].clone(), reply["connect"]["data"].clone()),
        (json!(false), json!({"hi": true}))
    );
    assert!(reply["connect"].get("ttl").is_none(), "{reply}");
    let call = &app.calls("connect")[0];
    assert_eq!(call.headers["cookie"], "session=s3cr3t");
    assert_eq!(
        call.body,
        json!({"client": client, "transport": "websocket", "protocol": "json", "encoding": "json",
               "name": "py", "version": "0.7.0", "data": {"k": 1}})
    );

    app.reply("connect", Reply::Json(json!({"error": {"code": 4403, "message": "no session"}})));
    let mut ws = connect(open().await).await;
    assert_eq!(next_json(&mut ws).await, json!({"id": 1, "error": {"code": 4403, "message": "no session"}}));
    app.reply("connect", Reply::Status(500));
    let mut ws = connect(open().await).await;
    let reply = next_json(&mut ws).await;
    assert_eq!(
        (reply["error"]["code"].clone(), reply["error"]["temporary"].clone()),
        (json!(100), json!(true))
    );
    app.reply("connect", Reply::Json(json!({"disconnect": {"code": 4501, "reason": "unauthorized"}})));
    let mut ws = connect(open().await).await;
    assert_eq!(close_code(&mut ws, 5 * SECOND).await, (4501, "unauthorized".into()));
}

#[tokio::test]
async fn a_bad_proxy_section_stops_the_start() {
    for (section, says) in [
        ("connect = \"ftp://app/rt\"", "proxy: connect must be an http:// or https:// URL"),
        ("refresh = \"http://app/rt\"", "proxy: refresh is for connections the connect proxy admitted"),
        ("connect = \"http://app/rt\"\nforward_headers = [\"Host\"]", "Host belongs to the connection"),
        ("connect = \"http://app/rt\"\ntimeout = \"5m\"", "proxy: timeout must be between 10ms and 60s"),
        ("conect = \"http://app/rt\"", "unknown field `conect`"),
    ] {
        let data = tempfile::tempdir().unwrap();
        let config = data.path().join("wsguard.toml");
        std::fs::write(&config, format!("[proxy]\n{section}\n")).unwrap();
        let (status, stderr) = serve_refused(data.path(), &[&format!("--config={}", config.display())]).await;
        assert!(!status.success() && stderr.contains(says), "{section}: {stderr}");
    }
}
