//! HTTPS and WSS with a self-signed certificate made here: logins, HSTS, `Secure` cookies, a
//! socket over TLS, and plain HTTP refused on the TLS port.

use crate::helpers::spawn;
use reqwest::StatusCode;
use std::sync::Arc;
use std::time::Duration;
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
