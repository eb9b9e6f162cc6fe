//! Centrifugo's server API (`POST /centrifugo/api/<method>`) over a real server: every method's
//! answer in Centrifugo's shapes, publications reaching `/connect` subscribers in the same
//! numbering as `/api/publish`, the key checks, and malformed requests that change nothing.

use crate::helpers::{close_code, eventually, next_json, send, spawn, Server, Ws};
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE};
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::time::Duration;
use tempfile::TempDir;

const CONFIG: &str = r#"
[[namespaces]]
name = "news"
subscribe = "any"
presence = true

[[namespaces]]
name = "live"
subscribe = "any"
history_size = 0
"#;

/// A server with the namespaces above and a key of each kind: every scope (`all`), `read` alone.
struct Fixture {
    server: Server,
    _config: TempDir,
    all: String,
    read: String,
}

async fn add_key(server: &Server, name: &str, scopes: &str) -> String {
    let added = server.cli(&["apikey", "add", name, "--scopes", scopes], "").await;
    assert!(added.status.success(), "{}", String::from_utf8_lossy(&added.stderr));
    String::from_utf8(added.stdout).unwrap().trim().to_owned()
}

async fn fixture() -> Fixture {
    let config = tempfile::tempdir().unwrap();
    let path = config.path().join("wsguard.toml");
    std::fs::write(&path, CONFIG).unwrap();
    let server = spawn(&[&format!("--config={}", path.display())]).await;
    let all = add_key(&server, "backend", "publish,disconnect,read").await;
    let read = add_key(&server, "dashboard", "read").await;
    // Keys the CLI added reach the running server at its next reread of the table.
    for key in [&all, &read] {
        eventually("the key admitted", Duration::from_secs(5), async || {
            match call_raw(&server, "info", key, json!({})).await.status() {
                StatusCode::OK => Ok(()),
                other => Err(other),
            }
        })
        .await;
    }
    Fixture { server, _config: config, all, read }
}

async fn call_raw(server: &Server, method: &str, key: &str, body: Value) -> reqwest::Response {
    let url = server.url(&format!("/centrifugo/api/{method}"));
    server.http.post(url).header("X-API-Key", key).json(&body).send().await.unwrap()
}

/// A method's answer, which must be HTTP 200.
async fn call(server: &Server, method: &str, key: &str, body: Value) -> Value {
    let response = call_raw(server, method, key, body).await;
    assert_eq!(response.status(), StatusCode::OK, "{method}");
    response.json().await.unwrap()
}

/// A method's `result`, which must be there.
async fn result(server: &Server, method: &str, key: &str, body: Value) -> Value {
    let answer = call(server, method, key, body.clone()).await;
    assert!(answer.get("error").is_none(), "{method} {body}: {answer}");
    answer["result"].clone()
}

/// A method's error code, and its message.
async fn error(server: &Server, method: &str, key: &str, body: Value) -> (u64, String) {
    let answer = call(server, method, key, body.clone()).await;
    let error = &answer["error"];
    assert!(answer.get("result").is_none() && error.is_object(), "{method} {body}: {answer}");
    (error["code"].as_u64().unwrap(), error["message"].as_str().unwrap().to_owned())
}

async fn subscriber(server: &Server, user: &str, password: &str, channel: &str) -> (Ws, String) {
    let pair = server.login(user, password).await;
    let mut ws = server.ws(&format!("/connect?token={}", pair.access), &[]).await.unwrap();
    assert_eq!(next_json(&mut ws).await["type"], "welcome");
    send(&mut ws, &json!({"type": "subscribe", "channel": channel}).to_string()).await;
    assert_eq!(next_json(&mut ws).await["type"], "subscribed");
    (ws, pair.access)
}

/// The next frame that is not a presence event (`news` tracks presence: joins come and go).
async fn next_frame(ws: &mut Ws) -> Value {
    loop {
        let frame = next_json(ws).await;
        if frame["type"] != "presence" {
            return frame;
        }
    }
}

