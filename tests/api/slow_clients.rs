//! Slow and greedy clients: connections that send half a request, or nothing, are closed after
//! the header-read timeout; idle keep-alive connections after the keep-alive timeout (WebSockets
//! are left alone); beyond the caps in total and per client address, a new connection is closed
//! at once while other clients are still served; the same over TLS, handshakes included.
//!
//! Every client address is a loopback one: Linux routes all of 127.0.0.0/8 to `lo`, so a client
//! socket bound to 127.0.0.2 reaches the server on 127.0.0.1 as another address.

use crate::helpers::{assert_echo, eventually, next_text, sample, spawn, Server};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_rustls::client::TlsStream;

const HALF_REQUEST: &[u8] = b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nUser-Agent: slow";

/// A TCP connection to `server` from the loopback address `from`.
async fn connect_from(server: &Server, from: &str) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::new(from.parse::<IpAddr>().unwrap(), 0)).unwrap();
    socket.connect(server.addr().parse().unwrap()).await.unwrap()
}

/// Whether the server closes `stream` (end of stream or reset) within `bound`; whatever it sends
/// before is read and dropped.
async fn closed_within<S: AsyncRead + Unpin>(stream: &mut S, bound: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + bound;
    let mut buf = [0u8; 1024];
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Ok(Ok(0) | Err(_)) => return true,
            Ok(Ok(_)) => continue,
            Err(_) => return false,
        }
    }
}

/// GET `path` on a keep-alive connection: the status and the body (responses carry a length).
async fn get<S: AsyncRead + AsyncWrite + Unpin>(stream: &mut S, path: &str) -> (u16, String) {
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    let read = async {
        let mut buf = [0u8; 4096];
        loop {
            let n = stream.read(&mut buf).await.expect("read the response");
            assert!(n > 0, "closed before the whole response: {}", String::from_utf8_lossy(&response));
            response.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&response);
            let Some(end) = text.find("\r\n\r\n") else { continue };
            let length: usize = text[..end]
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().to_owned())
                })
                .expect("a content-length")
                .parse()
                .unwrap();
            if response.len() >= end + 4 + length {
                let status = text[9..12].parse().unwrap();
                return (status, text[end + 4..end + 4 + length].to_owned());
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(5), read).await.expect("a response within 5 s")
}

