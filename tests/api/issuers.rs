//! Trusted issuers: an application's HS256 tokens (the FastAPI tutorials' `{"sub", "exp"}`) open
//! every socket transport and stay bound to them; anything off is refused like a bad own token;
//! `wsguard user revoke` reaches every node. A JWKS issuer served by a real HTTP server:
//! `issuers/jwks.rs`.

mod jwks;

use crate::helpers::{
    another_node, assert_echo, close_code, next_json, next_text, send, service, spawn, Schema, Server, Ws,
    POSTGRES,
};
use jsonwebtoken::{EncodingKey, Header};
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tempfile::TempDir;

/// The applications' shared secret (random, made for these tests).
const SECRET: &str = "7f3a9c2e51d84b06a1e9c3f27d5b8e40c6a2f19d83e7b5a04d1c8f6e2b9a7d35";
/// The issuer with an `iss` and an audience.
const APP: &str = "https://app.example/";
const SECOND: Duration = Duration::from_secs(1);

pub fn now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64
}

/// A `wsguard.toml` with `sections` (its `{secret}` replaced by the secret file's path), in a
/// folder of its own; `arg` is the `--config=` that names it.
pub struct ConfigFile {
    _dir: TempDir,
    pub path: PathBuf,
}

impl ConfigFile {
    pub fn new(sections: &str) -> ConfigFile {
        let dir = tempfile::tempdir().unwrap();
        let secret = private_file(dir.path(), "app.secret", SECRET);
        let path = dir.path().join("wsguard.toml");
        std::fs::write(&path, sections.replace("{secret}", &secret.display().to_string())).unwrap();
        ConfigFile { _dir: dir, path }
    }

    pub fn arg(&self) -> String {
        format!("--config={}", self.path.display())
    }
}

/// A file only its owner may read, as secret files must be.
fn private_file(dir: &Path, name: &str, contents: &str) -> PathBuf {
    let path = dir.join(name);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(&path).unwrap().write_all(contents.as_bytes()).unwrap();
    path
}

/// Two HS256 issuers sharing the secret: the FastAPI tutorial's (no `iss`, tokens live at most
/// an hour) and `APP` (its `iss`, audience `wsguard`).
const HS256_ISSUERS: &str = r#"
[[trusted_issuers]]
secret_file = "{secret}"
max_token_lifetime = "1h"

[[trusted_issuers]]
issuer = "https://app.example/"
secret_file = "{secret}"
audience = "wsguard"
"#;

/// An HS256 token signed with the applications' secret.
pub fn hs256(claims: &Value) -> String {
    jsonwebtoken::encode(&Header::default(), claims, &EncodingKey::from_secret(SECRET.as_bytes())).unwrap()
}

/// A FastAPI tutorial token: `{"sub", "exp"}` and nothing else.
fn tutorial(user: &str, ttl: i64) -> String {
    hs256(&json!({"sub": user, "exp": now() + ttl}))
}

