//! The application decides per namespace, on both protocols: its subscribe proxy allows (with
//! data for the client), refuses with its code, closes, or fails (temporary, nothing admitted);
//! its publish proxy refuses or rewrites what is stored and fanned out; its RPC proxy answers the
//! SDK's `rpc` with the connection's user; its subscription tokens open one channel to one user,
//! expire, and are renewed in band.

use crate::application::{Application, Reply};
use crate::helpers::{close_code, next_json, send, spawn, Server, Ws};
use crate::issuers::{hs256, now, ConfigFile};
use serde_json::{json, Value};
use std::time::Duration;

const SECOND: Duration = Duration::from_secs(1);
const APP: &str = "https://app.example/";

/// wsguard whose `doc` namespace is the application's (subscribe and publish proxies), whose
/// `priv` namespace takes subscription tokens (signed by the application, a trusted issuer), and
/// whose `rpc` goes to the application.
async fn served(app: &Application) -> (Server, ConfigFile) {
    let config = ConfigFile::new(&format!(
        r#"
[proxy]
rpc = "{rpc}"
timeout = "300ms"

[[namespaces]]
name = "doc"
subscribe = "proxy"
subscribe_proxy = "{subscribe}"
publish = "proxy"
publish_proxy = "{publish}"
history_size = 10

[[namespaces]]
name = "priv"
subscribe = "token"
publish = "subscribers"

[[trusted_issuers]]
issuer = "{APP}"
secret_file = "{{secret}}"
"#,
        rpc = app.url("rpc"),
        subscribe = app.url("subscribe"),
        publish = app.url("publish"),
    ));
    (spawn(&[&config.arg()]).await, config)
}

/// `/connect` as johndoe.
async fn own_socket(server: &Server) -> Ws {
    let pair = server.login("johndoe", "secret").await;
    let mut ws = server.ws(&format!("/connect?token={}", pair.access), &[]).await.unwrap();
    assert_eq!(next_json(&mut ws).await["type"], "welcome");
    ws
}

/// `/connection/websocket` as johndoe, past `connect`.
async fn centrifugo(server: &Server) -> Ws {
    let pair = server.login("johndoe", "secret").await;
    let mut ws = server.ws("/connection/websocket", &[]).await.unwrap();
    send(&mut ws, &json!({"id": 1, "connect": {"token": pair.access}}).to_string()).await;
    assert!(next_json(&mut ws).await["connect"]["client"].is_string());
    ws
}

async fn command(ws: &mut Ws, frame: Value) -> Value {
    send(ws, &frame.to_string()).await;
    next_json(ws).await
}

/// A subscription token of the application.
fn subscription_token(user: &str, channel: &str, ttl: i64) -> String {
    hs256(&json!({"iss": APP, "sub": user, "channel": channel, "exp": now() + ttl}))
}

#[tokio::test]
async fn the_subscribe_proxy_allows_refuses_closes_or_fails_on_both_protocols() {
    let app = Application::start().await;
    let (server, _config) = served(&app).await;
    let mut ws = own_socket(&server).await;

    app.reply("subscribe", Reply::Json(json!({"result": {"data": {"title": "Plans"}}})));
    let frame = json!({"type": "subscribe", "channel": "doc:17", "data": {"why": "open"}});
    let answer = command(&mut ws, frame).await;
    assert_eq!(
        (answer["type"].clone(), answer["data"].clone()),
        (json!("subscribed"), json!({"title": "Plans"}))
    );
    let call = &app.calls("subscribe")[0];
    let client = call.body["client"].as_str().unwrap();
    assert_eq!(
        call.body,
        json!({"client": client, "transport": "websocket", "protocol": "json", "encoding": "json",
               "user": "johndoe", "channel": "doc:17", "data": {"why": "open"}})
    );

    app.reply("subscribe", Reply::Json(json!({"error": {"code": 4031, "message": "not a member"}})));
    let answer = command(&mut ws, json!({"type": "subscribe", "channel": "doc:18"})).await;
    assert_eq!(
        answer,
        json!({"type": "error", "code": "forbidden", "app_code": 4031, "detail": "not a member", "channel": "doc:18"})
    );
    for failing in [Reply::Status(500), Reply::Garbage, Reply::Slow(2 * SECOND, json!({"result": {}}))] {
        app.reply("subscribe", failing);
        let answer = command(&mut ws, json!({"type": "subscribe", "channel": "doc:19"})).await;
        assert_eq!(answer["code"], "unavailable", "{answer}");
    }
    // Nothing was admitted: a publication to doc:19 reaches no one here, the socket still works.
    let answer = command(&mut ws, json!({"type": "ping"})).await;
    assert_eq!(answer["type"], "pong");

    let mut sdk = centrifugo(&server).await;
    app.reply("subscribe", Reply::Json(json!({"result": {}})));
    let reply = command(&mut sdk, json!({"id": 2, "subscribe": {"channel": "doc:17"}})).await;
    assert!(reply["subscribe"].is_object(), "{reply}");
    app.reply("subscribe", Reply::Json(json!({"error": {"code": 4031, "message": "not a member"}})));
    let reply = command(&mut sdk, json!({"id": 3, "subscribe": {"channel": "doc:18"}})).await;
    assert_eq!(reply, json!({"id": 3, "error": {"code": 4031, "message": "not a member"}}));
    app.reply("subscribe", Reply::Status(503));
    let reply = command(&mut sdk, json!({"id": 4, "subscribe": {"channel": "doc:19"}})).await;
    assert_eq!(
        (reply["error"]["code"].clone(), reply["error"]["temporary"].clone()),
        (json!(100), json!(true))
    );

    app.reply("subscribe", Reply::Json(json!({"disconnect": {"code": 4501, "reason": "suspended"}})));
    send(&mut sdk, &json!({"id": 5, "subscribe": {"channel": "doc:20"}}).to_string()).await;
    assert_eq!(close_code(&mut sdk, 5 * SECOND).await, (4501, "suspended".into()));
    send(&mut ws, &json!({"type": "subscribe", "channel": "doc:20"}).to_string()).await;
    assert_eq!(close_code(&mut ws, 5 * SECOND).await, (4501, "suspended".into()));
}