fn offsets(history: &Value) -> Vec<i64> {
    history["publications"].as_array().unwrap().iter().map(|p| p["offset"].as_i64().unwrap()).collect()
}

#[tokio::test]
async fn publications_reach_subscribers_in_the_numbering_of_the_servers_own_api() {
    let Fixture { server, all, .. } = fixture().await;
    let (mut john, _) = subscriber(&server, "johndoe", "secret", "news:eu").await;

    let first = result(&server, "publish", &all, json!({"channel": "news:eu", "data": {"n": 1}})).await;
    assert_eq!(first["offset"], 1);
    let epoch = first["epoch"].as_str().unwrap().to_owned();
    assert_eq!(epoch.len(), 16, "{first}");
    let frame = next_frame(&mut john).await;
    assert_eq!((frame["type"].as_str(), frame["offset"].as_i64()), (Some("publication"), Some(1)));
    assert_eq!((&frame["data"], frame["from"].is_null()), (&json!({"n": 1}), true));

    // wsguard's own server API goes on in the same numbering, and both read the same history.
    let own = server
        .http
        .post(server.url("/api/publish"))
        .bearer_auth(&all)
        .json(&json!({"channel": "news:eu", "data": {"n": 2}}))
        .send()
        .await
        .unwrap();
    assert_eq!(own.json::<Value>().await.unwrap(), json!({"offset": 2}));
    assert_eq!(next_frame(&mut john).await["offset"], 2);
    let third = result(&server, "publish", &all, json!({"channel": "news:eu", "data": null})).await;
    assert_eq!(third, json!({"offset": 3, "epoch": epoch}), "null is data too");
    assert_eq!(next_frame(&mut john).await["offset"], 3);

    let history = result(&server, "history", &all, json!({"channel": "news:eu", "limit": 10})).await;
    assert_eq!(offsets(&history), [1, 2, 3]);
    assert_eq!((history["offset"].as_i64(), history["epoch"].as_str()), (Some(3), Some(epoch.as_str())));
    assert_eq!(history["publications"][1], json!({"data": {"n": 2}, "offset": 2}));
    let own: Value = server
        .http
        .get(server.url("/api/channels/news:eu/history"))
        .bearer_auth(&all)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!((offsets(&own), own["epoch"].as_str()), (vec![1, 2, 3], Some(epoch.as_str())));

    // A namespace without history: delivered, not numbered.
    let (mut jane, _) = subscriber(&server, "janedoe", "secret2", "live:feed").await;
    assert_eq!(result(&server, "publish", &all, json!({"channel": "live:feed", "data": 1})).await, json!({}));
    assert!(next_frame(&mut jane).await["offset"].is_null());

    // Broadcast: each channel's outcome on its own.
    let broadcast = json!({"channels": ["news:eu", "nope:x", "live:feed", "bad name"], "data": {"b": 1}});
    let responses = result(&server, "broadcast", &all, broadcast).await["responses"].clone();
    assert_eq!(responses[0], json!({"result": {"offset": 4, "epoch": epoch}}));
    assert_eq!(responses[1]["error"]["code"], 102, "an unknown namespace: {responses}");
    assert_eq!(responses[2], json!({"result": {}}));
    assert_eq!(responses[3]["error"]["code"], 107);
    assert_eq!(next_frame(&mut john).await["data"], json!({"b": 1}));
    assert_eq!(next_frame(&mut jane).await["data"], json!({"b": 1}));
    for (body, code) in [
        (json!({"channels": [], "data": 1}), 107),
        (json!({"channels": ["news:eu"]}), 107),
        (json!({"channels": ["news:eu"], "data": 1, "skip_history": true}), 108),
    ] {
        assert_eq!(error(&server, "broadcast", &all, body.clone()).await.0, code, "{body}");
    }
}

