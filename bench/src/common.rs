//! What every workload shares: the target's address and credentials, logging in, opening a
//! WebSocket, latency histograms and the start gate.

use crate::http::HttpConn;
use anyhow::{bail, Context};
use clap::Args;
use futures_util::StreamExt;
use hdrhistogram::Histogram;
use serde_json::{json, Value};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// The system under test.
#[derive(Args, Clone, Debug)]
pub struct Target {
    /// Address of the server (HTTP and WebSocket on the same port)
    #[arg(long, default_value = "127.0.0.1:8000")]
    pub addr: SocketAddr,
    /// User to log in as (`POST /token`)
    #[arg(long, default_value = "johndoe")]
    pub username: String,
    /// Password of that user
    #[arg(long, default_value = "secret")]
    pub password: String,
    /// Do not log in and send no `Authorization` header (the bare echo server)
    #[arg(long)]
    pub no_auth: bool,
    /// Local address to open sockets from (each loopback address has its own ephemeral ports,
    /// which earlier workloads' closed sockets may hold in TIME_WAIT) [default: the kernel's]
    #[arg(long, value_name = "IP")]
    pub source: Option<IpAddr>,
}

impl Target {
    /// A bearer token from `POST /token`, or `None` with `--no-auth`.
    pub async fn token(&self) -> anyhow::Result<Option<String>> {
        if self.no_auth {
            return Ok(None);
        }
        let mut conn = HttpConn::connect(self.addr).await?;
        let (status, _, body) = conn.login(&self.username, &self.password).await?;
        if status != 200 {
            bail!("POST /token answered {status}: {}", String::from_utf8_lossy(&body));
        }
        let value: Value = serde_json::from_slice(&body).context("POST /token: not JSON")?;
        let token = value["access_token"].as_str().context("POST /token: no access_token")?;
        Ok(Some(token.to_owned()))
    }

    /// Opens `path` on the target, with `Authorization: Bearer <token>` when a token is given.
    pub async fn ws(&self, path: &str, token: Option<&str>) -> anyhow::Result<Ws> {
        self.ws_from(path, token, self.source).await
    }

    /// [`Self::ws`] from the local address `source` (the kernel's choice when `None`): each
    /// loopback address has its own range of ephemeral ports.
    pub async fn ws_from(
        &self,
        path: &str,
        token: Option<&str>,
        source: Option<IpAddr>,
    ) -> anyhow::Result<Ws> {
        let mut request = format!("ws://{}{}", self.addr, path).into_client_request()?;
        if let Some(token) = token {
            request.headers_mut().insert("authorization", HeaderValue::from_str(&format!("Bearer {token}"))?);
        }
        // Small buffers: the generator holds thousands of sockets and opens thousands per second
        // (tungstenite's default read buffer is 128 KiB, zeroed on every connect).
        let config = WebSocketConfig::default().read_buffer_size(4 * 1024).write_buffer_size(0);
        let stream = MaybeTlsStream::Plain(tcp_connect(self.addr, source).await?);
        let (ws, _) = tokio_tungstenite::client_async_with_config(request, stream, Some(config)).await?;
        Ok(ws)
    }

    /// Opens `path` and reads the server's first frame (the welcome text).
    pub async fn ws_welcomed(&self, path: &str, token: Option<&str>) -> anyhow::Result<Ws> {
        let mut ws = self.ws(path, token).await?;
        let first = next_text(&mut ws, Duration::from_secs(10)).await?;
        if first.is_empty() {
            bail!("empty first frame");
        }
        Ok(ws)
    }
}

/// A TCP connection to `addr` from the local address `source` (the kernel's choice when `None`),
/// Nagle off: one small frame or request at a time, latency is what we measure.
pub async fn tcp_connect(addr: SocketAddr, source: Option<IpAddr>) -> anyhow::Result<TcpStream> {
    let stream = match source {
        None => TcpStream::connect(addr).await,
        Some(source) => {
            let socket = if addr.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
            // Ports of earlier runs' closed sockets linger in TIME_WAIT: reusable for a new bind.
            socket.set_reuseaddr(true)?;
            socket.bind(SocketAddr::new(source, 0)).with_context(|| format!("binding to {source}"))?;
            socket.connect(addr).await
        }
    }
    .with_context(|| format!("connecting to {addr}"))?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// The next text frame, skipping control frames (tungstenite answers pings by itself).
pub async fn next_text(ws: &mut Ws, timeout: Duration) -> anyhow::Result<String> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let frame =
            tokio::time::timeout_at(deadline, ws.next()).await.context("timed out waiting for a frame")?;
        match frame {
            Some(Ok(Message::Text(text))) => return Ok(text.to_string()),
            Some(Ok(Message::Close(close))) => bail!("closed by the server: {close:?}"),
            Some(Ok(_)) => continue,
            Some(Err(e)) => return Err(e.into()),
            None => bail!("connection closed"),
        }
    }
}

/// Latencies in microseconds, 3 significant digits, up to 10 minutes.
pub struct Latency(Histogram<u64>);

impl Default for Latency {
    fn default() -> Self {
        Latency(Histogram::new_with_bounds(1, 600_000_000, 3).expect("static histogram bounds"))
    }
}

impl Latency {
    pub fn record(&mut self, d: Duration) {
        self.0.saturating_record(micros(d));
    }

    /// Records `d` and, when it exceeds `interval` (the pace a client meant to keep), the samples
    /// a paced client would have taken meanwhile (no coordinated omission).
    pub fn record_paced(&mut self, d: Duration, interval: Duration) {
        let value = micros(d).min(self.0.high());
        let _ = self.0.record_correct(value, micros(interval).max(1));
    }

    pub fn merge(&mut self, other: &Latency) {
        let _ = self.0.add(&other.0);
    }

    fn ms(&self, q: f64) -> Value {
        if self.0.is_empty() {
            return Value::Null;
        }
        let us = self.0.value_at_quantile(q);
        json!(us as f64 / 1000.0)
    }

    pub fn p50_ms(&self) -> Value {
        self.ms(0.5)
    }

    pub fn p99_ms(&self) -> Value {
        self.ms(0.99)
    }

    pub fn max_ms(&self) -> Value {
        self.ms(1.0)
    }
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX).max(1)
}

/// The decimal number at the start of `text`.
fn digits_at(text: &str) -> Option<usize> {
    let end = text.bytes().position(|b| !b.is_ascii_digit()).unwrap_or(text.len());
    text[..end].parse().ok()
}

/// The number right after `marker` in `text`: how the generator reads a figure out of a frame
/// without parsing it.
pub fn number_after(text: &str, marker: &str) -> Option<usize> {
    let at = text.find(marker)? + marker.len();
    digits_at(&text[at..])
}

/// Rounds a rate for the JSON output.
pub fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

pub fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s.max(0.0))
}

/// Runs `f(i)` for `0..n` with at most `concurrency` at a time, keeping the results in order.
pub async fn bounded<T, F, Fut>(n: usize, concurrency: usize, f: F) -> Vec<T>
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = T>,
{
    futures_util::stream::iter(0..n).map(f).buffered(concurrency.max(1)).collect().await
}