#[tokio::test]
async fn the_publish_proxy_refuses_or_rewrites_what_is_stored_and_delivered() {
    let app = Application::start().await;
    let (server, _config) = served(&app).await;
    app.reply("subscribe", Reply::Json(json!({"result": {}})));
    let mut reader = own_socket(&server).await;
    command(&mut reader, json!({"type": "subscribe", "channel": "doc:1"})).await;
    let mut sdk = centrifugo(&server).await;

    // Not subscribed: the application decides, as Centrifugo's publish proxy does.
    app.reply("publish", Reply::Json(json!({"result": {"data": {"text": "HELLO", "checked": true}}})));
    let reply =
        command(&mut sdk, json!({"id": 2, "publish": {"channel": "doc:1", "data": {"text": "hello"}}})).await;
    assert_eq!(reply, json!({"id": 2, "publish": {}}));
    let delivered = next_json(&mut reader).await;
    assert_eq!(delivered["data"], json!({"text": "HELLO", "checked": true}), "{delivered}");
    let call = &app.calls("publish")[0];
    assert_eq!(
        (call.body["user"].clone(), call.body["data"].clone()),
        (json!("johndoe"), json!({"text": "hello"}))
    );

    app.reply("publish", Reply::Json(json!({"result": {}})));
    let answer =
        command(&mut reader, json!({"type": "publish", "channel": "doc:1", "data": {"n": 2}, "ref": "a"}))
            .await;
    assert_eq!(answer["type"], "ack");
    assert_eq!(next_json(&mut reader).await["data"], json!({"n": 2}), "kept as the client sent it");

    app.reply("publish", Reply::Json(json!({"error": {"code": 4290, "message": "read only"}})));
    let reply = command(&mut sdk, json!({"id": 3, "publish": {"channel": "doc:1", "data": {"n": 3}}})).await;
    assert_eq!(reply, json!({"id": 3, "error": {"code": 4290, "message": "read only"}}));
    app.reply("publish", Reply::Status(500));
    let answer = command(&mut reader, json!({"type": "publish", "channel": "doc:1", "data": {"n": 4}})).await;
    assert_eq!(answer["code"], "unavailable", "{answer}");

    // What was refused or failed was never stored: history holds the two allowed.
    let history = command(&mut sdk, json!({"id": 4, "subscribe": {"channel": "doc:1"}})).await;
    assert_eq!(history["subscribe"]["offset"], 2, "{history}");
}

#[tokio::test]
async fn rpc_reaches_the_application_with_the_connections_user() {
    let app = Application::start().await;
    let (server, _config) = served(&app).await;
    app.reply("rpc", Reply::Json(json!({"result": {"data": {"price": 2019}}})));
    let mut sdk = centrifugo(&server).await;
    let reply = command(&mut sdk, json!({"id": 2, "rpc": {"method": "getPrice", "data": {"id": 12}}})).await;
    assert_eq!(reply, json!({"id": 2, "rpc": {"data": {"price": 2019}}}));
    let call = &app.calls("rpc")[0];
    let client = call.body["client"].as_str().unwrap();
    assert_eq!(
        call.body,
        json!({"client": client, "transport": "websocket", "protocol": "json", "encoding": "json",
               "user": "johndoe", "method": "getPrice", "data": {"id": 12}})
    );

    let mut ws = own_socket(&server).await;
    let answer =
        command(&mut ws, json!({"type": "rpc", "method": "getPrice", "data": {"id": 12}, "ref": "r1"})).await;
    assert_eq!(answer, json!({"type": "rpc", "ref": "r1", "data": {"price": 2019}}));
    app.reply("rpc", Reply::Json(json!({"error": {"code": 4040, "message": "no such product"}})));
    let reply = command(&mut sdk, json!({"id": 3, "rpc": {"method": "getPrice"}})).await;
    assert_eq!(reply, json!({"id": 3, "error": {"code": 4040, "message": "no such product"}}));
    app.reply("rpc", Reply::Status(502));
    let reply = command(&mut sdk, json!({"id": 4, "rpc": {"method": "getPrice"}})).await;
    assert_eq!(
        (reply["error"]["code"].clone(), reply["error"]["temporary"].clone()),
        (json!(100), json!(true))
    );
}

