//! The admin console's reads and actions against real sockets: who is connected, channels,
//! presence and history, publish, disconnect, revoke, API keys, counters; each action audited
//! with who, what, on what, when and from where, and nothing audited that was refused. On two
//! nodes sharing PostgreSQL and Redis: every node listed, the audit log shared.

use crate::admin::{add_admin, add_key, audited, detail, Console, ADMIN};
use crate::helpers::{
    another_node, close_code, eventually, next_json, sample, send, service, spawn, Schema, Server, Ws,
    POSTGRES,
};
use reqwest::header::CACHE_CONTROL;
use reqwest::StatusCode;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::time::Duration;

async fn chat(server: &Server, user: &str, password: &str) -> (Ws, String) {
    let pair = server.login(user, password).await;
    let mut ws = server.ws(&format!("/chat/ws?token={}", pair.access), &[]).await.unwrap();
    assert_eq!(next_json(&mut ws).await["type"], "welcome");
    (ws, pair.access)
}

async fn join(ws: &mut Ws, room: &str) {
    send(ws, &json!({"type": "join", "room": room}).to_string()).await;
    while next_json(ws).await["type"] != "history" {}
}

/// The next frame of `kind`, skipping others.
async fn next_of(ws: &mut Ws, kind: &str) -> Value {
    loop {
        let frame = next_json(ws).await;
        if frame["type"] == kind {
            return frame;
        }
    }
}

