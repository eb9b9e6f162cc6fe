//! A real wsguard process on a random port with a fresh data folder, and clients for it.

use futures_util::{SinkExt, StreamExt};
use reqwest::StatusCode;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;
use tempfile::TempDir;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

pub const BIN: &str = env!("CARGO_BIN_EXE_wsguard");

pub struct Server {
    pub base: String,
    pub ws_base: String,
    pub data: Arc<TempDir>,
    args: Vec<String>,
    child: Child,
    pub http: reqwest::Client,
}

/// Starts a server with the demo users and `args` added to `serve`.
pub async fn spawn(args: &[&str]) -> Server {
    let data = Arc::new(tempfile::tempdir().expect("temp dir"));
    // The demo users go wherever the server keeps its users.
    let mut demo_args = vec!["demo"];
    demo_args.extend(args.iter().filter(|a| a.starts_with("--database-url=")));
    let demo = cli(data.path(), &demo_args, "").await;
    assert!(demo.status.success(), "demo failed: {}", String::from_utf8_lossy(&demo.stderr));
    start(data, args.iter().map(|s| s.to_string()).collect()).await
}

/// Starts `wsguard serve` with `args` on an existing data folder (no demo users are added).
pub async fn serve_in(data: Arc<TempDir>, args: &[&str]) -> Server {
    start(data, args.iter().map(|s| s.to_string()).collect()).await
}

/// Runs `wsguard serve` with `args` on `data`, expecting it to refuse to start (within 20 s):
/// its exit status and what it wrote to stderr.
pub async fn serve_refused(data: &Path, args: &[&str]) -> (std::process::ExitStatus, String) {
    let child = Command::new(BIN)
        .arg("serve")
        .arg("--bind=127.0.0.1:0")
        .arg(format!("--data-dir={}", data.display()))
        .args(args)
        .env_remove("WSGUARD_CONFIG")
        .current_dir(data)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn wsguard");
    let output = tokio::time::timeout(Duration::from_secs(20), child.wait_with_output())
        .await
        .expect("wsguard serve started instead of refusing")
        .unwrap();
    (output.status, String::from_utf8_lossy(&output.stderr).into_owned())
}

/// A schema of its own in the test PostgreSQL, for one test's nodes; dropped by [`Schema::drop`].
pub struct Schema {
    pub name: String,
    base: String,
}

pub const POSTGRES: &str = "127.0.0.1:5432";

