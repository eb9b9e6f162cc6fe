//! HTTPS and WSS with a self-signed certificate made here: logins, HSTS, `Secure` cookies, a
//! socket over TLS, and plain HTTP refused on the TLS port; the certificate reloaded on SIGHUP and
//! when its files change, open sockets untouched, a broken replacement kept out.

use crate::helpers::{assert_echo, eventually, next_text, spawn, Server, Ws};
use reqwest::StatusCode;
use rustls::pki_types::CertificateDer;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::Connector;

#[tokio::test]
async fn https_and_wss_with_hsts_and_secure_cookies() {
    let cert =
        rcgen::generate_simple_self_signed(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (cert_file, key_file) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert_file, cert.cert.pem()).unwrap();
    std::fs::write(&key_file, cert.key_pair.serialize_pem()).unwrap();
    let server = spawn(&[
        &format!("--tls-cert={}", cert_file.display()),
        &format!("--tls-key={}", key_file.display()),
    ])
    .await;
    assert!(server.base.starts_with("https://"), "{}", server.base);
    let port = server.addr().rsplit(':').next().unwrap().to_owned();
    let base = format!("https://localhost:{port}");

    let https = reqwest::Client::builder()
        .use_rustls_tls()
        .add_root_certificate(reqwest::Certificate::from_pem(cert.cert.pem().as_bytes()).unwrap())
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let response = https
        .post(format!("{base}/token"))
        .form(&[("username", "johndoe"), ("password", "secret")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["strict-transport-security"], "max-age=31536000");
    let access =
        response.json::<serde_json::Value>().await.unwrap()["access_token"].as_str().unwrap().to_owned();

    let response = https
        .post(format!("{base}/login/cookie"))
        .form(&[("username", "johndoe"), ("password", "secret")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let cookies: Vec<_> =
        response.headers().get_all("set-cookie").iter().map(|v| v.to_str().unwrap()).collect();
    assert_eq!(cookies.len(), 4, "{cookies:?}");
    for cookie in cookies {
        assert!(cookie.split(';').any(|part| part.trim() == "Secure"), "not Secure: {cookie}");
    }
    let missing = https.get(format!("{base}/no-such-page")).send().await.unwrap();
    assert_eq!(missing.headers()["strict-transport-security"], "max-age=31536000", "HSTS on every response");

    // WSS with the certificate as the only root.
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.cert.der().clone()).unwrap();
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let mut request = format!("wss://localhost:{port}/secured-ws").into_client_request().unwrap();
    request
        .headers_mut()
        .insert("authorization", HeaderValue::from_str(&format!("Bearer {access}")).unwrap());
    let (mut ws, _) = tokio_tungstenite::connect_async_tls_with_config(
        request,
        None,
        false,
        Some(Connector::Rustls(Arc::new(tls))),
    )
    .await
    .unwrap();
    assert_eq!(crate::helpers::next_text(&mut ws).await, "Welcome johndoe!");
    crate::helpers::assert_echo(&mut ws).await;

    // Plain HTTP to the TLS port gets no HTTP answer.
    let plain = reqwest::Client::builder().timeout(Duration::from_secs(5)).build().unwrap();
    let result = plain.get(format!("http://127.0.0.1:{port}/healthz")).send().await;
    let err = result.map(|r| r.status()).expect_err("plain HTTP answered");
    assert!(err.status().is_none() && !err.is_timeout(), "closed at once, without an answer: {err:?}");
    // Nor does a plain WebSocket.
    match tokio_tungstenite::connect_async(format!("ws://127.0.0.1:{port}/secured-ws")).await {
        Ok(_) => panic!("a plain WebSocket was upgraded on the TLS port"),
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            panic!("answered {}", response.status())
        }
        Err(_) => {}
    }
}

/// A self-signed certificate for localhost with a subject and serial of its own, and its key.
struct Pair {
    cert: String,
    key: String,
    der: CertificateDer<'static>,
}

fn self_signed(name: &str, serial: u64) -> Pair {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params =
        rcgen::CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).unwrap();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.distinguished_name.push(rcgen::DnType::CommonName, name);
    params.serial_number = Some(rcgen::SerialNumber::from(serial));
    let cert = params.self_signed(&key).unwrap();
    Pair { cert: cert.pem(), key: key.serialize_pem(), der: cert.der().clone() }
}

/// The certificate and key files a server is started with.
struct Files {
    _dir: tempfile::TempDir,
    cert: PathBuf,
    key: PathBuf,
}