#[tokio::test]
async fn each_action_works_and_is_audited_and_refusals_are_not() {
    let server = spawn(&[]).await;
    add_admin(&server, ADMIN.0, ADMIN.1).await;
    let root = Console::login(&server, ADMIN.0, ADMIN.1).await;
    let (mut john, john_token) = chat(&server, "johndoe", "secret").await;
    join(&mut john, "general").await;

    // Who is connected, where and how; the channel with its subscriber and presence.
    let connections = root.read("/api/admin/connections").await;
    assert_eq!((connections["sockets"].as_u64(), connections["users"].as_u64()), (Some(1), Some(1)));
    let socket = &connections["connections"][0];
    assert_eq!(
        (&socket["user"], &socket["endpoint"], &socket["transport"]),
        (&json!("johndoe"), &json!("/chat/ws"), &json!("query"))
    );
    let stats = root.read("/api/admin/stats").await;
    assert_eq!(connections["node"], stats["node"], "the answering node names itself");
    assert_eq!(
        root.read("/api/admin/channels").await,
        json!({"channels": [{"channel": "general", "subscribers": 1, "presence": true}]})
    );

    // Publish: johndoe receives it; the channel shows it; the counters count it.
    let published = root
        .post("/api/admin/publish", Some(json!({"channel": "general", "data": {"text": "from the console"}})))
        .await;
    assert_eq!(published.status(), StatusCode::OK);
    assert_eq!(published.json::<Value>().await.unwrap(), json!({"offset": 1}));
    let message = next_of(&mut john, "message").await;
    assert_eq!((&message["text"], &message["from"]), (&json!("from the console"), &Value::Null));
    let general = root.read("/api/admin/channels/general?limit=5").await;
    assert_eq!((&general["subscribers"], &general["presence"]), (&json!(1), &json!(["johndoe"])));
    assert_eq!(general["publications"][0]["data"], json!({"text": "from the console"}));
    let later = root.read("/api/admin/stats").await;
    assert!(later["deliveries"].as_u64() > stats["deliveries"].as_u64(), "{stats} then {later}");
    assert_eq!(later["publications"], 1);
    assert!(later["at_ms"].as_i64() > stats["at_ms"].as_i64());

    // Refused requests change nothing and leave no entry.
    for (path, body, status) in [
        (
            "/api/admin/publish",
            Some(json!({"channel": "no:such", "data": 1})),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "/api/admin/publish",
            Some(json!({"channel": "general", "data": {"text": ""}})),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        ("/api/admin/publish", Some(json!({"channel": "general"})), StatusCode::UNPROCESSABLE_ENTITY),
        ("/api/admin/users/bad%20name/disconnect", None, StatusCode::UNPROCESSABLE_ENTITY),
        (
            "/api/admin/keys",
            Some(json!({"name": "x", "scopes": ["everything"]})),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        ("/api/admin/keys", Some(json!({"name": "x", "scopes": []})), StatusCode::UNPROCESSABLE_ENTITY),
        (
            "/api/admin/keys",
            Some(json!({"name": "bad name", "scopes": ["read"]})),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        ("/api/admin/keys/nope/revoke", None, StatusCode::NOT_FOUND),
    ] {
        let (got, text) = detail(root.post(path, body.clone()).await).await;
        assert_eq!(got, status, "{path} {body:?}: {text}");
        assert!(!text.is_empty());
    }
    for path in [
        "/api/admin/audit?limit=0",
        "/api/admin/audit?before=0",
        "/api/admin/connections?limit=x",
        "/api/admin/channels/no:such",
    ] {
        assert_eq!(root.get(path).await.status(), StatusCode::UNPROCESSABLE_ENTITY, "{path}");
    }
    assert_eq!(audited(&root).await, ["publish", "admin.grant"]);

    // Disconnect: the socket closes with 4003, the token still works.
    let disconnected = root.post("/api/admin/users/johndoe/disconnect", None).await;
    assert_eq!(disconnected.status(), StatusCode::NO_CONTENT);
    assert_eq!(close_code(&mut john, Duration::from_secs(3)).await.0, 4003);
    assert_eq!(server.me(&john_token).await.status(), StatusCode::OK);
    // Revoke: the token is refused from now on.
    let (mut john, _) = chat(&server, "johndoe", "secret").await;
    assert_eq!(root.post("/api/admin/users/johndoe/revoke", None).await.status(), StatusCode::NO_CONTENT);
    assert_eq!(close_code(&mut john, Duration::from_secs(3)).await.0, 4003);
    assert_eq!(server.me(&john_token).await.status(), StatusCode::UNAUTHORIZED);

    // API keys: the key in the answer only, listed without it, working at once, revoked at once.
    let added = root
        .post("/api/admin/keys", Some(json!({"name": "backend", "scopes": ["read", "publish", "read"]})))
        .await;
    assert_eq!(added.status(), StatusCode::CREATED);
    assert_eq!(added.headers()[CACHE_CONTROL], "no-store");
    let added: Value = added.json().await.unwrap();
    let key = added["key"].as_str().unwrap().to_owned();
    assert!(key.starts_with("wsg_") && added["scopes"] == json!(["publish", "read"]), "{added}");
    let channels = server.http.get(server.url("/api/channels")).bearer_auth(&key).send().await.unwrap();
    assert_eq!(channels.status(), StatusCode::OK);
    let again = root.post("/api/admin/keys", Some(json!({"name": "backend", "scopes": ["read"]}))).await;
    assert_eq!(detail(again).await, (StatusCode::CONFLICT, "API key backend already exists".into()));
    let listed = root.get("/api/admin/keys").await.text().await.unwrap();
    let hash = hex::encode(Sha256::digest(key.as_bytes()));
    assert!(
        listed.contains(r#""name":"backend""#) && !listed.contains(&key) && !listed.contains(&hash),
        "{listed}"
    );
    assert_eq!(root.post("/api/admin/keys/backend/revoke", None).await.status(), StatusCode::NO_CONTENT);
    let refused = server.http.get(server.url("/api/channels")).bearer_auth(&key).send().await.unwrap();
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED, "this node refuses it at once");

    // Every action, newest first: who, through what, on what, from where, when; never a secret.
    let log = root.read("/api/admin/audit").await;
    let text = log.to_string();
    assert!(!text.contains(&key) && !text.contains(&hash) && !text.contains("wsg_"), "{text}");
    let entries = log["entries"].as_array().unwrap();
    let seen: Vec<(&str, &str)> =
        entries.iter().map(|e| (e["action"].as_str().unwrap(), e["target"].as_str().unwrap())).collect();
    assert_eq!(
        seen,
        [
            ("apikey.revoke", "backend"),
            ("apikey.add", "backend"),
            ("revoke", "johndoe"),
            ("disconnect", "johndoe"),
            ("publish", "general"),
            ("admin.grant", "root"),
        ]
    );
    for entry in &entries[..5] {
        assert_eq!(
            (&entry["actor"], &entry["via"], &entry["address"]),
            (&json!("root"), &json!("console"), &json!("127.0.0.1"))
        );
    }
    assert_eq!(entries[1]["detail"], "scopes publish,read");
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
    assert!(entries.iter().all(|e| (now - 60_000..=now).contains(&e["at_ms"].as_i64().unwrap())), "{log}");
    let ids: Vec<i64> = entries.iter().map(|e| e["id"].as_i64().unwrap()).collect();
    let page = root.read(&format!("/api/admin/audit?limit=2&before={}", ids[1])).await;
    assert_eq!(
        page["entries"].as_array().unwrap().iter().map(|e| e["id"].as_i64().unwrap()).collect::<Vec<_>>(),
        ids[2..4]
    );

    // A script with an admin key: the same actions, audited under the key's name.
    let ops = add_key(&server, "ops", "admin").await;
    let call = server
        .http
        .post(server.url("/api/admin/users/janedoe/disconnect"))
        .bearer_auth(&ops)
        .send()
        .await
        .unwrap();
    assert_eq!(call.status(), StatusCode::NO_CONTENT);
    let newest = &root.read("/api/admin/audit?limit=1").await["entries"][0];
    assert_eq!(
        (&newest["actor"], &newest["via"], &newest["action"]),
        (&json!("key:ops"), &json!("api"), &json!("disconnect"))
    );
    let metrics = server.http.get(server.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(sample(&metrics, "wsguard_deliveries_total") >= 1.0);
}

#[tokio::test]
async fn on_two_nodes_every_node_is_listed_and_the_audit_log_is_shared() {
    if !(service("Redis", "127.0.0.1:6379") && service("PostgreSQL", POSTGRES)) {
        return;
    }
    let schema = Schema::create().await;
    let cluster = format!("--cluster=t{}", uuid::Uuid::new_v4().simple());
    let database = format!("--database-url={}", schema.url());
    let a = spawn(&[&cluster, "--broker-url=redis://127.0.0.1:6379", &database]).await;
    let b = another_node(&a).await;
    add_admin(&a, ADMIN.0, ADMIN.1).await;
    let (on_a, on_b) =
        (Console::login(&a, ADMIN.0, ADMIN.1).await, Console::login(&b, ADMIN.0, ADMIN.1).await);
    let (mut john, _) = chat(&b, "johndoe", "secret").await;
    join(&mut john, "general").await;

    let (node_a, node_b) = (
        on_a.read("/api/admin/stats").await["node"].clone(),
        on_b.read("/api/admin/stats").await["node"].clone(),
    );
    assert_ne!(node_a, node_b);
    let nodes = eventually("node b's channel shared", Duration::from_secs(8), async || {
        let nodes = on_a.read("/api/admin/nodes").await;
        if nodes["nodes"].as_array().unwrap().iter().any(|n| n["node"] == node_b && n["subscriptions"] == 1) {
            Ok(nodes)
        } else {
            Err(nodes)
        }
    })
    .await;
    let listed: Vec<(&Value, &Value)> =
        nodes["nodes"].as_array().unwrap().iter().map(|n| (&n["node"], &n["this"])).collect();
    assert_eq!(listed, [(&node_a, &json!(true)), (&node_b, &json!(false))]);
    // Sockets are each node's own; channels and presence the cluster's.
    assert_eq!(on_a.read("/api/admin/connections").await["sockets"], 0);
    assert_eq!(on_b.read("/api/admin/connections").await["connections"][0]["user"], "johndoe");
    assert_eq!(on_a.read("/api/admin/channels/general").await["presence"], json!(["johndoe"]));

    // An action taken on a, on a user of b: done, and in the log b reads.
    assert_eq!(on_a.post("/api/admin/users/johndoe/disconnect", None).await.status(), StatusCode::NO_CONTENT);
    assert_eq!(close_code(&mut john, Duration::from_secs(3)).await.0, 4003);
    assert_eq!(audited(&on_b).await, ["disconnect", "admin.grant"]);
    // A role withdrawn is withdrawn on every node at once.
    assert!(a.cli(&["user", "admin", ADMIN.0, "--off"], "").await.status.success());
    assert_eq!(on_b.get("/api/admin/stats").await.status(), StatusCode::FORBIDDEN);
    drop((a, b));
    schema.drop().await;
}