impl Schema {
    pub async fn create() -> Schema {
        use sqlx::Connection;
        let base = std::env::var("WSGUARD_TEST_DATABASE_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned());
        let name = format!("wsguard_api_{}", uuid::Uuid::new_v4().simple());
        let mut db = sqlx::PgConnection::connect(&base).await.expect("connect to the test PostgreSQL");
        sqlx::query(&format!("CREATE SCHEMA {name}")).execute(&mut db).await.unwrap();
        Schema { name, base }
    }

    /// The database URL of this schema, as `--database-url` takes it, going through `host:port`.
    pub fn url_via(&self, host_port: &str) -> String {
        let base = self.base.replace(POSTGRES, host_port);
        let separator = if base.contains('?') { '&' } else { '?' };
        format!("{base}{separator}options=-c%20search_path%3D{}", self.name)
    }

    pub fn url(&self) -> String {
        self.url_via(POSTGRES)
    }

    pub async fn drop(self) {
        use sqlx::Connection;
        if let Ok(mut db) = sqlx::PgConnection::connect(&self.base).await {
            let _ = sqlx::query(&format!("DROP SCHEMA {} CASCADE", self.name)).execute(&mut db).await;
        }
    }
}

/// A TCP relay to `upstream` that can be cut (every connection dropped, new ones refused) and
/// restored: a network partition between wsguard and a service, without touching the service.
pub struct Relay {
    pub port: u16,
    open: Arc<std::sync::atomic::AtomicBool>,
    connections: Arc<std::sync::Mutex<Vec<tokio::task::AbortHandle>>>,
}

impl Relay {
    pub async fn start(upstream: &str) -> Relay {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let open = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let connections = Arc::new(std::sync::Mutex::new(Vec::new()));
        let (flag, held, upstream) = (open.clone(), connections.clone(), upstream.to_owned());
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if !flag.load(std::sync::atomic::Ordering::SeqCst) {
                    continue;
                }
                let upstream = upstream.clone();
                let task = tokio::spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(&upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                held.lock().unwrap().push(task.abort_handle());
            }
        });
        Relay { port, open, connections }
    }

    pub fn cut(&self) {
        self.open.store(false, std::sync::atomic::Ordering::SeqCst);
        for connection in self.connections.lock().unwrap().drain(..) {
            connection.abort();
        }
    }

    pub fn restore(&self) {
        self.open.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

/// Another node of `first`'s cluster: same data folder (signing key) and the same `args`.
pub async fn another_node(first: &Server) -> Server {
    start(first.data.clone(), first.args.clone()).await
}

/// Whether a service answers on `addr`. Unreachable: in CI (or with WSGUARD_REQUIRE_SERVICES=1)
/// the test fails; elsewhere it is skipped with a message saying how to run it.
pub fn service(name: &str, addr: &str) -> bool {
    if std::net::TcpStream::connect_timeout(&addr.parse().unwrap(), Duration::from_secs(1)).is_ok() {
        return true;
    }
    let required = std::env::var_os("CI").is_some() || std::env::var_os("WSGUARD_REQUIRE_SERVICES").is_some();
    assert!(!required, "{name} is not reachable at {addr}, and CI requires it");
    eprintln!("skipping: {name} is not reachable at {addr}; start it (see README, Testing) to run this test");
    false
}

async fn start(data: Arc<TempDir>, args: Vec<String>) -> Server {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(data.path().join("server.log"))
        .expect("log file");
    let mut child = Command::new(BIN)
        .arg("serve")
        .arg("--bind=127.0.0.1:0")
        .arg(format!("--data-dir={}", data.path().display()))
        .args(&args)
        .env_remove("WSGUARD_CONFIG")
        .current_dir(data.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(log))
        .kill_on_drop(true)
        .spawn()
        .expect("spawn wsguard");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .expect("server did not start in time")
        .expect("read stdout")
        .unwrap_or_else(|| {
            panic!(
                "server exited: {}",
                std::fs::read_to_string(data.path().join("server.log")).unwrap_or_default()
            )
        });
    let base = line
        .strip_prefix("wsguard listening on ")
        .filter(|base| base.starts_with("http://") || base.starts_with("https://"))
        .unwrap_or_else(|| panic!("unexpected first line: {line}"))
        .to_owned();
    Server {
        ws_base: base.replacen("http", "ws", 1),
        base,
        data,
        args,
        child,
        http: reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap(),
    }
}

/// Runs `wsguard <args> --data-dir <dir>` with `stdin` piped in.
pub async fn cli(data: &Path, args: &[&str], stdin: &str) -> std::process::Output {
    let mut child = Command::new(BIN)
        .args(args)
        .arg(format!("--data-dir={}", data.display()))
        .env_remove("WSGUARD_CONFIG")
        .current_dir(data)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn wsguard cli");
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.as_bytes()).await.unwrap();
    drop(input);
    child.wait_with_output().await.unwrap()
}

pub struct Pair {
    pub access: String,
    pub refresh: String,
}

impl Server {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn ws_url(&self, path: &str) -> String {
        format!("{}{path}", self.ws_base)
    }