#[tokio::test]
async fn history_reads_as_centrifugo_does_and_history_remove_keeps_the_position() {
    let Fixture { server, all, .. } = fixture().await;
    for n in 1..=5 {
        result(&server, "publish", &all, json!({"channel": "news:h", "data": n})).await;
    }
    let read = async |body: Value| result(&server, "history", &all, body).await;
    let position = read(json!({"channel": "news:h"})).await;
    assert_eq!(
        (offsets(&position), position["offset"].as_i64()),
        (vec![], Some(5)),
        "no limit: position only"
    );
    let epoch = position["epoch"].as_str().unwrap().to_owned();
    assert_eq!(offsets(&read(json!({"channel": "news:h", "limit": 2})).await), [1, 2], "from the oldest");
    assert_eq!(offsets(&read(json!({"channel": "news:h", "limit": 2, "reverse": true})).await), [5, 4]);
    assert_eq!(offsets(&read(json!({"channel": "news:h", "limit": -1})).await), [1, 2, 3, 4, 5]);
    let since = json!({"offset": 2, "epoch": epoch});
    assert_eq!(offsets(&read(json!({"channel": "news:h", "limit": 2, "since": since})).await), [3, 4]);
    let back = json!({"channel": "news:h", "limit": 5, "since": since, "reverse": true});
    assert_eq!(offsets(&read(back).await), [1]);
    let elsewhere = json!({"channel": "news:h", "limit": 5, "since": {"offset": 2, "epoch": "another"}});
    assert_eq!(error(&server, "history", &all, elsewhere).await.0, 112, "unrecoverable position");
    let never = read(json!({"channel": "news:never", "limit": 5})).await;
    assert_eq!(never, json!({"publications": [], "offset": 0, "epoch": ""}));
    for (body, code) in [
        (json!({"channel": "live:feed", "limit": 5}), 108),
        (json!({"channel": "nope:x"}), 102),
        (json!({"channel": "bad name"}), 107),
        (json!({"channel": "news:h", "limit": -2}), 107),
        (json!({"channel": "news:h", "limit": "ten"}), 107),
        (json!({"channel": "news:h", "limit": 1, "since": {"offset": -1, "epoch": epoch}}), 107),
        (json!({"limit": 1}), 107),
    ] {
        assert_eq!(error(&server, "history", &all, body.clone()).await.0, code, "{body}");
    }

    assert_eq!(result(&server, "history_remove", &all, json!({"channel": "news:h"})).await, json!({}));
    let removed = read(json!({"channel": "news:h", "limit": 10})).await;
    assert_eq!(removed, json!({"publications": [], "offset": 5, "epoch": epoch}), "the position stays");
    let next = result(&server, "publish", &all, json!({"channel": "news:h", "data": 6})).await;
    assert_eq!(next, json!({"offset": 6, "epoch": epoch}), "the numbering goes on");
    assert_eq!(error(&server, "history_remove", &all, json!({"channel": "live:feed"})).await.0, 108);
    assert_eq!(error(&server, "history_remove", &all, json!({"channel": "nope:x"})).await.0, 102);
}