#[tokio::test]
async fn a_subscription_token_opens_its_channel_to_its_user_only() {
    let app = Application::start().await;
    let (server, _config) = served(&app).await;
    let mut ws = own_socket(&server).await;
    let subscribe = |token: Option<String>| json!({"type": "subscribe", "channel": "priv:1", "token": token});

    let refused = [
        (None, "forbidden"),
        (Some(subscription_token("johndoe", "priv:2", 60)), "forbidden"),
        (Some(subscription_token("alice", "priv:1", 60)), "forbidden"),
        (Some(subscription_token("johndoe", "priv:1", -30)), "token_expired"),
        (Some(hs256(&json!({"iss": APP, "sub": "johndoe", "exp": now() + 60}))), "forbidden"),
        (Some("not.a.token".to_owned()), "forbidden"),
    ];
    for (token, code) in refused {
        let answer = command(&mut ws, subscribe(token.clone())).await;
        assert_eq!(
            (answer["type"].as_str(), answer["code"].as_str()),
            (Some("error"), Some(code)),
            "{token:?}"
        );
    }
    let answer = command(&mut ws, subscribe(Some(subscription_token("johndoe", "priv:1", 60)))).await;
    assert_eq!(answer["type"], "subscribed", "{answer}");
    assert!((answer["expires_at"].as_i64().unwrap() - (now() + 60)).abs() <= 2, "{answer}");

    // A subscription token opens no connection, on either protocol.
    let token = subscription_token("johndoe", "priv:1", 60);
    let mut refused = server.ws(&format!("/connect?token={token}"), &[]).await.unwrap();
    assert_eq!(close_code(&mut refused, 5 * SECOND).await.0, 1008);
    let mut sdk = server.ws("/connection/websocket", &[]).await.unwrap();
    send(&mut sdk, &json!({"id": 1, "connect": {"token": token}}).to_string()).await;
    assert_eq!(close_code(&mut sdk, 5 * SECOND).await.0, 3500, "invalid token");
}

#[tokio::test]
async fn an_unrenewed_subscription_ends_at_its_tokens_exp_and_a_renewed_one_lives_on() {
    let app = Application::start().await;
    let (server, _config) = served(&app).await;

    // wsguard's frames: the channel ends with `unsubscribed`, the socket stays.
    let mut ws = own_socket(&server).await;
    let frame = json!({"type": "subscribe", "channel": "priv:1", "token": subscription_token("johndoe", "priv:1", 2)});
    assert_eq!(command(&mut ws, frame).await["type"], "subscribed");
    let ended = tokio::time::timeout(5 * SECOND, next_json(&mut ws)).await.expect("the subscription ends");
    assert_eq!(
        (ended["type"].as_str(), ended["channel"].as_str(), ended["code"].as_str()),
        (Some("unsubscribed"), Some("priv:1"), Some("token_expired"))
    );
    assert_eq!(command(&mut ws, json!({"type": "ping"})).await["type"], "pong");

    // Centrifugo's: `expires` and `ttl` in the reply; `sub_refresh` renews; unrenewed, the
    // connection closes with 3006 (subscription expired) and the SDK reconnects.
    let mut sdk = centrifugo(&server).await;
    let token = subscription_token("johndoe", "priv:1", 2);
    let reply = command(&mut sdk, json!({"id": 2, "subscribe": {"channel": "priv:1", "token": token}})).await;
    assert_eq!(reply["subscribe"]["expires"], true, "{reply}");
    assert!(reply["subscribe"]["ttl"].as_u64().unwrap() <= 2, "{reply}");
    let renewed = subscription_token("johndoe", "priv:1", 4);
    let reply =
        command(&mut sdk, json!({"id": 3, "sub_refresh": {"channel": "priv:1", "token": renewed}})).await;
    assert_eq!(reply["sub_refresh"]["expires"], true, "{reply}");
    let other = subscription_token("johndoe", "priv:2", 60);
    let reply =
        command(&mut sdk, json!({"id": 4, "sub_refresh": {"channel": "priv:1", "token": other}})).await;
    assert_eq!(reply["error"]["code"], 103, "a token for another channel renews nothing: {reply}");
    // Past the first token's exp, still open; closed at the renewed one's.
    let quiet = tokio::time::timeout(3 * SECOND, next_json(&mut sdk)).await;
    assert!(quiet.is_err(), "renewed: {quiet:?}");
    assert_eq!(close_code(&mut sdk, 5 * SECOND).await, (3006, "subscription expired".into()));
}
