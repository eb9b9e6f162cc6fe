//! Workload 5, idle authenticated sockets: the server's resident memory (VmRSS of `--pid`)
//! before and after opening `--sockets` sockets that each received their welcome frame.
//!
//! With `--subscribe CHANNEL`, each socket also follows a channel, joining as a fan-out member of
//! `--protocol` does (`channel`: `/connect` and `subscribe`; `centrifugo`: `/connection/websocket`
//! with `connect` and `subscribe` in its first frame), opened once the server said it follows it:
//! memory per subscribed connection. With `--channels N`, socket `i` follows `CHANNEL-(i % N)`.
//! With `--protocol centrifugo --transport http_stream|sse`, the connections are emulated ones
//! (a stream each, subscribed by `POST /emulation`): memory per idle stream.
//!
//! With `--scale`, the sockets are held open (each answering the server's pings) from loopback
//! source addresses 127.0.0.2 onward, one per `--per-source` sockets, since one address has only
//! about 28,000 ephemeral ports; then, at that size, the server's CPU while idle over
//! `--window-s` seconds (pings included: make the window longer than the server's ping interval)
//! and handshakes/s, the handshake workload's loop run from 127.0.0.1 while the sockets are held.

use crate::common::{bounded, round1, Target, Ws};
use crate::emulated::{self, Posts, Stream, Transport};
use crate::fanout::{cpu_seconds, Protocol};
use crate::handshake::{self, HandshakeProtocol, Tokens};
use anyhow::{bail, Context};
use clap::Args;
use futures_util::StreamExt;
use serde_json::{json, Value};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;

#[derive(Args, Debug)]
pub struct IdleArgs {
    #[command(flatten)]
    pub target: Target,
    /// WebSocket path
    #[arg(long, default_value = "/secured-ws")]
    pub path: String,
    /// The server's process id, for /proc/PID/status
    #[arg(long)]
    pub pid: u32,
    /// Sockets to open
    #[arg(long, default_value_t = 5000)]
    pub sockets: usize,
    /// Follow this channel on each socket (through --protocol); with --channels N > 1, socket i
    /// follows <CHANNEL>-(i % N)
    #[arg(long, value_name = "CHANNEL")]
    pub subscribe: Option<String>,
    /// With --subscribe: how sockets join (channel: /connect; centrifugo: /connection/websocket)
    #[arg(long, value_enum, default_value = "channel")]
    pub protocol: Protocol,
    /// With --subscribe --protocol centrifugo: how the connections are made (http_stream, sse:
    /// emulated connections, subscribed by POST /emulation)
    #[arg(long, value_enum, default_value = "websocket")]
    pub transport: Transport,
    /// With --subscribe: channels the sockets are spread over
    #[arg(long, default_value_t = 1)]
    pub channels: usize,
    /// Log in there (a server whose tokens this one accepts: for wsguard, one sharing its data
    /// folder, hence its users and signing key) rather than at --addr: a login's memory (wsguard's
    /// argon2 hash, 19 MiB) is given back by the measured server's allocator at its own pace,
    /// sometimes while the sockets open, which would hide theirs
    #[arg(long, value_name = "HOST:PORT")]
    pub login_addr: Option<std::net::SocketAddr>,
    /// Sockets being opened at a time
    #[arg(long, default_value_t = 50)]
    pub concurrency: usize,
    /// Milliseconds to let the server settle before each reading
    #[arg(long, default_value_t = 2000)]
    pub settle_ms: u64,
    /// The scale run: hold the sockets, then measure idle CPU and handshakes/s at that size
    #[arg(long)]
    pub scale: bool,
    /// Scale run: held sockets per loopback source address (127.0.0.2, 127.0.0.3, ...)
    #[arg(long, default_value_t = 25_000)]
    pub per_source: usize,
    /// Scale run: the first source address is 127.0.0.N. A run right after another from the same
    /// addresses finds their ports still in TIME_WAIT: it starts past them.
    #[arg(long, default_value_t = 2)]
    pub first_source: u32,
    /// Scale run: seconds of the idle CPU window (longer than the server's ping interval)
    #[arg(long, default_value_t = 15.0)]
    pub window_s: f64,
    /// Scale run: seconds of handshakes at size
    #[arg(long, default_value_t = 10.0)]
    pub handshake_s: f64,
    /// Scale run: concurrent handshake loops
    #[arg(long, default_value_t = 20)]
    pub handshake_workers: usize,
}

