//! The token service and the user endpoints: every success and every refusal of docs/protocol.md.

use crate::helpers::{claims, spawn};
use reqwest::header::{CACHE_CONTROL, CONTENT_TYPE, WWW_AUTHENTICATE};
use reqwest::StatusCode;
use serde_json::{json, Value};

#[tokio::test]
async fn password_grant_issues_tokens_that_open_users_me() {
    let server = spawn(&[]).await;
    let response = server
        .token_form(&[("grant_type", "password"), ("username", "johndoe"), ("password", "secret")])
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()[CACHE_CONTROL], "no-store");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["token_type"], "bearer");
    assert_eq!(body["expires_in"], 900);
    let access = body["access_token"].as_str().unwrap();
    let c = claims(access);
    assert_eq!(c["sub"], "johndoe");
    assert_eq!(c["type"], "access");
    assert_eq!(c["fresh"], true);
    assert_eq!(c["iss"], "wsguard");
    for claim in ["exp", "iat", "nbf", "jti", "fam", "csrf"] {
        assert!(!c[claim].is_null(), "claim {claim} missing");
    }
    assert_eq!(claims(body["refresh_token"].as_str().unwrap())["type"], "refresh");

    let me = server.me(access).await;
    assert_eq!(me.status(), StatusCode::OK);
    let me: Value = me.json().await.unwrap();
    assert_eq!(
        me,
        json!({"username": "johndoe", "email": "johndoe@example.com", "full_name": "John Doe", "disabled": false})
    );

    let items = server.http.get(server.url("/items/")).bearer_auth(access).send().await.unwrap();
    assert_eq!(items.status(), StatusCode::OK);
    assert_eq!(items.json::<Value>().await.unwrap(), json!([{"item_id": "Foo", "owner": "johndoe"}]));
}

#[tokio::test]
async fn bad_credentials_get_401_with_the_same_answer_for_unknown_users() {
    let server = spawn(&[]).await;
    let wrong = server.token_form(&[("username", "johndoe"), ("password", "nope")]).await;
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(wrong.headers()[WWW_AUTHENTICATE], "Bearer");
    let wrong: Value = wrong.json().await.unwrap();
    assert_eq!(wrong["detail"], "Incorrect username or password");
    assert_eq!(wrong["error"], "invalid_grant");

    let unknown = server.token_form(&[("username", "nobody"), ("password", "nope")]).await;
    assert_eq!(unknown.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(unknown.json::<Value>().await.unwrap(), wrong);
}

#[tokio::test]
async fn unknown_users_cost_as_much_time_as_known_ones() {
    let server = spawn(&[]).await;
    let mut known = Vec::new();
    let mut unknown = Vec::new();
    for _ in 0..9 {
        let started = std::time::Instant::now();
        server.token_form(&[("username", "johndoe"), ("password", "wrong")]).await;
        known.push(started.elapsed());
        let started = std::time::Instant::now();
        server.token_form(&[("username", "ghost"), ("password", "wrong")]).await;
        unknown.push(started.elapsed());
    }
    known.sort();
    unknown.sort();
    // Medians, with wide bounds: other tests load the machine, but without the dummy hash an
    // unknown user would answer some 50 times faster.
    let (k, u) = (known[4].as_secs_f64(), unknown[4].as_secs_f64());
    assert!(u > k * 0.25 && u < k * 4.0, "median known {k:.4}s vs unknown {u:.4}s");
}

#[tokio::test]
async fn disabled_users_cannot_log_in() {
    let server = spawn(&[]).await;
    let response = server.token_form(&[("username", "alice"), ("password", "secret3")]).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["detail"], "Inactive user");
    assert_eq!(body["error"], "invalid_grant");
}