impl Files {
    fn new(pair: &Pair) -> Files {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
        let files = Files { _dir: dir, cert, key };
        files.write(&pair.cert, &pair.key);
        files
    }

    /// Overwrites both files in place.
    fn write(&self, cert: &str, key: &str) {
        std::fs::write(&self.cert, cert).unwrap();
        std::fs::write(&self.key, key).unwrap();
    }

    /// Replaces both files the way deployment tools do: written aside, then renamed over.
    fn replace(&self, pair: &Pair) {
        for (path, contents) in [(&self.cert, &pair.cert), (&self.key, &pair.key)] {
            let aside = path.with_extension("new");
            std::fs::write(&aside, contents).unwrap();
            std::fs::rename(&aside, path).unwrap();
        }
    }

    fn args(&self, reload_interval: &str) -> [String; 3] {
        [
            format!("--tls-cert={}", self.cert.display()),
            format!("--tls-key={}", self.key.display()),
            format!("--tls-reload-interval={reload_interval}"),
        ]
    }
}

async fn spawn_tls(files: &Files, reload_interval: &str) -> Server {
    let args = files.args(reload_interval);
    let server = spawn(&args.iter().map(String::as_str).collect::<Vec<_>>()).await;
    assert!(server.base.starts_with("https://"), "{}", server.base);
    server
}

fn port(server: &Server) -> u16 {
    server.addr().rsplit(':').next().unwrap().parse().unwrap()
}

fn client_config(trusted: &[&CertificateDer<'static>]) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in trusted {
        roots.add((*cert).clone()).unwrap();
    }
    let config =
        rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
    Arc::new(config)
}

/// The certificate the server presents to a new TLS connection from a client trusting `trusted`.
async fn presented(server: &Server, trusted: &[&CertificateDer<'static>]) -> CertificateDer<'static> {
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port(server))).await.unwrap();
    let connector = tokio_rustls::TlsConnector::from(client_config(trusted));
    let tls =
        tokio::time::timeout(Duration::from_secs(5), connector.connect("localhost".try_into().unwrap(), tcp))
            .await
            .expect("TLS handshake timed out")
            .expect("TLS handshake");
    tls.get_ref().1.peer_certificates().expect("a certificate")[0].clone()
}

