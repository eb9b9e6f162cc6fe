//! Workload 2, authenticated handshakes: `--workers` loops, each opening a `/secured-ws` socket
//! (or `--path`) with the bearer header, reading the welcome frame and closing (close handshake
//! included), for `--duration` seconds. Latency is connect to welcome; the rate counts whole
//! cycles. With `--protocol centrifugo` the cycle opens `/connection/websocket` and presents the
//! same token in Centrifugo's `connect` command instead, the connect reply standing for the welcome.

use crate::common::{round1, secs, Latency, Target, Ws};
use anyhow::bail;
use clap::{Args, ValueEnum};
use futures_util::StreamExt;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Barrier;
use tokio::time::Instant;

#[derive(Args, Debug)]
pub struct HandshakeArgs {
    #[command(flatten)]
    pub target: Target,
    /// How the token is presented and the admission known
    #[arg(long, value_enum, default_value = "bearer")]
    pub protocol: HandshakeProtocol,
    /// WebSocket path [default: /secured-ws; /connection/websocket with --protocol centrifugo]
    #[arg(long)]
    pub path: Option<String>,
    /// Concurrent connecting loops
    #[arg(long, default_value_t = 20)]
    pub workers: usize,
    /// Seconds of measurement
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
}

impl HandshakeArgs {
    /// The WebSocket path the cycles open.
    pub fn path(&self) -> &str {
        self.path.as_deref().unwrap_or(self.protocol.default_path())
    }
}

/// How a cycle presents its token, and what tells it the socket was admitted.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum HandshakeProtocol {
    /// `Authorization: Bearer` on the upgrade; the server's first frame (its welcome) admits
    Bearer,
    /// Centrifugo's `connect` command as the first frame; its reply admits
    Centrifugo,
}

impl HandshakeProtocol {
    pub fn name(self) -> &'static str {
        match self {
            HandshakeProtocol::Bearer => "bearer",
            HandshakeProtocol::Centrifugo => "centrifugo",
        }
    }

    fn default_path(self) -> &'static str {
        match self {
            HandshakeProtocol::Bearer => "/secured-ws",
            HandshakeProtocol::Centrifugo => crate::centrifugo::PATH,
        }
    }

    /// Opens an admitted socket on `path` with `token`.
    async fn open(self, target: &Target, path: &str, token: Option<&str>) -> anyhow::Result<Ws> {
        match self {
            HandshakeProtocol::Bearer => target.ws_welcomed(path, token).await,
            HandshakeProtocol::Centrifugo => {
                let token = token.unwrap_or_default();
                crate::centrifugo::connect(target, path, token, None, Duration::from_secs(10)).await
            }
        }
    }
}

/// What some seconds of handshake cycles gave.
#[derive(Default)]
pub struct Cycles {
    pub handshakes: u64,
    pub errors: u64,
    pub latency: Latency,
    pub seconds: f64,
}

impl Cycles {
    pub fn add(&mut self, other: &Cycles) {
        self.handshakes += other.handshakes;
        self.errors += other.errors;
        self.latency.merge(&other.latency);
        self.seconds += other.seconds;
    }

    pub fn per_second(&self) -> f64 {
        if self.seconds > 0.0 {
            self.handshakes as f64 / self.seconds
        } else {
            0.0
        }
    }
}

/// The bearer token of each cycle.
pub enum Tokens {
    /// No `Authorization` header (the bare server).
    None,
    /// The same token every time.
    Same(String),
    /// Each token once, in order; the run ends when they are used up.
    EachOnce(Vec<String>),
}

impl Tokens {
    /// The token of cycle `n`: `None` once `EachOnce` is used up.
    fn nth(&self, n: usize) -> Option<Option<&str>> {
        match self {
            Tokens::None => Some(None),
            Tokens::Same(token) => Some(Some(token)),
            Tokens::EachOnce(tokens) => tokens.get(n).map(|t| Some(t.as_str())),
        }
    }
}

/// `workers` loops opening `path` with a token of `tokens` (bearer header, or Centrifugo's
/// `connect`), reading the welcome (the connect reply) and closing, for `duration` seconds (or
/// until `EachOnce` tokens are used up).
pub async fn cycles(
    target: &Target,
    path: &str,
    protocol: HandshakeProtocol,
    tokens: Arc<Tokens>,
    workers: usize,
    duration: f64,
) -> anyhow::Result<Cycles> {
    let gate = Arc::new(Barrier::new(workers + 1));
    let taken = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::with_capacity(workers);
    for _ in 0..workers {
        let (target, path, tokens, taken, gate) =
            (target.clone(), path.to_owned(), tokens.clone(), taken.clone(), gate.clone());
        let duration = secs(duration);
        tasks.push(tokio::spawn(async move {
            gate.wait().await;
            let deadline = Instant::now() + duration;
            let mut stats = Cycles::default();
            while Instant::now() < deadline {
                let Some(token) = tokens.nth(taken.fetch_add(1, Ordering::Relaxed)) else { break };
                let started = Instant::now();
                match protocol.open(&target, &path, token).await {
                    Ok(mut ws) => {
                        stats.latency.record(started.elapsed());
                        stats.handshakes += 1;
                        // Close handshake: we send Close, the server answers and drops the TCP
                        // connection; draining until then keeps the cycle honest.
                        let _ = ws.close(None).await;
                        let drain = async { while ws.next().await.is_some_and(|r| r.is_ok()) {} };
                        let _ = tokio::time::timeout(Duration::from_secs(2), drain).await;
                    }
                    Err(_) => {
                        stats.errors += 1;
                        // Don't spin on a refusing server.
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                }
            }
            stats
        }));
    }
    gate.wait().await;
    let started = Instant::now();
    let mut total = Cycles::default();
    for task in tasks {
        total.add(&task.await?);
    }
    total.seconds = started.elapsed().as_secs_f64();
    Ok(total)
}

pub async fn run(args: HandshakeArgs) -> anyhow::Result<Value> {
    let tokens = match args.target.token().await? {
        Some(token) => Tokens::Same(token),
        None => Tokens::None,
    };
    let path = args.path();
    let total =
        cycles(&args.target, path, args.protocol, Arc::new(tokens), args.workers, args.duration).await?;
    if total.handshakes == 0 {
        bail!("no handshake succeeded ({} errors)", total.errors);
    }
    Ok(json!({
        "protocol": args.protocol.name(),
        "path": path,
        "workers": args.workers,
        "duration_s": round1(total.seconds),
        "handshakes": total.handshakes,
        "handshakes_per_s": round1(total.per_second()),
        "p50_ms": total.latency.p50_ms(),
        "p99_ms": total.latency.p99_ms(),
        "max_ms": total.latency.max_ms(),
        "errors": total.errors,
    }))
}