    pub fn data_dir(&self) -> PathBuf {
        self.data.path().to_owned()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.data.path().join("server.log")).unwrap_or_default()
    }

    /// The log without its colours.
    pub fn plain_log(&self) -> String {
        let (mut plain, colored) = (String::new(), self.log());
        let mut chars = colored.chars();
        while let Some(c) = chars.next() {
            if c == '\x1b' {
                // An escape sequence: `ESC [ … m`.
                chars.by_ref().find(|c| c.is_ascii_alphabetic());
            } else {
                plain.push(c);
            }
        }
        plain
    }

    /// Runs a CLI command against this server's store.
    pub async fn cli(&self, args: &[&str], stdin: &str) -> std::process::Output {
        let mut args: Vec<&str> = args.to_vec();
        args.extend(self.args.iter().filter(|a| a.starts_with("--database-url=")).map(String::as_str));
        cli(self.data.path(), &args, stdin).await
    }

    /// Stops the process (SIGKILL: nothing gets a chance to flush) and starts it again on the
    /// same data folder.
    pub async fn restart(mut self) -> Server {
        self.child.kill().await.unwrap();
        let data = self.data.clone();
        let args = std::mem::take(&mut self.args);
        drop(self);
        start(data, args).await
    }

    /// The value of `--name=value` among the arguments the server was started with.
    pub fn arg(&self, name: &str) -> Option<&str> {
        self.args.iter().find_map(|a| a.strip_prefix(name)?.strip_prefix('='))
    }

    /// The server's process id (for signals).
    pub fn pid(&self) -> u32 {
        self.child.id().expect("server still running")
    }

    /// Waits up to `within` for the process to exit.
    pub async fn exit_status(&mut self, within: Duration) -> std::process::ExitStatus {
        tokio::time::timeout(within, self.child.wait())
            .await
            .unwrap_or_else(|_| panic!("server still running after {within:?}"))
            .unwrap()
    }

    /// `host:port` the server listens on.
    pub fn addr(&self) -> &str {
        self.base.split("://").nth(1).unwrap()
    }

    /// Kills the process (SIGKILL), as a crash would.
    pub async fn kill(mut self) {
        self.child.kill().await.unwrap();
    }

    pub async fn token_form(&self, form: &[(&str, &str)]) -> reqwest::Response {
        self.http.post(self.url("/token")).form(form).send().await.unwrap()
    }

    /// Logs in through `/token` and returns the pair.
    pub async fn login(&self, username: &str, password: &str) -> Pair {
        let response = self.token_form(&[("username", username), ("password", password)]).await;
        assert_eq!(response.status(), StatusCode::OK, "login of {username}");
        let body: Value = response.json().await.unwrap();
        Pair {
            access: body["access_token"].as_str().unwrap().to_owned(),
            refresh: body["refresh_token"].as_str().unwrap().to_owned(),
        }
    }

    /// POST /refresh with a bearer refresh token.
    pub async fn refresh(&self, refresh: &str) -> reqwest::Response {
        self.http.post(self.url("/refresh")).bearer_auth(refresh).send().await.unwrap()
    }

    pub async fn me(&self, access: &str) -> reqwest::Response {
        self.http.get(self.url("/users/me")).bearer_auth(access).send().await.unwrap()
    }

    /// Opens a WebSocket with the given extra headers.
    pub async fn ws(
        &self,
        path: &str,
        headers: &[(&str, &str)],
    ) -> Result<Ws, tokio_tungstenite::tungstenite::Error> {
        let mut request = self.ws_url(path).into_client_request().unwrap();
        for (name, value) in headers {
            request.headers_mut().insert(
                tokio_tungstenite::tungstenite::http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        tokio_tungstenite::connect_async(request).await.map(|(ws, _)| ws)
    }

    /// The HTTP status a refused upgrade answered with.
    pub async fn ws_refused(&self, path: &str, headers: &[(&str, &str)]) -> u16 {
        match self.ws(path, headers).await {
            Err(tokio_tungstenite::tungstenite::Error::Http(response)) => response.status().as_u16(),
            Err(other) => panic!("unexpected error {other}"),
            Ok(_) => panic!("upgrade to {path} was accepted"),
        }
    }
}

/// The claims of a JWT, decoded without verification (the test only reads them).
pub fn claims(token: &str) -> Value {
    use base64::Engine;
    let payload = token.split('.').nth(1).unwrap();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

/// The next text frame, within 5 seconds.
pub async fn next_text(ws: &mut Ws) -> String {
    loop {
        match tokio::time::timeout(Duration::from_secs(5), ws.next()).await {
            Ok(Some(Ok(Message::Text(text)))) => return text.to_string(),
            Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => continue,
            other => panic!("expected a text frame, got {other:?}"),
        }
    }
}

pub async fn next_json(ws: &mut Ws) -> Value {
    serde_json::from_str(&next_text(ws).await).unwrap()
}

/// Waits up to `within` for the server's close frame; returns its code and reason. Text frames
/// before it are skipped.
pub async fn close_code(ws: &mut Ws, within: Duration) -> (u16, String) {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, ws.next()).await {
            Ok(Some(Ok(Message::Close(Some(frame))))) => {
                return (u16::from(frame.code), frame.reason.to_string())
            }
            Ok(Some(Ok(Message::Close(None)))) => return (u16::from(CloseCode::Status), String::new()),
            Ok(Some(Ok(_))) => continue,
            Ok(other) => panic!("socket ended without a close frame: {other:?}"),
            Err(_) => panic!("no close frame within {within:?}"),
        }
    }
}

pub async fn send(ws: &mut Ws, text: &str) {
    ws.send(Message::Text(text.into())).await.unwrap();
}

/// Sends a text frame and expects the echo endpoints' answer.
pub async fn assert_echo(ws: &mut Ws) {
    send(ws, "hello").await;
    assert_eq!(next_text(ws).await, "You wrote: hello");
}

/// Polls `check` every 20 ms until it answers `Ok`, for at most `within`: waiting for something
/// the server does in its own time (a key reread, a place freed, a reconnect) without guessing
/// how long it takes. `Err` carries what was seen instead, and the timeout's panic names `what`
/// and shows the last one.
pub async fn eventually<T, E: std::fmt::Debug>(
    what: &str,
    within: Duration,
    mut check: impl AsyncFnMut() -> Result<T, E>,
) -> T {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match check().await {
            Ok(value) => return value,
            Err(seen) if tokio::time::Instant::now() >= deadline => {
                panic!("{what}: not within {within:?}; last seen: {seen:?}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

/// The value of one sample in a `/metrics` text.
pub fn sample(metrics: &str, name: &str) -> f64 {
    let line = metrics.lines().find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '));
    line.unwrap_or_else(|| panic!("missing {name} in\n{metrics}"))[name.len()..].trim().parse().unwrap()
}