/// VmRSS of `pid`, in KiB.
pub fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).context("no VmRSS line")?;
    line.split_whitespace().nth(1).context("empty VmRSS line")?.parse().context("VmRSS is not a number")
}

/// The source address of held socket `i`: 127.0.0.`first` for the first `per_source`, and so on.
fn source_of(i: usize, per_source: usize, first: u32) -> IpAddr {
    let n = u32::try_from(i / per_source.max(1)).unwrap_or(u32::MAX).saturating_add(first).min(0x00ff_fffe);
    IpAddr::V4(Ipv4Addr::from(0x7f00_0000 | n))
}

impl IdleArgs {
    /// The channel socket `i` follows, with --subscribe.
    fn channel_of(&self, i: usize) -> Option<String> {
        let name = self.subscribe.as_ref()?;
        Some(if self.channels > 1 { format!("{name}-{}", i % self.channels) } else { name.clone() })
    }
}

pub async fn run(args: IdleArgs) -> anyhow::Result<Value> {
    if args.subscribe.is_some() && (args.scale || args.channels == 0) {
        bail!("--subscribe goes with --channels 1 or more, and without --scale");
    }
    if args.transport.is_stream() && (args.subscribe.is_none() || args.protocol != Protocol::Centrifugo) {
        bail!("--transport http_stream or sse goes with --subscribe and --protocol centrifugo");
    }
    let token = match args.login_addr {
        Some(addr) => Target { addr, ..args.target.clone() }.token().await?,
        None => args.target.token().await?,
    };
    let settle = Duration::from_millis(args.settle_ms);
    tokio::time::sleep(settle).await;
    let before = rss_kib(args.pid)?;
    let started = std::time::Instant::now();
    let posts = Posts::new(args.target.addr, args.target.source);
    let results = bounded(args.sockets, args.concurrency, |i| {
        let source = args.scale.then(|| source_of(i, args.per_source, args.first_source));
        let (target, path, token, posts) = (&args.target, &args.path, token.as_deref(), &posts);
        let channel = args.channel_of(i);
        let timeout = Duration::from_secs(10);
        async move {
            let Some(channel) = channel else {
                let mut ws = target.ws_from(path, token, source).await?;
                crate::common::next_text(&mut ws, timeout).await?;
                return anyhow::Ok(Open::Ws(Box::new(ws)));
            };
            if args.transport.is_stream() {
                let token = token.unwrap_or_default();
                let stream = emulated::join(target, args.transport, token, &channel, posts, timeout).await?;
                return Ok(Open::Stream(stream));
            }
            Ok(Open::Ws(Box::new(args.protocol.join(target, token, &channel, timeout).await?)))
        }
    })
    .await;
    let open_s = started.elapsed().as_secs_f64();
    let failed = results.iter().filter(|r| r.is_err()).count();
    let first_error = results.iter().find_map(|r| r.as_ref().err().map(|e| format!("{e:#}")));
    let sockets: Vec<_> = results.into_iter().filter_map(Result::ok).collect();
    if sockets.is_empty() {
        bail!("no socket opened: {}", first_error.unwrap_or_default());
    }
    let opened = sockets.len();
    let subscribed = args.subscribe.is_some();
    let mut line = json!({
        "path": match args.channel_of(0) {
            Some(_) if args.transport.is_stream() => args.transport.path().to_owned(),
            Some(channel) => args.protocol.endpoint(&channel),
            None => args.path.clone(),
        },
        "protocol": subscribed.then(|| args.protocol.name()),
        "transport": subscribed.then(|| args.transport.name()),
        "subscribed": subscribed,
        "channels": subscribed.then_some(args.channels),
        "sockets": opened,
        "failed": failed,
        "first_error": first_error,
        "open_s": round1(open_s),
        "scale": args.scale,
    });
    if args.scale {
        let held = Held::spawn(sockets.into_iter().filter_map(Open::ws).collect());
        tokio::time::sleep(settle).await;
        memory(&mut line, before, rss_kib(args.pid)?, opened);
        at_size(&args, token, &held, &mut line).await?;
    } else {
        tokio::time::sleep(settle).await;
        memory(&mut line, before, rss_kib(args.pid)?, opened);
        drop(sockets);
    }
    Ok(line)
}

