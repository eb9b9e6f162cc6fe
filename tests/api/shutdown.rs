//! Graceful shutdown: SIGTERM closes sockets with 1001, lets in-flight requests finish, stops
//! accepting, and exits in bounded time.

use crate::helpers::{close_code, eventually, next_text, spawn};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Waits for the server's `100 Continue` to a request sent with `Expect: 100-continue`: hyper sends
/// it once the head is read and the handler reads the body, so the request is in flight.
async fn until_in_flight(stream: &mut TcpStream) {
    let mut answer = [0u8; 25];
    tokio::time::timeout(Duration::from_secs(5), stream.read_exact(&mut answer))
        .await
        .expect("no 100 Continue within 5 s")
        .unwrap();
    assert_eq!(&answer, b"HTTP/1.1 100 Continue\r\n\r\n", "{}", String::from_utf8_lossy(&answer));
}

#[tokio::test]
async fn sigterm_closes_sockets_with_1001_finishes_requests_and_exits() {
    let mut server = spawn(&[]).await;
    let pair = server.login("johndoe", "secret").await;
    let mut ws =
        server.ws("/secured-ws", &[("Authorization", &format!("Bearer {}", pair.access))]).await.unwrap();
    assert_eq!(next_text(&mut ws).await, "Welcome johndoe!");

    // A login in flight: its head and half its body are sent before the signal.
    let body = "username=johndoe&password=secret";
    let mut login = TcpStream::connect(server.addr()).await.unwrap();
    let head = format!(
        "POST /token HTTP/1.1\r\nHost: {}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nExpect: 100-continue\r\n\r\n",
        server.addr(),
        body.len()
    );
    login.write_all(head.as_bytes()).await.unwrap();
    login.write_all(&body.as_bytes()[..10]).await.unwrap();
    until_in_flight(&mut login).await;

    let signalled = Instant::now();
    // SAFETY: kill(2) on our own child's pid.
    assert_eq!(unsafe { libc::kill(server.pid() as i32, libc::SIGTERM) }, 0);

    let (code, _) = close_code(&mut ws, Duration::from_secs(5)).await;
    assert_eq!(code, 1001);

    login.write_all(&body.as_bytes()[10..]).await.unwrap();
    let mut response = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), login.read_to_end(&mut response))
        .await
        .expect("the in-flight login did not finish")
        .unwrap();
    let response = String::from_utf8_lossy(&response);
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.contains("access_token"), "{response}");

    let status = server.exit_status(Duration::from_secs(10)).await;
    assert!(status.success(), "exit status {status}");
    assert!(signalled.elapsed() < Duration::from_secs(10));
    let refused = TcpStream::connect(server.addr()).await.expect_err("still accepting after exit");
    assert_eq!(refused.kind(), std::io::ErrorKind::ConnectionRefused);
}

#[tokio::test]
async fn a_stalled_request_does_not_keep_the_process_alive() {
    let mut server = spawn(&[]).await;
    let mut stalled = TcpStream::connect(server.addr()).await.unwrap();
    stalled
        .write_all(b"POST /token HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\nExpect: 100-continue\r\n\r\nuser")
        .await
        .unwrap();
    until_in_flight(&mut stalled).await;
    // SAFETY: kill(2) on our own child's pid.
    assert_eq!(unsafe { libc::kill(server.pid() as i32, libc::SIGTERM) }, 0);
    // New connections are refused as soon as the signal is handled.
    eventually("connections refused after SIGTERM", Duration::from_millis(500), async || {
        match TcpStream::connect(server.addr()).await {
            Err(err) if err.kind() == std::io::ErrorKind::ConnectionRefused => Ok(()),
            other => Err(other.map(|_| "still accepting")),
        }
    })
    .await;
    let status = server.exit_status(Duration::from_secs(10)).await;
    assert!(status.success(), "exit status {status}");
}

/// A server whose stdout and stderr are pipes closed by their reader (a log collector that died,
/// `wsguard serve 2>&1 | head -2`): its log lines are dropped and counted, and `signal` still
/// shuts it down.
async fn shuts_down_with_closed_pipes(signal: i32) {
    use crate::helpers::{sample, BIN};
    use std::process::Stdio;
    use tokio::io::AsyncBufReadExt;
    let data = tempfile::tempdir().unwrap();
    let mut child = tokio::process::Command::new(BIN)
        .args(["serve", "--bind=127.0.0.1:0"])
        .arg(format!("--data-dir={}", data.path().display()))
        .env("WSGUARD_LOG", "debug")
        .env_remove("WSGUARD_CONFIG")
        .current_dir(data.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stdout = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let line = tokio::time::timeout(Duration::from_secs(30), stdout.next_line()).await.unwrap().unwrap();
    let base = line.unwrap().strip_prefix("wsguard listening on ").unwrap().to_owned();
    drop(stdout);
    drop(child.stderr.take());
    let http = reqwest::Client::new();
    // Every request logs at debug level; each line now meets a closed pipe.
    for _ in 0..3 {
        assert_eq!(http.get(format!("{base}/healthz")).send().await.unwrap().status(), 200);
    }
    let metrics = http.get(format!("{base}/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(sample(&metrics, "wsguard_log_lines_dropped_total") >= 3.0, "{metrics}");
    // SAFETY: kill(2) on our own child's pid.
    assert_eq!(unsafe { libc::kill(child.id().unwrap() as i32, signal) }, 0);
    let status = tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .expect("the server ignored the signal")
        .unwrap();
    assert!(status.success(), "exit status {status}");
}

#[tokio::test]
async fn closed_log_pipes_neither_stop_the_server_nor_its_shutdown() {
    tokio::join!(shuts_down_with_closed_pipes(libc::SIGTERM), shuts_down_with_closed_pipes(libc::SIGINT));
}