#[tokio::test]
async fn half_requests_and_silent_connections_are_closed_after_the_header_read_timeout() {
    let server = spawn(&["--header-read-timeout=1s"]).await;
    let started = Instant::now();
    let mut silent = connect_from(&server, "127.0.0.1").await;
    let mut half = connect_from(&server, "127.0.0.1").await;
    half.write_all(HALF_REQUEST).await.unwrap();
    // A trickle: a byte every 200 ms keeps the socket busy, but the headers never end.
    let mut trickle = connect_from(&server, "127.0.0.1").await;
    let (mut trickle_read, mut trickle_write) = trickle.split();
    let drip = async {
        for byte in HALF_REQUEST.iter().take(25) {
            if trickle_write.write_all(&[*byte]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    let (closed, ()) = tokio::join!(closed_within(&mut trickle_read, Duration::from_secs(4)), drip);
    assert!(closed, "the trickling connection is still open");
    assert!(closed_within(&mut silent, Duration::from_secs(4)).await, "the silent connection is still open");
    assert!(closed_within(&mut half, Duration::from_secs(4)).await, "the half request is still open");
    let elapsed = started.elapsed();
    assert!(elapsed >= Duration::from_millis(900), "closed before the timeout: {elapsed:?}");
    assert!(elapsed < Duration::from_secs(4), "{elapsed:?}");

    // Whoever asks in time is answered.
    let mut prompt = connect_from(&server, "127.0.0.1").await;
    assert_eq!(get(&mut prompt, "/healthz").await.0, 200);
    let (_, metrics) = get(&mut prompt, "/metrics").await;
    assert_eq!(sample(&metrics, "wsguard_connections_timed_out_total{reason=\"header_read\"}"), 3.0);
    assert_eq!(sample(&metrics, "wsguard_connections_open"), 1.0);
}

#[tokio::test]
async fn idle_keep_alive_connections_close_after_their_timeout_and_websockets_stay_open() {
    let server = spawn(&["--header-read-timeout=1s", "--keep-alive-timeout=3s"]).await;
    let pair = server.login("johndoe", "secret").await;
    let mut ws =
        server.ws("/secured-ws", &[("Authorization", &format!("Bearer {}", pair.access))]).await.unwrap();
    assert_eq!(next_text(&mut ws).await, "Welcome johndoe!");

    // Idle longer than the header-read timeout between requests: still served.
    let mut idle = connect_from(&server, "127.0.0.1").await;
    assert_eq!(get(&mut idle, "/healthz").await.0, 200);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(get(&mut idle, "/healthz").await.0, 200, "closed by the header-read timeout while idle");
    let answered = Instant::now();
    // Half of a next request: the header-read timeout again, from its first byte.
    let mut hesitant = connect_from(&server, "127.0.0.1").await;
    assert_eq!(get(&mut hesitant, "/healthz").await.0, 200);
    hesitant.write_all(HALF_REQUEST).await.unwrap();
    let asked = Instant::now();
    assert!(closed_within(&mut hesitant, Duration::from_millis(2500)).await, "half a next request kept open");
    assert!(asked.elapsed() >= Duration::from_millis(900), "{:?}", asked.elapsed());

    assert!(
        closed_within(&mut idle, Duration::from_secs(6)).await,
        "an idle keep-alive connection stays open"
    );
    let idled = answered.elapsed();
    assert!(idled >= Duration::from_millis(2800), "closed before the keep-alive timeout: {idled:?}");

    // The socket, opened before all of that and silent since, is the WebSocket's to time.
    assert_echo(&mut ws).await;
    let mut prompt = connect_from(&server, "127.0.0.1").await;
    let (_, metrics) = get(&mut prompt, "/metrics").await;
    // This one, and the login's pooled connection (idle since the login).
    assert_eq!(sample(&metrics, "wsguard_connections_timed_out_total{reason=\"keep_alive\"}"), 2.0);
    assert_eq!(sample(&metrics, "wsguard_connections_timed_out_total{reason=\"header_read\"}"), 1.0);
    assert_eq!(sample(&metrics, "wsguard_sockets_open"), 1.0);
}

#[tokio::test]
async fn beyond_the_caps_connections_are_closed_at_once_and_other_clients_are_still_served() {
    // 3 addresses × 100 held connections, one more for a healthy client, then the total is full.
    let server =
        spawn(&["--max-connections-per-address=100", "--max-connections=301", "--header-read-timeout=60s"])
            .await;
    let mut held = Vec::new();
    for from in ["127.0.0.1", "127.0.0.2", "127.0.0.3"] {
        for _ in 0..100 {
            let mut stream = connect_from(&server, from).await;
            stream.write_all(HALF_REQUEST).await.unwrap();
            held.push(stream);
        }
    }
    let mut greedy = connect_from(&server, "127.0.0.1").await;
    let refused = Instant::now();
    assert!(closed_within(&mut greedy, Duration::from_secs(2)).await, "a 101st connection from one address");
    assert!(refused.elapsed() < Duration::from_millis(1500), "not at once: {:?}", refused.elapsed());

    // With 300 slow connections open, a fresh client is answered at once.
    let mut healthy = connect_from(&server, "127.0.0.4").await;
    let asked = Instant::now();
    assert_eq!(get(&mut healthy, "/healthz").await.0, 200);
    assert!(asked.elapsed() < Duration::from_secs(1), "/healthz took {:?}", asked.elapsed());
    // 301 open: the total is reached, whatever the address.
    let mut one_too_many = connect_from(&server, "127.0.0.5").await;
    assert!(closed_within(&mut one_too_many, Duration::from_secs(2)).await, "a connection beyond the total");

    // A connection that ends gives its place back: once the server counts it closed (asked on
    // `healthy`, already admitted), one more from its address is served.
    drop(held.remove(0));
    eventually("the ended connection's place freed", Duration::from_secs(2), async || {
        let (_, metrics) = get(&mut healthy, "/metrics").await;
        match sample(&metrics, "wsguard_connections_open") {
            300.0 => Ok(()),
            open => Err(open),
        }
    })
    .await;
    let mut back = connect_from(&server, "127.0.0.1").await;
    assert_eq!(get(&mut back, "/healthz").await.0, 200);
    let (_, metrics) = get(&mut back, "/metrics").await;
    assert_eq!(sample(&metrics, "wsguard_connections_refused_total{reason=\"per_address\"}"), 1.0);
    assert_eq!(sample(&metrics, "wsguard_connections_refused_total{reason=\"total\"}"), 1.0);
    // 299 held, `healthy` and `back`.
    assert_eq!(sample(&metrics, "wsguard_connections_open"), 301.0);
}

/// A TLS client for `server`'s self-signed `cert`.
fn tls_connector(cert: &rcgen::CertifiedKey) -> tokio_rustls::TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.cert.der().clone()).unwrap();
    let config =
        rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

async fn tls_from(
    server: &Server,
    connector: &tokio_rustls::TlsConnector,
    from: &str,
) -> std::io::Result<TlsStream<TcpStream>> {
    let tcp = connect_from(server, from).await;
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    tokio::time::timeout(Duration::from_secs(5), connector.connect(name, tcp)).await.expect("handshake hung")
}

#[tokio::test]
async fn over_tls_handshakes_count_against_the_caps_and_slow_clients_time_out() {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (cert_file, key_file) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert_file, cert.cert.pem()).unwrap();
    std::fs::write(&key_file, cert.key_pair.serialize_pem()).unwrap();
    let server = spawn(&[
        &format!("--tls-cert={}", cert_file.display()),
        &format!("--tls-key={}", key_file.display()),
        "--header-read-timeout=2s",
        "--max-connections-per-address=5",
    ])
    .await;
    let connector = tls_connector(&cert);
    let started = Instant::now();

    // Five connections from one address that never start their handshake fill its quota...
    let mut silent = Vec::new();
    for _ in 0..5 {
        silent.push(connect_from(&server, "127.0.0.1").await);
    }
    // ...so a sixth is closed before any handshake.
    let mut sixth = connect_from(&server, "127.0.0.1").await;
    assert!(closed_within(&mut sixth, Duration::from_millis(1000)).await, "a sixth connection in handshake");
    assert!(started.elapsed() < Duration::from_millis(1500), "not at once: {:?}", started.elapsed());

    // Another address is served meanwhile.
    let mut healthy = tls_from(&server, &connector, "127.0.0.2").await.expect("TLS handshake");
    assert_eq!(get(&mut healthy, "/healthz").await.0, 200);
    drop(healthy);

    // Half a request after the handshake: closed when the headers are late, handshake included.
    let mut half = tls_from(&server, &connector, "127.0.0.3").await.expect("TLS handshake");
    half.write_all(HALF_REQUEST).await.unwrap();
    half.flush().await.unwrap();
    assert!(
        closed_within(&mut half, Duration::from_secs(5)).await,
        "the half request over TLS is still open"
    );
    // The silent ones time out in their handshake, and give their places back.
    for (i, stream) in silent.iter_mut().enumerate() {
        assert!(closed_within(stream, Duration::from_secs(3)).await, "silent connection {i} is still open");
    }
    let elapsed = started.elapsed();
    assert!(elapsed >= Duration::from_millis(1800), "closed before the timeout: {elapsed:?}");
    assert!(elapsed < Duration::from_secs(6), "{elapsed:?}");

    let mut back = tls_from(&server, &connector, "127.0.0.1").await.expect("TLS handshake");
    assert_eq!(get(&mut back, "/healthz").await.0, 200);
    let (_, metrics) = get(&mut back, "/metrics").await;
    assert_eq!(sample(&metrics, "wsguard_connections_refused_total{reason=\"per_address\"}"), 1.0);
    assert_eq!(sample(&metrics, "wsguard_connections_timed_out_total{reason=\"header_read\"}"), 6.0);
    assert_eq!(sample(&metrics, "wsguard_connections_open"), 1.0);
}