#[tokio::test]
async fn malformed_token_requests_get_oauth_errors_and_change_nothing() {
    let server = spawn(&[]).await;
    let long_name = "a".repeat(65);
    let long_password = "p".repeat(1025);
    let cases: Vec<(Vec<(&str, &str)>, &str)> = vec![
        (vec![("username", "johndoe")], "password"),
        (vec![("password", "secret")], "username"),
        (vec![("username", &long_name), ("password", "secret")], "username too long"),
        (vec![("username", "johndoe"), ("password", &long_password)], "password too long"),
        (vec![("username", ""), ("password", "secret")], "username must not be empty"),
    ];
    for (form, detail) in cases {
        let response = server.token_form(&form).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{form:?}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"], "invalid_request", "{form:?}");
        assert!(body["detail"].as_str().unwrap().contains(detail), "{form:?}: {body}");
    }

    let grant = server
        .token_form(&[("grant_type", "client_credentials"), ("username", "johndoe"), ("password", "secret")])
        .await;
    assert_eq!(grant.status(), StatusCode::BAD_REQUEST);
    assert_eq!(grant.json::<Value>().await.unwrap()["error"], "unsupported_grant_type");

    let json_body = server
        .http
        .post(server.url("/token"))
        .json(&json!({"username": "johndoe", "password": "secret"}))
        .send()
        .await
        .unwrap();
    assert_eq!(json_body.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(json_body.json::<Value>().await.unwrap()["error"], "invalid_request");

    let huge = server
        .http
        .post(server.url("/token"))
        .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(format!("username=johndoe&password={}", "x".repeat(20 * 1024)))
        .send()
        .await
        .unwrap();
    assert_eq!(huge.status(), StatusCode::PAYLOAD_TOO_LARGE);

    let garbage = server
        .http
        .post(server.url("/token"))
        .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(vec![0xff, 0xfe, b'=', 0x00])
        .send()
        .await
        .unwrap();
    assert!(garbage.status().is_client_error(), "{}", garbage.status());

    // None of it created a login.
    let families = count_rows(&server.data_dir(), "refresh_families").await;
    assert_eq!(families, 0);
}

pub async fn count_rows(data: &std::path::Path, table: &str) -> i64 {
    use sqlx::Connection;
    let url = format!("sqlite://{}", data.join("wsguard.db").display());
    let mut db = sqlx::SqliteConnection::connect(&url).await.unwrap();
    sqlx::query_scalar(&format!("SELECT COUNT(*) FROM {table}")).fetch_one(&mut db).await.unwrap()
}

#[tokio::test]
async fn json_login_returns_a_fresh_pair_and_rejects_bad_bodies() {
    let server = spawn(&[]).await;
    let ok = server
        .http
        .post(server.url("/login"))
        .json(&json!({"username": "janedoe", "password": "secret2"}))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), StatusCode::OK);
    assert_eq!(ok.headers()[CACHE_CONTROL], "no-store");
    let body: Value = ok.json().await.unwrap();
    assert_eq!(claims(body["access_token"].as_str().unwrap())["fresh"], true);
    assert!(body["refresh_token"].is_string());
    // Media types are case-insensitive: the JSON login and the password form, however spelled.
    let login = |path: &str, content_type: &'static str, body: &'static str| {
        server.http.post(server.url(path)).header(CONTENT_TYPE, content_type).body(body).send()
    };
    let json_body = r#"{"username": "janedoe", "password": "secret2"}"#;
    assert_eq!(login("/login", "Application/JSON", json_body).await.unwrap().status(), StatusCode::OK);
    let form = "username=janedoe&password=secret2";
    let form_type = "Application/X-WWW-Form-URLEncoded; Charset=UTF-8";
    assert_eq!(login("/token", form_type, form).await.unwrap().status(), StatusCode::OK);

    for (body, content_type, status) in [
        ("{\"username\": \"janedoe\"", "application/json", StatusCode::UNPROCESSABLE_ENTITY),
        ("{\"username\": 5, \"password\": \"x\"}", "application/json", StatusCode::UNPROCESSABLE_ENTITY),
        ("{}", "application/json", StatusCode::UNPROCESSABLE_ENTITY),
        (
            "username=janedoe&password=secret2",
            "application/x-www-form-urlencoded",
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ),
    ] {
        let response = server
            .http
            .post(server.url("/login"))
            .header(CONTENT_TYPE, content_type)
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), status, "{body}");
        let detail: Value = response.json().await.unwrap();
        assert!(detail["detail"].as_str().is_some_and(|d| !d.is_empty()), "{detail}");
    }
}

