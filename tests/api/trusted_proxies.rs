//! Behind a reverse proxy (`--trusted-proxies`): the client a trusted proxy names in
//! `X-Forwarded-For` or `Forwarded` is the one the login throttle, the per-address connection cap,
//! the logs and the connect proxy see; from any other peer those headers are ignored.
//!
//! The tests' requests come from 127.0.0.1, the proxy trusted here; a client bound to 127.0.0.2
//! (Linux routes all of 127.0.0.0/8 to `lo`) is a peer that is not a proxy.

use crate::application::{Application, Reply};
use crate::helpers::{eventually, next_json, next_text, sample, spawn, Server};
use reqwest::StatusCode;
use serde_json::json;
use std::net::IpAddr;
use std::time::Duration;

const PROXY: &str = "--trusted-proxies=127.0.0.1/32";

/// A client whose connections come from `ip`.
fn from(ip: &str) -> reqwest::Client {
    reqwest::Client::builder().local_address(ip.parse::<IpAddr>().unwrap()).build().unwrap()
}

/// The server's log without its colours.
fn log(server: &Server) -> String {
    server.plain_log()
}

/// POST /token from `client` with the extra `headers`.
async fn token(
    server: &Server,
    client: &reqwest::Client,
    headers: &[(&str, &str)],
    username: &str,
    password: &str,
) -> StatusCode {
    let mut request =
        client.post(server.url("/token")).form(&[("username", username), ("password", password)]);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.send().await.unwrap().status()
}

#[tokio::test]
async fn behind_a_trusted_proxy_one_attacker_locks_out_only_its_own_address() {
    let server = spawn(&[PROXY]).await;
    let proxy = from("127.0.0.1");
    let attacker = [("x-forwarded-for", "203.0.113.7")];
    // The attack: 50 wrong logins for made-up names (--login-max-failures-per-address).
    for i in 0..50 {
        let status = token(&server, &proxy, &attacker, &format!("nobody{i}"), "guess").await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "guess {i}");
    }
    assert_eq!(token(&server, &proxy, &attacker, "johndoe", "secret").await, StatusCode::TOO_MANY_REQUESTS);
    // The same client, named in the other header, or behind a second proxy's hop.
    let same = [("forwarded", "for=\"203.0.113.7:4711\";proto=https")];
    assert_eq!(token(&server, &proxy, &same, "johndoe", "secret").await, StatusCode::TOO_MANY_REQUESTS);
    let spoofed = [("x-forwarded-for", "198.51.100.9, 203.0.113.7")];
    assert_eq!(token(&server, &proxy, &spoofed, "johndoe", "secret").await, StatusCode::TOO_MANY_REQUESTS);

    // Everyone else behind the proxy logs in.
    let user = [("x-forwarded-for", "198.51.100.9")];
    assert_eq!(token(&server, &proxy, &user, "johndoe", "secret").await, StatusCode::OK);
    assert_eq!(token(&server, &proxy, &[], "johndoe", "secret").await, StatusCode::OK, "the proxy itself");
    let log = log(&server);
    assert!(log.contains("client=203.0.113.7") && log.contains("login throttled"), "{log}");
    assert!(log.lines().any(|l| l.contains("client=198.51.100.9") && l.contains(" login")), "{log}");
}

#[tokio::test]
async fn forwarded_headers_from_any_other_peer_are_ignored() {
    // Without --trusted-proxies, a made-up header per guess does not escape the throttle.
    let server = spawn(&["--login-max-failures-per-address=3"]).await;
    let client = from("127.0.0.1");
    for i in 0..3 {
        let spoof = format!("203.0.113.{i}");
        let headers = [("x-forwarded-for", spoof.as_str()), ("forwarded", "for=198.51.100.9")];
        assert_eq!(token(&server, &client, &headers, "nobody", "guess").await, StatusCode::UNAUTHORIZED);
    }
    let fresh = [("x-forwarded-for", "192.0.2.99")];
    assert_eq!(token(&server, &client, &fresh, "johndoe", "secret").await, StatusCode::TOO_MANY_REQUESTS);
    assert!(log(&server).contains("client=127.0.0.1"), "the peer is the client");

    // With it, a peer that is not a proxy is its own client all the same.
    let server = spawn(&[PROXY, "--login-max-failures-per-address=3"]).await;
    let stranger = from("127.0.0.2");
    for i in 0..3 {
        let spoof = format!("203.0.113.{i}");
        let headers = [("x-forwarded-for", spoof.as_str())];
        assert_eq!(token(&server, &stranger, &headers, "nobody", "guess").await, StatusCode::UNAUTHORIZED);
    }
    assert_eq!(token(&server, &stranger, &fresh, "johndoe", "secret").await, StatusCode::TOO_MANY_REQUESTS);
    // Its spoofed addresses were never counted: the proxy's clients 203.0.113.x are not locked.
    let named = [("x-forwarded-for", "203.0.113.0")];
    assert_eq!(token(&server, &from("127.0.0.1"), &named, "johndoe", "secret").await, StatusCode::OK);
    // A header that cannot be read names nobody: the proxy's own address is counted.
    let garbage = [("x-forwarded-for", "203.0.113.7, unknown")];
    assert_eq!(token(&server, &from("127.0.0.1"), &garbage, "johndoe", "secret").await, StatusCode::OK);
    assert!(log(&server).contains("client=127.0.0.1"), "{}", log(&server));
}

