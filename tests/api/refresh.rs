//! Refresh rotation, reuse detection, cookies with CSRF, logout, and the fresh-token check.

use crate::helpers::{claims, spawn};
use reqwest::header::{CACHE_CONTROL, LOCATION, SET_COOKIE};
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::time::Duration;

#[tokio::test]
async fn refresh_rotates_and_a_reused_token_revokes_the_login() {
    let server = spawn(&["--refresh-grace=0s"]).await;
    let first = server.login("johndoe", "secret").await;

    let rotated = server.refresh(&first.refresh).await;
    assert_eq!(rotated.status(), StatusCode::OK);
    assert_eq!(rotated.headers()[CACHE_CONTROL], "no-store");
    let rotated: Value = rotated.json().await.unwrap();
    let second_access = rotated["access_token"].as_str().unwrap().to_owned();
    let second_refresh = rotated["refresh_token"].as_str().unwrap().to_owned();
    assert_eq!(claims(&second_access)["fresh"], false, "refreshed access tokens are not fresh");
    assert_eq!(claims(&second_access)["fam"], claims(&first.access)["fam"]);
    assert_eq!(server.me(&second_access).await.status(), StatusCode::OK);

    // The first refresh token again: a replay. The whole login dies.
    let replay = server.refresh(&first.refresh).await;
    assert_eq!(replay.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(replay.json::<Value>().await.unwrap()["detail"], "token has been revoked");
    assert_eq!(server.refresh(&second_refresh).await.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(server.me(&second_access).await.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(server.me(&first.access).await.status(), StatusCode::UNAUTHORIZED);

    // Another login of the same user is untouched.
    let other = server.login("johndoe", "secret").await;
    assert_eq!(server.me(&other.access).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn refresh_needs_a_refresh_token() {
    let server = spawn(&[]).await;
    let pair = server.login("johndoe", "secret").await;
    let response = server.refresh(&pair.access).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(response.json::<Value>().await.unwrap()["detail"], "wrong token type");
    let none = server.http.post(server.url("/refresh")).send().await.unwrap();
    assert_eq!(none.status(), StatusCode::UNAUTHORIZED);
}

/// The whole `Set-Cookie` line for cookie `name`, if the response sets it.
fn set_cookie(response: &reqwest::Response, name: &str) -> Option<String> {
    response
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with(&format!("{name}=")))
        .map(str::to_owned)
}

fn cookie_value(response: &reqwest::Response, name: &str) -> Option<String> {
    set_cookie(response, name).map(|line| line.split(';').next().unwrap()[name.len() + 1..].to_owned())
}

fn set_cookie_line(response: &reqwest::Response, name: &str) -> String {
    set_cookie(response, name).unwrap_or_else(|| panic!("{name} not set"))
}

/// Logs in through `/login/cookie` and returns the four cookie values.
pub async fn cookie_login(server: &crate::helpers::Server, user: &str, password: &str) -> [String; 4] {
    let response = server
        .http
        .post(server.url("/login/cookie"))
        .form(&[("username", user), ("password", password)])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    ["access_token_cookie", "csrf_access_token", "refresh_token_cookie", "csrf_refresh_token"]
        .map(|name| cookie_value(&response, name).unwrap_or_else(|| panic!("{name} not set")))
}

#[tokio::test]
async fn cookie_login_sets_httponly_tokens_and_readable_csrf() {
    let server = spawn(&[]).await;
    let response = server
        .http
        .post(server.url("/login/cookie"))
        .json(&json!({"username": "johndoe", "password": "secret"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    for (name, http_only) in [
        ("access_token_cookie", true),
        ("refresh_token_cookie", true),
        ("csrf_access_token", false),
        ("csrf_refresh_token", false),
    ] {
        let line = set_cookie_line(&response, name);
        assert_eq!(line.contains("HttpOnly"), http_only, "{line}");
        assert!(line.contains("SameSite=Lax"), "{line}");
        assert!(line.contains("Path=/"), "{line}");
    }

    // From the login page: 303 to a local `next`, never elsewhere.
    for (next, location) in [("/chat", "/chat"), ("//evil.example/x", "/"), ("https://evil.example", "/")] {
        let response = server
            .http
            .post(server.url("/login/cookie"))
            .form(&[("username", "johndoe"), ("password", "secret"), ("next", next)])
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::SEE_OTHER, "{next}");
        assert_eq!(response.headers()[LOCATION], location, "{next}");
    }
    let failed = server
        .http
        .post(server.url("/login/cookie"))
        .form(&[("username", "johndoe"), ("password", "wrong"), ("next", "/chat")])
        .send()
        .await
        .unwrap();
    assert_eq!(failed.status(), StatusCode::SEE_OTHER);
    assert_eq!(failed.headers()[LOCATION], "/login?error=1&next=%2Fchat");
    assert!(failed.headers().get(SET_COOKIE).is_none());
}

#[tokio::test]
async fn cookie_requests_that_change_state_need_the_csrf_header() {
    let server = spawn(&[]).await;
    let [access, csrf_access, refresh, csrf_refresh] = cookie_login(&server, "johndoe", "secret").await;
    let cookies = format!("access_token_cookie={access}; csrf_access_token={csrf_access}; refresh_token_cookie={refresh}; csrf_refresh_token={csrf_refresh}");

    // GET with the cookie alone is fine.
    let me = server.http.get(server.url("/users/me")).header("cookie", &cookies).send().await.unwrap();
    assert_eq!(me.status(), StatusCode::OK);

    // POST /refresh without or with a wrong CSRF header: refused, and nothing rotated.
    for header in [None, Some("wrong"), Some(csrf_access.as_str())] {
        let mut request = server.http.post(server.url("/refresh")).header("cookie", &cookies);
        if let Some(value) = header {
            request = request.header("x-csrf-token", value);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{header:?}");
        assert_eq!(response.json::<Value>().await.unwrap()["detail"], "CSRF token missing or incorrect");
    }
    let response = server
        .http
        .post(server.url("/refresh"))
        .header("cookie", &cookies)
        .header("x-csrf-token", &csrf_refresh)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let new_access = cookie_value(&response, "access_token_cookie").expect("refresh by cookie sets cookies");
    assert_ne!(new_access, access);

    // Logout by cookie needs the access CSRF value.
    let refused = server.http.post(server.url("/logout")).header("cookie", &cookies).send().await.unwrap();
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    let done = server
        .http
        .post(server.url("/logout"))
        .header("cookie", &cookies)
        .header("x-csrf-token", &csrf_access)
        .send()
        .await
        .unwrap();
    assert_eq!(done.status(), StatusCode::NO_CONTENT);
    assert!(set_cookie_line(&done, "access_token_cookie").contains("Max-Age=0"));
}

#[tokio::test]
async fn logout_revokes_the_token_and_its_login() {
    let server = spawn(&[]).await;
    let pair = server.login("johndoe", "secret").await;
    let other = server.login("johndoe", "secret").await;
    let response = server.http.post(server.url("/logout")).bearer_auth(&pair.access).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    let me = server.me(&pair.access).await;
    assert_eq!(me.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(me.json::<Value>().await.unwrap()["detail"], "token has been revoked");
    assert_eq!(server.refresh(&pair.refresh).await.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(server.me(&other.access).await.status(), StatusCode::OK, "other logins survive");

    // Still revoked after a restart: the log is in the database.
    let server = server.restart().await;
    assert_eq!(server.me(&pair.access).await.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(server.me(&other.access).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn changing_the_password_needs_a_fresh_token_and_ends_every_login() {
    let server = spawn(&[]).await;
    let pair = server.login("johndoe", "secret").await;
    let refreshed: Value = server.refresh(&pair.refresh).await.json().await.unwrap();
    let stale = refreshed["access_token"].as_str().unwrap();

    let change = |token: String, password: &'static str| {
        let request = server
            .http
            .put(server.url("/users/me/password"))
            .bearer_auth(token)
            .json(&json!({"new_password": password}));
        async move { request.send().await.unwrap() }
    };
    let refused = change(stale.to_owned(), "n3w-secret").await;
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(refused.json::<Value>().await.unwrap()["detail"], "fresh token required");

    let fresh = server.login("johndoe", "secret").await;
    assert_eq!(change(fresh.access.clone(), "").await.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(change(fresh.access.clone(), "n3w-secret").await.status(), StatusCode::NO_CONTENT);

    assert_eq!(server.me(&fresh.access).await.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(server.me(stale).await.status(), StatusCode::UNAUTHORIZED);
    let old = server.token_form(&[("username", "johndoe"), ("password", "secret")]).await;
    assert_eq!(old.status(), StatusCode::UNAUTHORIZED);
    server.login("johndoe", "n3w-secret").await;
}

#[tokio::test]
async fn the_token_endpoint_takes_the_oauth2_refresh_grant() {
    let server = spawn(&["--refresh-grace=0s"]).await;
    let pair = server.login("johndoe", "secret").await;
    let grant = [("grant_type", "refresh_token"), ("refresh_token", pair.refresh.as_str())];
    let response = server.token_form(&grant).await;
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    assert_eq!(claims(body["access_token"].as_str().unwrap())["fresh"], false);

    let replay = server.token_form(&grant).await;
    assert_eq!(replay.status(), StatusCode::BAD_REQUEST);
    let replay: Value = replay.json().await.unwrap();
    assert_eq!(replay["error"], "invalid_grant");
    assert_eq!(replay["detail"], "token has been revoked");

    let garbage = server.token_form(&[("grant_type", "refresh_token"), ("refresh_token", "x")]).await;
    assert_eq!(garbage.json::<Value>().await.unwrap()["error"], "invalid_grant");
    let access_as_refresh =
        server.token_form(&[("grant_type", "refresh_token"), ("refresh_token", pair.access.as_str())]).await;
    assert_eq!(access_as_refresh.status(), StatusCode::BAD_REQUEST);
}

async fn cookie_login_with(server: &crate::helpers::Server, headers: &[(&str, &str)]) -> reqwest::Response {
    let mut request = server.http.post(server.url("/login/cookie")).form(&[
        ("username", "johndoe"),
        ("password", "secret"),
        ("next", "/chat"),
    ]);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.send().await.unwrap()
}

#[tokio::test]
async fn a_cross_site_cookie_login_is_refused_and_sets_nothing() {
    let server = spawn(&["--cors-origins=https://app.example"]).await;
    let own = server.base.as_str();
    for headers in [
        &[("origin", "https://evil.example")][..],
        &[("origin", "null")],
        &[("sec-fetch-site", "cross-site")],
        &[("origin", own), ("sec-fetch-site", "cross-site")],
        &[("origin", "https://sibling.example"), ("sec-fetch-site", "same-site")],
        &[("origin", "null"), ("sec-fetch-site", "same-site")],
    ] {
        let response = cookie_login_with(&server, headers).await;
        assert_eq!(response.status(), StatusCode::FORBIDDEN, "{headers:?}");
        assert!(response.headers().get(SET_COOKIE).is_none(), "{headers:?}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["detail"], "Cross-site login refused");
    }
    // The login page itself, a listed origin, and clients that are not browsers log in.
    for headers in [
        &[("origin", own), ("sec-fetch-site", "same-origin")][..],
        &[("origin", "null"), ("sec-fetch-site", "same-origin")],
        &[("sec-fetch-site", "none")],
        &[("origin", "https://app.example"), ("sec-fetch-site", "same-site")],
        &[],
    ] {
        let response = cookie_login_with(&server, headers).await;
        assert_eq!(response.status(), StatusCode::SEE_OTHER, "{headers:?}");
        assert!(response.headers().get(SET_COOKIE).is_some(), "{headers:?}");
    }
}

#[tokio::test]
async fn a_rotated_refresh_token_opens_nothing_and_ends_its_login() {
    let server = spawn(&["--refresh-grace=0s"]).await;
    let first = server.login("johndoe", "secret").await;
    let rotated: Value = server.refresh(&first.refresh).await.json().await.unwrap();
    let access = rotated["access_token"].as_str().unwrap().to_owned();
    let mut live = server.ws(&format!("/ws?token={access}"), &[]).await.unwrap();
    assert_eq!(crate::helpers::next_text(&mut live).await, "Successfully Login!");

    // The old refresh token on the refresh-mode socket: refused, and the login ends.
    let mut old = server.ws(&format!("/ws/refresh?token={}", first.refresh), &[]).await.unwrap();
    assert_eq!(crate::helpers::next_text(&mut old).await, "token has been revoked");
    assert_eq!(crate::helpers::close_code(&mut old, Duration::from_secs(2)).await.0, 1008);
    let (code, _) = crate::helpers::close_code(&mut live, Duration::from_secs(2)).await;
    assert_eq!(code, 4003, "the login's sockets close");
    let current = rotated["refresh_token"].as_str().unwrap();
    assert_eq!(server.refresh(current).await.status(), StatusCode::UNAUTHORIZED, "the current one too");
}

#[tokio::test]
async fn a_login_id_opens_nothing_for_another_user() {
    let server = spawn(&[]).await;
    let john = server.login("johndoe", "secret").await;
    let jane = server.login("janedoe", "secret2").await;
    let stored = std::fs::read_to_string(server.data_dir().join("jwt-secret.key")).unwrap();
    let secret = hex::decode(stored.trim()).unwrap();
    // John's token, carrying Jane's login id, signed with the server's own key.
    let mut forged = claims(&john.access);
    forged["fam"] = claims(&jane.access)["fam"].clone();
    forged["jti"] = "forged-jti".into();
    let token = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &forged,
        &jsonwebtoken::EncodingKey::from_secret(&secret),
    )
    .unwrap();
    let response = server.me(&token).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(response.json::<Value>().await.unwrap()["detail"], "token has been revoked");
    assert_eq!(server.me(&jane.access).await.status(), StatusCode::OK, "Jane's login is untouched");
}

#[tokio::test]
async fn two_tabs_refreshing_at_once_get_the_same_pair_within_the_grace() {
    let server = spawn(&["--refresh-grace=2s"]).await;
    let first = server.login("johndoe", "secret").await;
    let (a, b) = tokio::join!(server.refresh(&first.refresh), server.refresh(&first.refresh));
    let (a, b): (Value, Value) = (a.json().await.unwrap(), b.json().await.unwrap());
    assert!(a["refresh_token"].is_string(), "{a}");
    assert_eq!(a["refresh_token"], b["refresh_token"], "the same pair for both tabs");
    assert_eq!(a["access_token"], b["access_token"]);
    let current = a["refresh_token"].as_str().unwrap();
    // Later, within the window still: the same pair once more, and the login lives on.
    let again: Value = server.refresh(&first.refresh).await.json().await.unwrap();
    assert_eq!(again["refresh_token"], a["refresh_token"]);
    assert_eq!(server.me(a["access_token"].as_str().unwrap()).await.status(), StatusCode::OK);

    // After the window the replaced token is a replay: the login ends. Time must pass: the
    // window (2 s, in whole seconds) is what is tested.
    tokio::time::sleep(Duration::from_millis(3100)).await;
    let replay = server.refresh(&first.refresh).await;
    assert_eq!(replay.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(server.refresh(current).await.status(), StatusCode::UNAUTHORIZED, "the login is gone");
}