#[tokio::test]
async fn presence_channels_and_info_count_subscribers_on_the_node() {
    let Fixture { server, read, .. } = fixture().await;
    let (_john, _) = subscriber(&server, "johndoe", "secret", "news:eu").await;
    let (_john2, _) = subscriber(&server, "johndoe", "secret", "news:eu").await;
    let (_jane, _) = subscriber(&server, "janedoe", "secret2", "news:us").await;

    let presence = result(&server, "presence", &read, json!({"channel": "news:eu"})).await;
    assert_eq!(presence, json!({"presence": {"johndoe": {"client": "johndoe", "user": "johndoe"}}}));
    let want = json!({"num_clients": 2, "num_users": 1});
    eventually("presence_stats counting both sockets", Duration::from_secs(3), async || {
        match result(&server, "presence_stats", &read, json!({"channel": "news:eu"})).await {
            stats if stats == want => Ok(()),
            stats => Err(stats),
        }
    })
    .await;
    assert_eq!(error(&server, "presence", &read, json!({"channel": "live:feed"})).await.0, 108);
    assert_eq!(error(&server, "presence_stats", &read, json!({"channel": "nope:x"})).await.0, 102);
    assert_eq!(error(&server, "presence", &read, json!({})).await.0, 107);

    let channels = result(&server, "channels", &read, json!({})).await;
    assert_eq!(channels, json!({"channels": {"news:eu": {"num_clients": 2}, "news:us": {"num_clients": 1}}}));
    let matched = result(&server, "channels", &read, json!({"pattern": "*:eu"})).await;
    assert_eq!(matched, json!({"channels": {"news:eu": {"num_clients": 2}}}));
    assert_eq!(error(&server, "channels", &read, json!({"pattern": "news:[a-z]"})).await.0, 107);

    let info = result(&server, "info", &read, json!({})).await;
    let node = &info["nodes"][0];
    assert_eq!(info["nodes"].as_array().unwrap().len(), 1, "{info}");
    assert!(node["uid"].as_str().is_some_and(|uid| uid.len() == 36), "{node}");
    assert_eq!(node["name"], "default", "the cluster's name");
    let counts: Vec<u64> = ["num_clients", "num_users", "num_channels", "num_subs"]
        .iter()
        .map(|field| node[field].as_u64().unwrap())
        .collect();
    assert_eq!(counts, [3, 2, 2, 3], "{node}");
    assert!(node["uptime"].as_u64().is_some() && node["version"].is_string(), "{node}");
}

#[tokio::test]
async fn user_methods_disconnect_and_revoke_or_say_they_are_not_available() {
    let Fixture { server, all, .. } = fixture().await;
    let (mut john, access) = subscriber(&server, "johndoe", "secret", "news:eu").await;
    for method in ["subscribe", "unsubscribe"] {
        let (code, message) =
            error(&server, method, &all, json!({"user": "johndoe", "channel": "news:eu"})).await;
        assert_eq!(code, 108, "{method}: {message}");
        assert!(message.starts_with(&format!("not available in wsguard: {method}:")), "{message}");
        assert_eq!(
            error(&server, method, &all, json!({"user": "johndoe", "channel": "nope:x"})).await.0,
            102
        );
        assert_eq!(error(&server, method, &all, json!({"user": "a b", "channel": "news:eu"})).await.0, 107);
    }
    assert_eq!(error(&server, "refresh", &all, json!({"user": "johndoe", "expired": true})).await.0, 108);
    assert_eq!(error(&server, "refresh", &all, json!({})).await.0, 107);
    for body in [
        json!({"user": "johndoe", "client": "c1"}),
        json!({"user": "johndoe", "whitelist": ["c1"]}),
        json!({"user": "johndoe", "disconnect": {"code": 4500, "reason": "bye"}}),
    ] {
        assert_eq!(error(&server, "disconnect", &all, body.clone()).await.0, 108, "{body}");
    }
    send(&mut john, &json!({"type": "ping"}).to_string()).await;
    assert_eq!(next_frame(&mut john).await["type"], "pong", "refusals touch no connection");

    // disconnect: closed, nothing revoked.
    assert_eq!(result(&server, "disconnect", &all, json!({"user": "johndoe"})).await, json!({}));
    assert_eq!(close_code(&mut john, Duration::from_secs(2)).await.0, 4003);
    assert_eq!(server.me(&access).await.status(), StatusCode::OK, "the token still works");

    // invalidate_user_tokens: wsguard's revocation of the user.
    let (mut john, _) = subscriber(&server, "johndoe", "secret", "news:eu").await;
    let (mut jane, _) = subscriber(&server, "janedoe", "secret2", "news:eu").await;
    for body in [
        json!({"user": "johndoe", "channel": "news:eu"}),
        json!({"user": "johndoe", "issued_before": 1_000_000_000}),
    ] {
        assert_eq!(error(&server, "invalidate_user_tokens", &all, body.clone()).await.0, 108, "{body}");
    }
    let invalidate = json!({"user": "johndoe", "expire_at": 4_000_000_000_i64});
    assert_eq!(result(&server, "invalidate_user_tokens", &all, invalidate).await, json!({}));
    assert_eq!(close_code(&mut john, Duration::from_secs(2)).await.0, 4003);
    assert_eq!(server.me(&access).await.status(), StatusCode::UNAUTHORIZED, "the token is revoked");
    send(&mut jane, &json!({"type": "ping"}).to_string()).await;
    assert_eq!(next_frame(&mut jane).await["type"], "pong", "another user is untouched");
}