async fn hs256_server(extra: &[&str]) -> (Server, ConfigFile) {
    let config = ConfigFile::new(HS256_ISSUERS);
    let mut args = vec![config.arg()];
    args.extend(extra.iter().map(|a| a.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    (spawn(&args).await, config)
}

async fn chat_welcome(ws: &mut Ws, user: &str) {
    let welcome = next_json(ws).await;
    assert_eq!(
        (welcome["type"].as_str(), welcome["user"].as_str()),
        (Some("welcome"), Some(user)),
        "{welcome}"
    );
}

/// `/ws?token=`: the refusal's text, then 1008.
pub async fn refused_on_ws(server: &Server, token: &str) -> String {
    let mut ws = server.ws(&format!("/ws?token={token}"), &[]).await.unwrap();
    let text = next_text(&mut ws).await;
    // The close follows the text at once; the bound only keeps a loaded machine from failing it.
    assert_eq!(close_code(&mut ws, 5 * SECOND).await.0, 1008, "{text}");
    text
}

/// `/ws?token=` accepts: the claims as wsguard read them.
pub async fn admitted_on_ws(server: &Server, token: &str) -> Value {
    let mut ws = server.ws(&format!("/ws?token={token}"), &[]).await.unwrap();
    let first = next_text(&mut ws).await;
    assert_eq!(first, "Successfully Login!", "refused: {first}");
    serde_json::from_str(&next_text(&mut ws).await).unwrap()
}

#[tokio::test]
async fn a_fastapi_tutorial_token_opens_every_transport() {
    let (server, _config) = hs256_server(&[]).await;
    let token = tutorial("bob", 600);

    let bearer = format!("Bearer {token}");
    let mut ws = server.ws("/secured-ws", &[("authorization", &bearer)]).await.unwrap();
    assert_eq!(next_text(&mut ws).await, "Welcome bob!");
    assert_echo(&mut ws).await;

    let claims = admitted_on_ws(&server, &token).await;
    assert_eq!(
        (claims["sub"].as_str(), claims["fam"].as_str(), claims["iat"].as_i64()),
        (Some("bob"), Some(""), Some(0))
    );

    let mut ws = server.ws("/chat/ws", &[("authorization", &bearer)]).await.unwrap();
    chat_welcome(&mut ws, "bob").await;
    let mut ws = server.ws(&format!("/chat/ws?token={token}"), &[]).await.unwrap();
    chat_welcome(&mut ws, "bob").await;
    let protocol = format!("bearer, {token}");
    let mut ws = server.ws("/chat/ws", &[("sec-websocket-protocol", &protocol)]).await.unwrap();
    chat_welcome(&mut ws, "bob").await;
    let mut ws = server.ws("/chat/ws", &[]).await.unwrap();
    send(&mut ws, &json!({"type": "auth", "token": token}).to_string()).await;
    chat_welcome(&mut ws, "bob").await;
    send(&mut ws, &json!({"type": "join", "room": "general"}).to_string()).await;
    assert_eq!(next_json(&mut ws).await["users"], json!(["bob"]));

    // A cookie needs the token's own `csrf` claim, matched by ?csrf_token=.
    let origin = server.base.clone();
    let cookie = format!("access_token_cookie={token}");
    let mut ws = server.ws("/chat/ws?csrf_token=anything", &[("cookie", &cookie), ("origin", &origin)]).await;
    assert_eq!(
        close_code(ws.as_mut().unwrap(), SECOND).await,
        (1008, "CSRF token missing or incorrect".into())
    );
    let with_csrf = hs256(&json!({"sub": "bob", "exp": now() + 600, "csrf": "c-1"}));
    let cookie = format!("access_token_cookie={with_csrf}");
    let mut ws =
        server.ws("/chat/ws?csrf_token=c-1", &[("cookie", &cookie), ("origin", &origin)]).await.unwrap();
    chat_welcome(&mut ws, "bob").await;
    for path in ["/chat/ws?csrf_token=c-2", "/chat/ws"] {
        let mut ws = server.ws(path, &[("cookie", &cookie), ("origin", &origin)]).await.unwrap();
        assert_eq!(close_code(&mut ws, SECOND).await, (1008, "CSRF token missing or incorrect".into()));
    }
    let mut ws = server.ws("/ws?csrf_token=c-1", &[("cookie", &cookie), ("origin", &origin)]).await.unwrap();
    assert_eq!(next_text(&mut ws).await, "Successfully Login!");

    // The issuer with an `iss`: its audience is required.
    let app = hs256(&json!({"iss": APP, "aud": "wsguard", "sub": "carol", "exp": now() + 600}));
    assert_eq!(admitted_on_ws(&server, &app).await["iss"], APP);
}

#[tokio::test]
async fn endpoints_that_need_a_wsguard_login_refuse_outside_tokens() {
    let (server, _config) = hs256_server(&[]).await;
    let token = tutorial("bob", 600);
    // Refresh and fresh tokens only come from a wsguard login.
    for path in ["/ws/refresh", "/ws/fresh"] {
        let mut ws = server.ws(&format!("{path}?token={token}"), &[]).await.unwrap();
        assert_eq!(next_text(&mut ws).await, "a wsguard login is required", "{path}");
    }
    let http = &server.http;
    for request in [
        http.post(server.url("/logout")),
        http.post(server.url("/refresh")),
        http.put(server.url("/users/me/password")).json(&json!({"new_password": "new-one"})),
    ] {
        let response = request.bearer_auth(&token).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert!(response.headers()["www-authenticate"].to_str().unwrap().contains("invalid_token"));
        assert_eq!(response.json::<Value>().await.unwrap()["detail"], "a wsguard login is required");
    }
    // Who wsguard takes the token for: the username, nothing from a row (there is none).
    let me = server.me(&token).await;
    assert_eq!(me.status(), StatusCode::OK);
    assert_eq!(
        me.json::<Value>().await.unwrap(),
        json!({"username": "bob", "email": null, "full_name": null, "disabled": false})
    );
    // A user with a row is still taken from the token alone.
    let me = server.me(&tutorial("johndoe", 600)).await.json::<Value>().await.unwrap();
    assert_eq!(me["email"], Value::Null);
}

#[tokio::test]
async fn outside_sockets_expire_and_refresh_with_the_same_issuer_and_user_only() {
    let (server, _config) = hs256_server(&["--expiry-warning=1s"]).await;
    let mut ws = server.ws(&format!("/chat/ws?token={}", tutorial("bob", 3)), &[]).await.unwrap();
    chat_welcome(&mut ws, "bob").await;
    assert_eq!(close_code(&mut ws, Duration::from_secs(6)).await, (4001, "token expired".into()));

    let own = server.login("johndoe", "secret").await.access;
    let bearer = format!("Bearer {}", tutorial("johndoe", 3));
    let mut ws = server.ws("/secured-ws", &[("authorization", &bearer)]).await.unwrap();
    assert_eq!(next_text(&mut ws).await, "Welcome johndoe!");
    let app_johndoe = hs256(&json!({"iss": APP, "aud": "wsguard", "sub": "johndoe", "exp": now() + 600}));
    for (token, detail) in [
        (tutorial("alice", 600), "token belongs to another user"),
        (app_johndoe, "token from another issuer"),
        (own, "token from another issuer"),
        (tutorial("johndoe", -60), "signature has expired"),
    ] {
        send(&mut ws, &json!({"type": "refresh", "token": token}).to_string()).await;
        let error: Value = serde_json::from_str(&next_text(&mut ws).await).unwrap();
        assert_eq!((error["code"].as_str(), error["detail"].as_str()), (Some("forbidden"), Some(detail)));
    }
    let later = now() + 600;
    send(&mut ws, &json!({"type": "refresh", "token": tutorial("johndoe", 600)}).to_string()).await;
    let refreshed: Value = serde_json::from_str(&next_text(&mut ws).await).unwrap();
    assert_eq!(refreshed["type"], "refreshed");
    assert!(refreshed["exp"].as_i64().unwrap() >= later);
    // Past the first token's `exp`, the socket lives on. Time must pass: that token has to expire.
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_echo(&mut ws).await;
}

#[tokio::test]
async fn bad_outside_tokens_are_refused_like_bad_own_tokens() {
    let (server, _config) = hs256_server(&[]).await;
    let exp = now() + 600;
    let app = |claims: Value| {
        let mut all = json!({"iss": APP, "aud": "wsguard", "sub": "bob", "exp": exp});
        all.as_object_mut().unwrap().extend(claims.as_object().unwrap().clone());
        all
    };
    let other_secret = EncodingKey::from_secret(b"0d9c1e7a4b3f8e2d6c5a9b1f0e7d3c2a");
    let b64 = |v: &Value| {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
    };
    let unsigned = format!(
        "{}.{}.",
        b64(&json!({"alg": "none", "typ": "JWT"})),
        b64(&json!({"sub": "bob", "exp": exp}))
    );
    let cases = [
        (hs256(&app(json!({"iss": "https://unknown.example/"}))), "invalid signature"),
        (hs256(&app(json!({"aud": "another-service"}))), "invalid issuer or audience"),
        (
            hs256(&{
                let mut c = app(json!({}));
                c.as_object_mut().unwrap().remove("aud");
                c
            }),
            "invalid issuer or audience",
        ),
        (
            jsonwebtoken::encode(&Header::default(), &json!({"sub": "bob", "exp": exp}), &other_secret)
                .unwrap(),
            "invalid signature",
        ),
        (unsigned, "malformed token"),
        (hs256(&json!({"sub": "bob", "exp": now() + 7200})), "malformed token"),
        (hs256(&json!({"sub": "bob", "iat": now() - 4000, "exp": now() + 60})), "malformed token"),
        (hs256(&json!({"sub": "bob"})), "malformed token"),
        (hs256(&json!({"sub": "bob", "exp": now() - 60})), "signature has expired"),
        (hs256(&json!({"sub": "bob smith", "exp": exp})), "malformed token"),
        (hs256(&json!({"user": "bob", "exp": exp})), "malformed token"),
    ];
    for (token, error) in &cases {
        assert_eq!(refused_on_ws(&server, token).await, *error, "{}", crate::helpers::claims(token));
    }
    // Before the upgrade too.
    let bearer = format!("Bearer {}", cases[0].0);
    assert_eq!(server.ws_refused("/secured-ws", &[("authorization", &bearer)]).await, 401);
    let metrics = server.http.get(server.url("/metrics")).send().await.unwrap().text().await.unwrap();
    for reason in ["bad_signature", "wrong_issuer_or_audience", "malformed", "expired"] {
        assert!(
            metrics.contains(&format!("wsguard_token_rejections_total{{reason=\"{reason}\"}}")),
            "{reason}"
        );
    }
}

#[tokio::test]
async fn revoking_a_user_from_the_cli_closes_their_sockets_on_another_node() {
    if !service("PostgreSQL", POSTGRES) {
        return;
    }
    let schema = Schema::create().await;
    let config = ConfigFile::new(HS256_ISSUERS);
    let database = format!("--database-url={}", schema.url());
    let a = spawn(&[&database, &config.arg()]).await;
    let b = another_node(&a).await;

    let old = hs256(&json!({"sub": "bob", "iat": now() - 5, "exp": now() + 600}));
    let without_iat = tutorial("bob", 600);
    // From an issuer whose clock runs 4 s ahead: admitted, within the leeway.
    let ahead = hs256(&json!({"sub": "bob", "iat": now() + 4, "exp": now() + 600}));
    let mut bob = b.ws(&format!("/chat/ws?token={old}"), &[]).await.unwrap();
    chat_welcome(&mut bob, "bob").await;
    let mut bob_ahead = b.ws(&format!("/chat/ws?token={ahead}"), &[]).await.unwrap();
    chat_welcome(&mut bob_ahead, "bob").await;
    // On the node that runs the CLI too: its close says that node has the revocation as well
    // (each node follows the log on its own), before the refusals below are asked of both.
    let mut bob_on_a = a.ws(&format!("/chat/ws?token={old}"), &[]).await.unwrap();
    chat_welcome(&mut bob_on_a, "bob").await;
    let own = b.login("johndoe", "secret").await;
    let mut john = b.ws(&format!("/chat/ws?token={}", own.access), &[]).await.unwrap();
    chat_welcome(&mut john, "johndoe").await;

    let started = std::time::Instant::now();
    let revoked = a.cli(&["user", "revoke", "bob", &config.arg()], "").await;
    assert!(revoked.status.success(), "{}", String::from_utf8_lossy(&revoked.stderr));
    assert!(String::from_utf8_lossy(&revoked.stdout).contains("revoked bob"));
    assert_eq!(close_code(&mut bob, SECOND).await, (4003, "token revoked".into()));
    assert!(started.elapsed() < Duration::from_secs(2), "CLI start included: {:?}", started.elapsed());
    assert_eq!(close_code(&mut bob_on_a, SECOND).await, (4003, "token revoked".into()));
    assert_eq!(close_code(&mut bob_ahead, SECOND).await, (4003, "token revoked".into()), "iat ahead");
    // Another user's socket is untouched.
    send(&mut john, &json!({"type": "ping"}).to_string()).await;
    assert_eq!(next_json(&mut john).await["type"], "pong");

    for node in [&a, &b] {
        assert_eq!(refused_on_ws(node, &old).await, "token has been revoked");
        assert_eq!(refused_on_ws(node, &without_iat).await, "token has been revoked", "no iat: refused");
        assert_eq!(refused_on_ws(node, &ahead).await, "token has been revoked", "iat ahead");
    }
    // A trusted issuer's `iat` may run the leeway (5 s) ahead, and has whole seconds: a token
    // whose `iat` is within 5 s after the revocation's second may predate it, and is refused.
    // Time must pass, here and below: the `iat`s must fall in later seconds.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let soon_after = hs256(&json!({"sub": "bob", "iat": now(), "exp": now() + 600}));
    assert_eq!(refused_on_ws(&a, &soon_after).await, "token has been revoked");
    tokio::time::sleep(Duration::from_secs(5)).await;
    let after = hs256(&json!({"sub": "bob", "iat": now(), "exp": now() + 600}));
    assert_eq!(admitted_on_ws(&a, &after).await["sub"], "bob");
    assert_eq!(admitted_on_ws(&b, &after).await["sub"], "bob");

    // A user with a row: their own tokens and logins too.
    assert!(a.cli(&["user", "revoke", "johndoe", &config.arg()], "").await.status.success());
    assert_eq!(close_code(&mut john, SECOND).await.0, 4003);
    assert_eq!(a.me(&own.access).await.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(a.refresh(&own.refresh).await.status(), StatusCode::UNAUTHORIZED);
    // Revocations survive a restart: a node loads what is in force.
    let b = b.restart().await;
    assert_eq!(refused_on_ws(&b, &old).await, "token has been revoked");

    let bad = a.cli(&["user", "revoke", "bob smith"], "").await;
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("username may contain only"));
    schema.drop().await;
}

#[tokio::test]
async fn a_channels_claim_opens_claim_namespaces_to_what_it_lists() {
    let config = ConfigFile::new(&format!(
        "{HS256_ISSUERS}\n[[namespaces]]\nname = \"vip\"\npublish = \"subscribers\"\n[[namespaces]]\nname = \"team\"\nsubscribe = \"claim\"\npublish = \"subscribers\"\n"
    ));
    let server = spawn(&[&config.arg()]).await;
    let token = hs256(&json!({"sub": "bob", "exp": now() + 600, "channels": ["vip:lounge", "team:*"]}));
    let mut ws = server.ws(&format!("/connect?token={token}"), &[]).await.unwrap();
    assert_eq!(next_json(&mut ws).await["user"], "bob");
    for (channel, expected) in [
        ("vip:lounge", "subscribed"),
        ("team:red", "subscribed"),
        ("team:blue:eu", "subscribed"),
        ("vip:other", "error"),
    ] {
        send(&mut ws, &json!({"type": "subscribe", "channel": channel}).to_string()).await;
        let answer = next_json(&mut ws).await;
        assert_eq!(answer["type"], expected, "{channel}: {answer}");
        if expected == "error" {
            assert_eq!(answer["code"], "forbidden");
        }
    }
    // Refreshed in band with a token that no longer lists a channel: it ends, and says so.
    let narrower = hs256(&json!({"sub": "bob", "exp": now() + 600, "channels": ["team:red"]}));
    send(&mut ws, &json!({"type": "refresh", "token": narrower}).to_string()).await;
    assert_eq!(next_json(&mut ws).await["type"], "refreshed");
    let mut ended = Vec::new();
    for _ in 0..2 {
        let frame = next_json(&mut ws).await;
        assert_eq!(
            (frame["type"].as_str(), frame["code"].as_str()),
            (Some("unsubscribed"), Some("forbidden"))
        );
        ended.push(frame["channel"].as_str().unwrap().to_owned());
    }
    ended.sort();
    assert_eq!(ended, ["team:blue:eu", "vip:lounge"]);
    send(&mut ws, &json!({"type": "unsubscribe", "channel": "vip:lounge"}).to_string()).await;
    assert_eq!(next_json(&mut ws).await["detail"], "not subscribed to this channel");
    // A publication to it no longer reaches bob; the channel still listed does.
    let mut alice = server.ws(&format!("/connect?token={token}"), &[]).await.unwrap();
    next_json(&mut alice).await;
    // Commands are answered in order: each publish follows its subscribe.
    for channel in ["vip:lounge", "team:red"] {
        send(&mut alice, &json!({"type": "subscribe", "channel": channel}).to_string()).await;
        send(&mut alice, &json!({"type": "publish", "channel": channel, "data": channel}).to_string()).await;
    }
    let delivered = next_json(&mut ws).await;
    assert_eq!(
        (delivered["type"].as_str(), delivered["channel"].as_str()),
        (Some("publication"), Some("team:red"))
    );
    // Nor may bob publish to it, or subscribe again.
    send(&mut ws, &json!({"type": "publish", "channel": "vip:lounge", "data": 1}).to_string()).await;
    assert_eq!(next_json(&mut ws).await["code"], "forbidden");
    send(&mut ws, &json!({"type": "subscribe", "channel": "vip:lounge"}).to_string()).await;
    assert_eq!(next_json(&mut ws).await["code"], "forbidden");

    // Anything but a short list of strings is a malformed token.
    for channels in [json!("vip:lounge"), json!([1]), json!([""]), json!(vec!["x"; 65])] {
        let token = hs256(&json!({"sub": "bob", "exp": now() + 600, "channels": channels}));
        let mut ws = server.ws(&format!("/connect?token={token}"), &[]).await.unwrap();
        let (code, _) = close_code(&mut ws, Duration::from_secs(2)).await;
        assert_eq!(code, 1008, "{channels}");
    }
}