#[tokio::test]
async fn users_me_refuses_every_bad_credential() {
    let server = spawn(&[]).await;
    let pair = server.login("johndoe", "secret").await;

    let missing = server.http.get(server.url("/users/me")).send().await.unwrap();
    assert_eq!(missing.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(missing.headers()[WWW_AUTHENTICATE], "Bearer");
    assert_eq!(missing.json::<Value>().await.unwrap()["detail"], "Not authenticated");

    let basic = server
        .http
        .get(server.url("/users/me"))
        .header("authorization", "Basic am9objpzZWNyZXQ=")
        .send()
        .await
        .unwrap();
    assert_eq!(basic.status(), StatusCode::UNAUTHORIZED);

    for bad in ["garbage", "a.b.c", &pair.refresh] {
        let response = server.me(bad).await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{bad}");
        let challenge = response.headers()[WWW_AUTHENTICATE].to_str().unwrap().to_owned();
        assert!(challenge.starts_with("Bearer error=\"invalid_token\""), "{challenge}");
    }

    // alg=none with the real claims.
    use base64::Engine;
    let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let payload = pair.access.split('.').nth(1).unwrap();
    let none = format!("{}.{payload}.", engine.encode(r#"{"alg":"none","typ":"JWT"}"#));
    assert_eq!(server.me(&none).await.status(), StatusCode::UNAUTHORIZED);

    // A token signed with the real key but expired.
    let secret =
        hex::decode(std::fs::read_to_string(server.data_dir().join("jwt-secret.key")).unwrap().trim())
            .unwrap();
    let mut c = claims(&pair.access);
    c["exp"] = json!(c["iat"].as_i64().unwrap() - 60);
    c["iat"] = json!(c["iat"].as_i64().unwrap() - 120);
    c["nbf"] = c["iat"].clone();
    let expired = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &c,
        &jsonwebtoken::EncodingKey::from_secret(&secret),
    )
    .unwrap();
    let response = server.me(&expired).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(response.json::<Value>().await.unwrap()["detail"], "signature has expired");

    // A disabled user's still-valid token: 400 Inactive user.
    assert!(server.cli(&["user", "disable", "johndoe"], "").await.status.success());
    let inactive = server.me(&pair.access).await;
    assert_eq!(inactive.status(), StatusCode::BAD_REQUEST);
    assert_eq!(inactive.json::<Value>().await.unwrap()["detail"], "Inactive user");
}

#[tokio::test]
async fn errors_are_json_and_docs_work_offline() {
    let server = spawn(&[]).await;
    let missing = server.http.get(server.url("/nope")).send().await.unwrap();
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    assert_eq!(missing.json::<Value>().await.unwrap()["detail"], "Not Found");
    let wrong_method = server.http.get(server.url("/token")).send().await.unwrap();
    assert_eq!(wrong_method.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(wrong_method.json::<Value>().await.unwrap()["detail"], "Method Not Allowed");

    let spec: Value =
        server.http.get(server.url("/openapi.json")).send().await.unwrap().json().await.unwrap();
    assert!(spec["openapi"].as_str().unwrap().starts_with("3."));
    for path in ["/token", "/login", "/login/cookie", "/refresh", "/logout", "/users/me", "/items/"] {
        assert!(spec["paths"][path].is_object(), "{path} missing from the spec");
    }
    assert_eq!(spec["components"]["securitySchemes"]["bearer"]["flows"]["password"]["tokenUrl"], "/token");
    // Error statuses name their body, so schemathesis checks it (tests/interop/schemathesis.sh).
    assert_eq!(spec["components"]["schemas"]["ErrorBody"]["required"], serde_json::json!(["detail"]));
    let unauthorized = &spec["paths"]["/users/me"]["get"]["responses"]["401"]["content"]["application/json"];
    assert_eq!(unauthorized["schema"]["$ref"], "#/components/schemas/ErrorBody");

    let docs = server.http.get(server.url("/docs/")).send().await.unwrap();
    assert_eq!(docs.status(), StatusCode::OK);
    let csp = docs.headers()["content-security-policy"].to_str().unwrap();
    let scripts = csp.split(';').find(|d| d.trim().starts_with("script-src")).expect("script-src");
    assert_eq!(scripts.trim(), "script-src 'self'", "{csp}");
    let html = docs.text().await.unwrap();
    assert!(html.contains("swagger-ui"), "{html}");
    assert!(!html.contains("cdn"), "the docs page must not load from a CDN");
    for asset in ["/docs/swagger-ui.css", "/docs/swagger-ui-bundle.js", "/docs/swagger-initializer.js"] {
        let response = server.http.get(server.url(asset)).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{asset}");
    }

    assert_eq!(server.http.get(server.url("/healthz")).send().await.unwrap().status(), StatusCode::OK);
    assert_eq!(server.http.get(server.url("/readyz")).send().await.unwrap().status(), StatusCode::OK);
    let metrics = server.http.get(server.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("wsguard_logins_total"), "{metrics}");
}

#[tokio::test]
async fn logs_never_hold_tokens_or_passwords() {
    let server = spawn(&["--access-ttl=1h"]).await;
    let pair = server.login("janedoe", "secret2").await;
    server.token_form(&[("username", "janedoe"), ("password", "wrong-Pa55word")]).await;
    server.me(&pair.access).await;
    server.refresh(&pair.refresh).await;
    server.me("garbage.token.value").await;
    let bearer = format!("Bearer {}", pair.access);
    drop(server.ws("/secured-ws", &[("authorization", &bearer)]).await);
    drop(server.ws(&format!("/ws?token={}", pair.access), &[]).await);
    let log = server.log();
    assert!(log.contains("login"), "the log is written: {log}");
    for secret in
        [pair.access.as_str(), pair.refresh.as_str(), "secret2", "wrong-Pa55word", "garbage.token.value"]
    {
        assert!(!log.contains(secret), "the log holds {secret}");
    }
}

#[tokio::test]
async fn metrics_count_logins_rejections_and_hash_time() {
    let server = spawn(&[]).await;
    server.login("johndoe", "secret").await;
    server.token_form(&[("username", "johndoe"), ("password", "wrong")]).await;
    server.me("garbage").await;
    let pair = server.login("janedoe", "secret2").await;
    server.me(&pair.refresh).await;
    // One socket open, one refused on its token, one refused for its Origin.
    let mut open = server.ws(&format!("/ws?token={}", pair.access), &[]).await.unwrap();
    assert_eq!(crate::helpers::next_text(&mut open).await, "Successfully Login!");
    let mut refused = server.ws("/ws?token=garbage", &[]).await.unwrap();
    assert_eq!(crate::helpers::close_code(&mut refused, std::time::Duration::from_secs(2)).await.0, 1008);
    assert_eq!(server.ws_refused("/secured-ws", &[("origin", "https://evil.example")]).await, 403);

    let text = server.http.get(server.url("/metrics")).send().await.unwrap().text().await.unwrap();
    let value = |name: &str| -> f64 {
        let line = text.lines().find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '));
        let line = line.unwrap_or_else(|| panic!("missing {name} in\n{text}"));
        line[name.len()..].trim().parse().unwrap()
    };
    assert_eq!(value("wsguard_logins_total{result=\"ok\"}"), 2.0);
    assert_eq!(value("wsguard_logins_total{result=\"failed\"}"), 1.0);
    assert_eq!(value("wsguard_token_rejections_total{reason=\"malformed\"}"), 2.0, "users/me and the socket");
    assert_eq!(value("wsguard_token_rejections_total{reason=\"wrong_type\"}"), 1.0);
    assert_eq!(value("wsguard_password_hashes_total"), 3.0, "three password checks");
    let seconds = value("wsguard_password_hash_seconds_total");
    assert!(seconds > 0.003 && seconds < 30.0, "three argon2id hashes take milliseconds: {seconds}");
    assert_eq!(value("wsguard_sockets_open"), 1.0);
    assert_eq!(value("wsguard_sockets_total"), 1.0);
    assert_eq!(value("wsguard_socket_rejections_total"), 2.0);
    assert_eq!(value("wsguard_sockets_closed_total{reason=\"revoked\"}"), 0.0);
    for kind in ["# TYPE wsguard_password_hash_seconds_total counter", "# TYPE wsguard_sockets_open gauge"] {
        assert!(text.lines().any(|l| l == kind), "missing {kind:?} in\n{text}");
    }
}

#[tokio::test]
async fn json_logs_are_one_object_per_line() {
    let data = tempfile::tempdir().unwrap();
    let output = tokio::process::Command::new(crate::helpers::BIN)
        .args(["user", "list", "--data-dir"])
        .arg(data.path())
        .env("WSGUARD_LOG_FORMAT", "json")
        .env("WSGUARD_LOG", "debug")
        .output()
        .await
        .unwrap();
    assert!(output.status.success());
    let log = String::from_utf8(output.stderr).unwrap();
    assert!(log.lines().count() > 0, "some log lines");
    for line in log.lines() {
        let value: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(value["level"].is_string() && value["timestamp"].is_string(), "{line}");
    }
}