#[tokio::test]
async fn the_per_address_connection_cap_counts_the_forwarded_client() {
    let server = spawn(&[PROXY, "--max-connections-per-address=2"]).await;
    let pair = server.login("johndoe", "secret").await;
    let bearer = format!("Bearer {}", pair.access);
    let socket = |client: &'static str| {
        let bearer = bearer.clone();
        let server = &server;
        async move { server.ws("/secured-ws", &[("authorization", &bearer), ("x-forwarded-for", client)]).await }
    };
    // The proxy has more than two connections open: its own address is under no cap.
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut ws = socket("203.0.113.7").await.expect("under the client's cap");
        assert_eq!(next_text(&mut ws).await, "Welcome johndoe!");
        held.push(ws);
    }
    let refused = server
        .ws_refused("/secured-ws", &[("authorization", &bearer), ("x-forwarded-for", "203.0.113.7")])
        .await;
    assert_eq!(refused, 429, "a third socket of that client");
    let mut other = socket("198.51.100.9").await.expect("another client");
    assert_eq!(next_text(&mut other).await, "Welcome johndoe!");

    // A socket that closes gives its client's place back (once the server has seen it close).
    drop(held.pop());
    let mut refusals = 1;
    eventually("a place freed", Duration::from_secs(5), async || match socket("203.0.113.7").await {
        Ok(ws) => Ok(ws),
        Err(err) => {
            refusals += 1;
            Err(err.to_string())
        }
    })
    .await;
    let metrics = server.http.get(server.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert_eq!(
        sample(&metrics, "wsguard_connections_refused_total{reason=\"per_address\"}"),
        refusals as f64
    );
}

#[tokio::test]
async fn the_connect_proxy_and_the_origin_log_see_the_forwarded_client() {
    let app = Application::start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("wsguard.toml");
    // The application asks for the client's X-Forwarded-For as Centrifugo's examples do: wsguard
    // writes it itself, with what it knows, never what the client sent.
    let file = format!(
        "trusted_proxies = [\"127.0.0.1\"]\n[proxy]\nconnect = \"{}\"\nforward_headers = [\"Cookie\", \"X-Forwarded-For\", \"X-Real-IP\"]\n",
        app.url("connect")
    );
    std::fs::write(&config, file).unwrap();
    let server = spawn(&[&format!("--config={}", config.display())]).await;
    app.reply("connect", Reply::Json(json!({"result": {"user": "alice"}})));

    let headers = [
        ("cookie", "session=1"),
        ("x-forwarded-for", "198.51.100.9, 203.0.113.7"),
        ("x-real-ip", "198.51.100.9"),
    ];
    let mut ws = server.ws("/connect", &headers).await.unwrap();
    assert_eq!(next_json(&mut ws).await["user"], "alice");
    let call = &app.calls("connect")[0];
    assert_eq!(call.headers["cookie"], "session=1");
    assert_eq!(call.headers["x-forwarded-for"], "203.0.113.7");
    assert_eq!(call.headers["x-real-ip"], "203.0.113.7");
    assert_eq!(call.headers.get_all("x-forwarded-for").iter().count(), 1);

    // From a peer that is not a proxy, that peer.
    let mut request = tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(
        server.ws_url("/connect"),
    )
    .unwrap();
    request.headers_mut().insert("x-forwarded-for", "203.0.113.7".parse().unwrap());
    let stranger = tokio::net::TcpSocket::new_v4().unwrap();
    stranger.bind("127.0.0.2:0".parse().unwrap()).unwrap();
    let stream = stranger.connect(server.addr().parse().unwrap()).await.unwrap();
    let stream = tokio_tungstenite::MaybeTlsStream::Plain(stream);
    let (mut ws, _) = tokio_tungstenite::client_async(request, stream).await.unwrap();
    assert_eq!(next_json(&mut ws).await["user"], "alice");
    let call = &app.calls("connect")[1];
    assert_eq!(call.headers["x-forwarded-for"], "127.0.0.2");
    assert_eq!(call.headers["x-real-ip"], "127.0.0.2");

    // A refused Origin is logged with the client it came from.
    let foreign = [("origin", "https://evil.example"), ("x-forwarded-for", "203.0.113.8")];
    assert_eq!(server.ws_refused("/connect", &foreign).await, 403);
    let log = log(&server);
    assert!(log.lines().any(|l| l.contains("Origin is not in") && l.contains("client=203.0.113.8")), "{log}");
}
