//! Login throttling (per user and address, per address, per user for unknown addresses) and the
//! bound on concurrent password hashes.

use crate::helpers::{spawn, Server};
use reqwest::StatusCode;
use serde_json::Value;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// A client whose connections come from `ip` (any 127.0.0.0/8 address reaches the server).
fn from(ip: &str) -> reqwest::Client {
    reqwest::Client::builder().local_address(ip.parse::<IpAddr>().unwrap()).build().unwrap()
}

async fn token(
    server: &Server,
    client: &reqwest::Client,
    username: &str,
    password: &str,
) -> reqwest::Response {
    client
        .post(server.url("/token"))
        .form(&[("username", username), ("password", password)])
        .send()
        .await
        .unwrap()
}

/// The Retry-After of a 429, after checking its body.
async fn throttled(response: reqwest::Response, oauth: bool) -> u64 {
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry_after: u64 = response.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    let body: Value = response.json().await.unwrap();
    assert!(body["detail"].as_str().unwrap().contains("Too many failed logins"), "{body}");
    if oauth {
        assert_eq!(body["error"], "slow_down");
    }
    retry_after
}

#[tokio::test]
async fn failures_from_one_address_lock_that_address_out_for_one_window() {
    let server = spawn(&["--login-max-failures=3", "--login-window=3s"]).await;
    let (attacker, user) = (from("127.0.0.2"), from("127.0.0.3"));
    for _ in 0..3 {
        assert_eq!(token(&server, &attacker, "johndoe", "guess").await.status(), StatusCode::UNAUTHORIZED);
    }
    // Even the right password is not checked now, on every login endpoint.
    let retry_after = throttled(token(&server, &attacker, "johndoe", "secret").await, true).await;
    assert!((1..=3).contains(&retry_after), "Retry-After {retry_after}");
    let json = attacker
        .post(server.url("/login"))
        .json(&serde_json::json!({"username": "johndoe", "password": "secret"}))
        .send()
        .await
        .unwrap();
    throttled(json, false).await;
    let cookie = attacker
        .post(server.url("/login/cookie"))
        .form(&[("username", "johndoe"), ("password", "secret")])
        .send()
        .await
        .unwrap();
    throttled(cookie, false).await;

    // The user, from elsewhere, is not locked out.
    assert_eq!(token(&server, &user, "johndoe", "secret").await.status(), StatusCode::OK);

    // The lockout ends with its window. Time must pass: the window is what is tested.
    tokio::time::sleep(Duration::from_secs(retry_after) + Duration::from_millis(300)).await;
    assert_eq!(token(&server, &attacker, "johndoe", "secret").await.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_known_client_keeps_logging_in_while_other_addresses_fail() {
    let server =
        spawn(&["--login-max-failures=3", "--login-max-failures-per-user=4", "--login-window=10m"]).await;
    let home = from("127.0.0.2");
    assert_eq!(token(&server, &home, "johndoe", "secret").await.status(), StatusCode::OK);

    // Failures spread over addresses fill the user's counter.
    for ip in ["127.0.0.3", "127.0.0.3", "127.0.0.3", "127.0.0.4"] {
        assert_eq!(token(&server, &from(ip), "johndoe", "guess").await.status(), StatusCode::UNAUTHORIZED);
    }
    throttled(token(&server, &from("127.0.0.3"), "johndoe", "secret").await, true).await;
    throttled(token(&server, &from("127.0.0.4"), "johndoe", "secret").await, true).await;
    // A new address is held back for this user (for one window at most), the known one is not.
    throttled(token(&server, &from("127.0.0.5"), "johndoe", "secret").await, true).await;
    for _ in 0..3 {
        assert_eq!(token(&server, &home, "johndoe", "secret").await.status(), StatusCode::OK);
    }
    // Other users are untouched.
    assert_eq!(token(&server, &from("127.0.0.5"), "janedoe", "secret2").await.status(), StatusCode::OK);
}

#[tokio::test]
async fn one_address_failing_against_many_users_is_throttled() {
    let server = spawn(&["--login-max-failures-per-address=4"]).await;
    let attacker = from("127.0.0.2");
    for user in ["a1", "a2", "a3", "a4"] {
        assert_eq!(token(&server, &attacker, user, "guess").await.status(), StatusCode::UNAUTHORIZED);
    }
    throttled(token(&server, &attacker, "johndoe", "secret").await, true).await;
    assert_eq!(token(&server, &from("127.0.0.3"), "johndoe", "secret").await.status(), StatusCode::OK);
}

#[tokio::test]
async fn excess_password_checks_get_503_at_once_instead_of_queueing() {
    let server = spawn(&["--hash-concurrency=1", "--hash-queue=1"]).await;
    let started = Instant::now();
    // From 16 addresses: logins in flight count against the throttle of their own address.
    let attempts = (0..16).map(|i| {
        let (client, url) = (from(&format!("127.0.1.{}", i + 1)), server.url("/token"));
        tokio::spawn(async move {
            let begun = Instant::now();
            let response = client
                .post(url)
                .form(&[("username", "johndoe"), ("password", "secret")])
                .send()
                .await
                .unwrap();
            let status = response.status();
            let retry_after = response.headers().get("retry-after").map(|v| v.to_str().unwrap().to_owned());
            (status, retry_after, begun.elapsed())
        })
    });
    let results = futures_util::future::join_all(attempts).await;
    assert!(started.elapsed() < Duration::from_secs(20), "logins hung");
    let mut busy = 0;
    for result in results {
        let (status, retry_after, took) = result.unwrap();
        match status {
            StatusCode::OK => {}
            StatusCode::SERVICE_UNAVAILABLE => {
                busy += 1;
                assert!(retry_after.is_some(), "503 without Retry-After");
                assert!(took < Duration::from_secs(2), "a refused login waited {took:?}");
            }
            other => panic!("unexpected {other}"),
        }
    }
    assert!(busy > 0, "no login was refused");
}

#[tokio::test]
async fn concurrent_guesses_are_counted_while_in_flight() {
    let server = spawn(&[]).await;
    let attacker = from("127.0.0.4");
    let guesses = (0..12).map(|i| {
        let (server, attacker) = (&server, &attacker);
        async move { token(server, attacker, "johndoe", &format!("guess-{i}")).await.status() }
    });
    let statuses = futures_util::future::join_all(guesses).await;
    let checked = statuses.iter().filter(|s| **s == StatusCode::UNAUTHORIZED).count();
    let refused = statuses.iter().filter(|s| **s == StatusCode::TOO_MANY_REQUESTS).count();
    assert_eq!((checked, refused), (5, 7), "the limit is 5 however the guesses arrive: {statuses:?}");
    let metrics = server.http.get(server.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.lines().any(|l| l == "wsguard_password_hashes_total 5"), "five hashes: {metrics}");
}

#[tokio::test]
async fn right_passwords_count_against_their_address_too() {
    let server = spawn(&["--login-max-attempts-per-address=3"]).await;
    let (busy, other) = (from("127.0.0.5"), from("127.0.0.6"));
    for _ in 0..3 {
        assert_eq!(token(&server, &busy, "johndoe", "secret").await.status(), StatusCode::OK);
    }
    throttled(token(&server, &busy, "janedoe", "secret2").await, true).await;
    assert_eq!(token(&server, &other, "johndoe", "secret").await.status(), StatusCode::OK);
}