fn memory(line: &mut Value, before: u64, after: u64, sockets: usize) {
    line["rss_before_kib"] = json!(before);
    line["rss_after_kib"] = json!(after);
    line["kib_per_socket"] = json!(round1(after.saturating_sub(before) as f64 / sockets as f64));
}

/// An open connection: a WebSocket, or an emulated connection's stream.
enum Open {
    /// Boxed: a WebSocket is ten times a stream's size, and thousands are held.
    Ws(Box<Ws>),
    /// Never read: held until the reading, dropped to close.
    Stream(#[allow(dead_code)] Stream),
}

impl Open {
    fn ws(self) -> Option<Ws> {
        match self {
            Open::Ws(ws) => Some(*ws),
            Open::Stream(_) => None,
        }
    }
}

/// Sockets held open, each read by a task of its own so that the server's pings are answered.
struct Held {
    pings: Arc<AtomicU64>,
    ended: Arc<AtomicU64>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Held {
    fn spawn(sockets: Vec<Ws>) -> Held {
        let (pings, ended) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        let tasks = sockets
            .into_iter()
            .map(|mut ws| {
                let (pings, ended) = (pings.clone(), ended.clone());
                tokio::spawn(async move {
                    // tungstenite queues the pong on reading a ping and sends it on the next read.
                    while let Some(Ok(message)) = ws.next().await {
                        if matches!(message, Message::Ping(_)) {
                            pings.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    ended.fetch_add(1, Ordering::Relaxed);
                })
            })
            .collect();
        Held { pings, ended, tasks }
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// The server's CPU over the idle window, then handshakes/s, with the sockets held.
async fn at_size(
    args: &IdleArgs,
    token: Option<String>,
    held: &Held,
    line: &mut Value,
) -> anyhow::Result<()> {
    let (pings0, cpu0) = (held.pings.load(Ordering::Relaxed), cpu_seconds(args.pid)?);
    let window = std::time::Instant::now();
    tokio::time::sleep(crate::common::secs(args.window_s)).await;
    let (seconds, cpu) = (window.elapsed().as_secs_f64(), cpu_seconds(args.pid)? - cpu0);
    line["idle_window_s"] = json!(round1(seconds));
    line["idle_cpu_pct"] = json!(round1(cpu / seconds * 100.0));
    line["pings_in_window"] = json!(held.pings.load(Ordering::Relaxed) - pings0);

    let tokens = Arc::new(match token {
        Some(token) => Tokens::Same(token),
        None => Tokens::None,
    });
    let cycles = handshake::cycles(
        &args.target,
        &args.path,
        HandshakeProtocol::Bearer,
        tokens,
        args.handshake_workers,
        args.handshake_s,
    )
    .await?;
    line["handshake_workers"] = json!(args.handshake_workers);
    line["handshakes_per_s"] = json!(round1(cycles.per_second()));
    line["handshake_p50_ms"] = cycles.latency.p50_ms();
    line["handshake_p99_ms"] = cycles.latency.p99_ms();
    line["handshake_errors"] = json!(cycles.errors);
    line["rss_end_kib"] = json!(rss_kib(args.pid)?);
    line["held_ended_early"] = json!(held.ended.load(Ordering::Relaxed));
    line["sources"] = json!(args.sockets.div_ceil(args.per_source.max(1)));
    line["nofile_limit"] = json!(rlimit::getrlimit(rlimit::Resource::NOFILE).map(|(soft, _)| soft).ok());
    Ok(())
}