#[tokio::test]
async fn keys_are_checked_before_anything_and_scopes_per_method() {
    let Fixture { server, all, read, .. } = fixture().await;
    let url = server.url("/centrifugo/api/publish");
    let publish = json!({"channel": "news:k", "data": 1});
    let status = |response: reqwest::Response| response.status();
    let user_token = server.login("johndoe", "secret").await.access;
    for (header, value) in [
        (None, String::new()),
        (Some("x-api-key"), "wsg_not-a-key".to_owned()),
        (Some("authorization"), "apikey wsg_not-a-key".to_owned()),
        (Some("authorization"), format!("Bearer {user_token}")),
        (Some("authorization"), format!("Basic {all}")),
    ] {
        let mut request = server.http.post(&url).json(&publish);
        if let Some(header) = header {
            request = request.header(header, value.as_str());
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{header:?}");
        assert_eq!(response.json::<Value>().await.unwrap()["error"]["code"], 101);
    }
    // `Authorization: apikey <key>` is as good as X-API-Key, and (for /api/*'s clients) Bearer.
    for scheme in ["apikey", "Bearer"] {
        let answer = server.http.post(&url).header(AUTHORIZATION, format!("{scheme} {all}")).json(&publish);
        assert_eq!(status(answer.send().await.unwrap()), StatusCode::OK, "{scheme}");
    }
    // A key without the scope: permission denied, nothing published.
    let (code, message) = error(&server, "publish", &read, publish.clone()).await;
    assert_eq!((code, message.as_str()), (103, "permission denied: this API key lacks the publish scope"));
    for (method, body) in [
        ("disconnect", json!({"user": "johndoe"})),
        ("invalidate_user_tokens", json!({"user": "johndoe"})),
        ("history_remove", json!({"channel": "news:k"})),
    ] {
        assert_eq!(error(&server, method, &read, body).await.0, 103, "{method}");
    }
    let commands =
        json!({"commands": [{"publish": publish}, {"history": {"channel": "news:k", "limit": 10}}]});
    let replies = call(&server, "batch", &read, commands).await["replies"].clone();
    assert_eq!(replies[0]["error"]["code"], 103, "{replies}");
    assert_eq!(offsets(&replies[1]["history"]), [1, 2], "only the two publications of the good keys");
    let unknown = call_raw(&server, "connections", &read, json!({})).await;
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
    assert_eq!(unknown.json::<Value>().await.unwrap()["error"]["code"], 104);

    // Logged as /api/* calls are: under the key's name, never the key.
    let log = server.log();
    assert!(log.contains("/centrifugo/api/publish") && log.contains("dashboard"), "{log}");
    assert!(!log.contains(&all) && !log.contains(&read), "a key in the log");
    // Described in the OpenAPI, with its own key scheme.
    let spec: Value =
        server.http.get(server.url("/openapi.json")).send().await.unwrap().json().await.unwrap();
    let operation = &spec["paths"]["/centrifugo/api/{method}"]["post"];
    assert_eq!(operation["security"], json!([{"centrifugoApiKey": []}]));
    let scheme = &spec["components"]["securitySchemes"]["centrifugoApiKey"];
    assert_eq!((&scheme["in"], &scheme["name"]), (&json!("header"), &json!("X-API-Key")));
    assert!(spec["components"]["schemas"]["CentrifugoMethod"]["enum"]
        .as_array()
        .unwrap()
        .contains(&json!("batch")));
}

#[tokio::test]
async fn malformed_requests_get_a_clear_error_and_change_nothing() {
    let Fixture { server, all, .. } = fixture().await;
    let url = server.url("/centrifugo/api/publish");
    let raw = async |body: &'static str| {
        let request = server.http.post(&url).header("X-API-Key", &all).header(CONTENT_TYPE, "text/plain");
        let response = request.body(body).send().await.unwrap();
        (response.status(), response.json::<Value>().await.unwrap())
    };
    for body in ["{\"channel\":", "[1]", "\"text\"", "null"] {
        let (status, answer) = raw(body).await;
        assert_eq!((status, &answer["error"]["code"]), (StatusCode::BAD_REQUEST, &json!(107)), "{body}");
    }
    // Whatever the Content-Type, as Centrifugo reads it (curl --data sends a form's).
    let (status, answer) = raw(r#"{"channel": "news:m", "data": "plain"}"#).await;
    assert_eq!((status, answer["result"]["offset"].as_i64()), (StatusCode::OK, Some(1)));
    for body in [
        json!({"data": 1}),
        json!({"channel": 5, "data": 1}),
        json!({"channel": "news:m"}),
        json!({"channel": "news:m", "data": 1, "b64data": "aGk="}),
        json!({"channel": "news:m", "data": 1, "idempotency_key": "k"}),
    ] {
        let (code, message) = error(&server, "publish", &all, body.clone()).await;
        assert!(code == 107 || code == 108, "{body}: {code} {message}");
        assert!(!message.is_empty());
    }
    // A batch one of whose commands cannot be decoded runs none of them.
    for commands in [
        json!([{"publish": {"channel": "news:m", "data": 2}}, {"nope": {}}]),
        json!([{"publish": {"channel": "news:m", "data": 2}}, 7]),
        json!([{"publish": {"channel": "news:m", "data": 2}}, {"batch": {"commands": []}}]),
    ] {
        let response = call_raw(&server, "batch", &all, json!({ "commands": commands })).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{commands}");
        assert!(response.json::<Value>().await.unwrap()["error"]["message"].is_string());
    }
    let history = result(&server, "history", &all, json!({"channel": "news:m", "limit": 10})).await;
    assert_eq!(offsets(&history), [1], "nothing else was published");

    // A batch runs its commands in order, each with its reply.
    let commands = json!({"parallel": true, "commands": [
        {"publish": {"channel": "news:m", "data": 2}},
        {"publish": {"channel": "nope:x", "data": 2}},
        {"history": {"channel": "news:m", "limit": 10}},
    ]});
    let replies = call(&server, "batch", &all, commands).await["replies"].clone();
    assert_eq!(replies[0]["publish"]["offset"], 2, "{replies}");
    assert_eq!(replies[1]["error"]["code"], 102);
    assert_eq!(offsets(&replies[2]["history"]), [1, 2]);

    // Bodies over the server API's limit, declared or not.
    let big = format!(r#"{{"channel": "news:m", "data": "{}"}}"#, "x".repeat(70 * 1024));
    // The server answers before reading the rest and then closes the connection: not one to reuse.
    let response = server
        .http
        .post(&url)
        .header("X-API-Key", &all)
        .header("connection", "close")
        .body(big)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(response.json::<Value>().await.unwrap()["error"]["code"], 107);
    let get = server.http.get(&url).header("X-API-Key", &all).send().await.unwrap();
    assert_eq!(get.status(), StatusCode::METHOD_NOT_ALLOWED);
    let history = result(&server, "history", &all, json!({"channel": "news:m", "limit": 10})).await;
    assert_eq!(offsets(&history), [1, 2]);
}