/// Waits up to `within` for new connections to be shown `expected`; how long it took.
async fn until_presented(
    server: &Server,
    trusted: &[&CertificateDer<'static>],
    expected: &CertificateDer<'static>,
    within: Duration,
) -> Duration {
    let start = Instant::now();
    eventually("the new certificate presented", within, async || {
        if presented(server, trusted).await == *expected {
            Ok(())
        } else {
            Err("the old one")
        }
    })
    .await;
    start.elapsed()
}

/// Waits up to 5 s for the server's log to hold `needle`.
async fn until_logged(server: &Server, needle: &str) -> String {
    eventually(&format!("{needle:?} logged"), Duration::from_secs(5), async || {
        let log = server.log();
        if log.contains(needle) {
            Ok(log)
        } else {
            Err(log)
        }
    })
    .await
}

/// A login and a WebSocket on `/secured-ws` over TLS, trusting `trusted` only.
async fn open_wss(server: &Server, trusted: &Pair) -> Ws {
    let https = reqwest::Client::builder()
        .use_rustls_tls()
        .add_root_certificate(reqwest::Certificate::from_der(&trusted.der).unwrap())
        .build()
        .unwrap();
    let base = format!("https://localhost:{}", port(server));
    let response = https
        .post(format!("{base}/token"))
        .form(&[("username", "johndoe"), ("password", "secret")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let access =
        response.json::<serde_json::Value>().await.unwrap()["access_token"].as_str().unwrap().to_owned();
    let mut request = format!("wss://localhost:{}/secured-ws", port(server)).into_client_request().unwrap();
    request
        .headers_mut()
        .insert("authorization", HeaderValue::from_str(&format!("Bearer {access}")).unwrap());
    let connector = Some(Connector::Rustls(client_config(&[&trusted.der])));
    let (mut ws, _) =
        tokio_tungstenite::connect_async_tls_with_config(request, None, false, connector).await.unwrap();
    assert_eq!(next_text(&mut ws).await, "Welcome johndoe!");
    assert_echo(&mut ws).await;
    ws
}

fn hangup(server: &Server) {
    // SAFETY: kill(2) on our own child's pid.
    assert_eq!(unsafe { libc::kill(server.pid() as i32, libc::SIGHUP) }, 0);
}

#[tokio::test]
async fn sighup_reloads_the_certificate_for_new_connections_and_open_sockets_keep_theirs() {
    let (first, second) = (self_signed("first.wsguard.test", 1), self_signed("second.wsguard.test", 2));
    let files = Files::new(&first);
    // No polling: only the signal can make the change.
    let server = spawn_tls(&files, "0s").await;
    let both = [&first.der, &second.der];
    assert_eq!(presented(&server, &both).await, first.der);
    let mut ws = open_wss(&server, &first).await;

    files.write(&second.cert, &second.key);
    // A check that nothing happens: no event to wait for, only time.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(presented(&server, &both).await, first.der, "no polling: nothing changes without the signal");
    hangup(&server);
    until_presented(&server, &both, &second.der, Duration::from_secs(5)).await;
    let log = until_logged(&server, "CN=second.wsguard.test").await;
    assert!(log.contains("TLS certificate in force"), "{log}");

    // The socket opened under the first certificate goes on, and the server with it.
    assert_echo(&mut ws).await;
    let mut ws = open_wss(&server, &second).await;
    assert_echo(&mut ws).await;
    hangup(&server);
    until_logged(&server, "TLS certificate reread: unchanged").await;
    assert_eq!(presented(&server, &both).await, second.der);
}

#[tokio::test]
async fn a_replaced_certificate_file_is_presented_within_the_poll_interval() {
    let (first, second) = (self_signed("first.wsguard.test", 11), self_signed("second.wsguard.test", 12));
    let files = Files::new(&first);
    let server = spawn_tls(&files, "1s").await;
    let both = [&first.der, &second.der];
    let mut ws = open_wss(&server, &first).await;

    files.replace(&second);
    // One interval, plus a margin for a loaded machine.
    let took = until_presented(&server, &both, &second.der, Duration::from_secs(4)).await;
    assert!(took < Duration::from_secs(4), "{took:?}");
    let log = until_logged(&server, "CN=second.wsguard.test").await;
    assert!(log.contains("file change"), "{log}");
    assert_echo(&mut ws).await;
}

#[tokio::test]
async fn a_broken_replacement_keeps_the_old_certificate_and_the_server() {
    let (first, second) = (self_signed("first.wsguard.test", 21), self_signed("second.wsguard.test", 22));
    let files = Files::new(&first);
    let server = spawn_tls(&files, "0s").await;
    let both = [&first.der, &second.der];
    let mut ws = open_wss(&server, &first).await;

    // A new certificate with a garbage key, one whose bytes must never reach the log.
    let garbage = "-----BEGIN PRIVATE KEY-----GARBAGEKEYBYTES\nGARBAGEKEYBYTES\n-----END PRIVATE KEY-----\n";
    files.write(&second.cert, garbage);
    hangup(&server);
    let log = until_logged(&server, "reloading the TLS certificate failed").await;
    let key = files.key.display().to_string();
    assert!(
        log.lines().any(|l| l.contains("WARN") && l.contains(&key)),
        "the warning names the key file:\n{log}"
    );
    assert!(!log.contains("GARBAGE"), "{log}");
    // Then the right certificate with another one's key.
    files.write(&second.cert, &first.key);
    hangup(&server);
    until_logged(&server, "do not go together").await;

    // A check that nothing happens after the refusal: no event to wait for, only time.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(presented(&server, &both).await, first.der, "the old certificate is still presented");
    assert_echo(&mut ws).await;
    let https = reqwest::Client::builder()
        .use_rustls_tls()
        .add_root_certificate(reqwest::Certificate::from_der(&first.der).unwrap())
        .build()
        .unwrap();
    let health = https.get(format!("https://localhost:{}/healthz", port(&server))).send().await.unwrap();
    assert_eq!(health.status(), StatusCode::OK);

    // Fixed, it is taken at the next signal.
    files.write(&second.cert, &second.key);
    hangup(&server);
    until_presented(&server, &both, &second.der, Duration::from_secs(5)).await;
    assert_echo(&mut ws).await;
}

#[tokio::test]
async fn sighup_without_tls_is_logged_and_the_server_serves_on() {
    let server = spawn(&[]).await;
    hangup(&server);
    until_logged(&server, "SIGHUP: nothing to reload (TLS is off)").await;
    hangup(&server);
    let health = server.http.get(server.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), StatusCode::OK);
    let pair = server.login("johndoe", "secret").await;
    let mut ws =
        server.ws("/secured-ws", &[("Authorization", &format!("Bearer {}", pair.access))]).await.unwrap();
    assert_eq!(next_text(&mut ws).await, "Welcome johndoe!");
    assert_echo(&mut ws).await;
}
