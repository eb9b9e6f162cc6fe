//! Workload 6, chat fan-out (wsguard only): `--members` sockets on `/chat/ws?token=...` join one
//! room; the first `--senders` of them send `{"type":"send"}` at `--rate` messages/s in total, and
//! every member (senders included) receives every message. Measures deliveries/s and, per
//! message, the latency from its send to the moment the LAST member received it.

use crate::common::{next_text, round1, secs, Latency, Target, Ws};
use anyhow::{anyhow, bail, Context};
use clap::Args;
use futures_util::stream::SplitSink;
use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use serde_json::{json, Value};
use std::borrow::Cow;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch, Semaphore};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

/// Texts we send are `bench <seq>`, so any member can tell which message it got.
const TEXT_PREFIX: &str = "bench ";

#[derive(Args, Debug, Clone)]
pub struct FanoutArgs {
    #[command(flatten)]
    pub target: Target,
    /// Room every member joins
    #[arg(long, default_value = "bench")]
    pub room: String,
    /// Sockets in the room
    #[arg(long, default_value_t = 1000)]
    pub members: usize,
    /// Members that also send
    #[arg(long, default_value_t = 1)]
    pub senders: usize,
    /// Messages per second, all senders together
    #[arg(long, default_value_t = 20.0)]
    pub rate: f64,
    /// Seconds of sending
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Seconds to wait, after the last send, for deliveries still under way
    #[arg(long, default_value_t = 5.0)]
    pub drain: f64,
    /// Sockets connecting and joining at a time
    #[arg(long, default_value_t = 50)]
    pub concurrency: usize,
    /// Seconds a join may take to be answered with `members` and `history`
    #[arg(long, default_value_t = 5.0)]
    pub join_timeout: f64,
}

#[derive(Deserialize)]
struct Frame<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(default, borrow)]
    text: Option<Cow<'a, str>>,
}

/// What all members record into; times are nanoseconds since `epoch`.
struct Board {
    epoch: std::time::Instant,
    sent_ns: Vec<AtomicU64>,
    last_ns: Vec<AtomicU64>,
    received: Vec<AtomicU32>,
    next_seq: AtomicUsize,
    deliveries: AtomicU64,
    acks: AtomicU64,
    error_frames: AtomicU64,
    closed_by_server: AtomicU64,
}

impl Board {
    fn new(capacity: usize) -> Board {
        let zeros = |_| AtomicU64::new(0);
        Board {
            epoch: std::time::Instant::now(),
            sent_ns: (0..capacity).map(zeros).collect(),
            last_ns: (0..capacity).map(zeros).collect(),
            received: (0..capacity).map(|_| AtomicU32::new(0)).collect(),
            next_seq: AtomicUsize::new(0),
            deliveries: AtomicU64::new(0),
            acks: AtomicU64::new(0),
            error_frames: AtomicU64::new(0),
            closed_by_server: AtomicU64::new(0),
        }
    }

    fn now_ns(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    fn sent(&self) -> usize {
        self.next_seq.load(Ordering::Relaxed).min(self.sent_ns.len())
    }

    /// One frame received by a member.
    fn record(&self, text: &str) {
        let Ok(frame) = serde_json::from_str::<Frame>(text) else {
            return;
        };
        match frame.kind.as_ref() {
            "message" => {
                let seq = frame
                    .text
                    .as_deref()
                    .and_then(|t| t.strip_prefix(TEXT_PREFIX))
                    .and_then(|n| n.parse::<usize>().ok());
                if let Some(seq) = seq.filter(|&s| s < self.received.len()) {
                    self.last_ns[seq].fetch_max(self.now_ns(), Ordering::Relaxed);
                    self.received[seq].fetch_add(1, Ordering::Relaxed);
                    self.deliveries.fetch_add(1, Ordering::Relaxed);
                }
            }
            "ack" => {
                self.acks.fetch_add(1, Ordering::Relaxed);
            }
            "error" => {
                self.error_frames.fetch_add(1, Ordering::Relaxed);
            }
            _ => {}
        }
    }
}

type Sink = SplitSink<Ws, Message>;

/// Connects, checks the welcome, joins and waits for `members` and `history`.
async fn join(target: &Target, token: &str, room: &str, timeout: Duration) -> anyhow::Result<Ws> {
    let mut ws = target.ws(&format!("/chat/ws?token={token}"), None).await.context("opening /chat/ws")?;
    let welcome = next_text(&mut ws, timeout).await?;
    if !welcome.contains("\"welcome\"") {
        bail!("first frame is not a welcome: {welcome}");
    }
    let join = json!({"type": "join", "room": room}).to_string();
    ws.send(Message::text(join)).await?;
    let (mut members, mut history) = (false, false);
    let deadline = Instant::now() + timeout;
    while !(members && history) {
        let left = deadline.saturating_duration_since(Instant::now());
        let text = next_text(&mut ws, left)
            .await
            .with_context(|| format!("join not answered with members and history within {timeout:?}"))?;
        match serde_json::from_str::<Frame>(&text).map(|f| f.kind.into_owned()) {
            Ok(kind) if kind == "members" => members = true,
            Ok(kind) if kind == "history" => history = true,
            Ok(kind) if kind == "presence" => {}
            _ => bail!("unexpected answer to join: {text}"),
        }
    }
    Ok(ws)
}

/// One member: joins, reports (handing over its sending half when it is a sender), then reads
/// until told to stop.
async fn member(
    args: Arc<FanoutArgs>,
    token: Arc<str>,
    board: Arc<Board>,
    permits: Arc<Semaphore>,
    joined: mpsc::Sender<anyhow::Result<Option<Sink>>>,
    is_sender: bool,
    mut stop: watch::Receiver<bool>,
) {
    let permit = permits.acquire().await;
    let ws = join(&args.target, &token, &args.room, secs(args.join_timeout)).await;
    drop(permit);
    let (sink, mut stream) = match ws {
        Ok(ws) => ws.split(),
        Err(e) => {
            let _ = joined.send(Err(e)).await;
            return;
        }
    };
    // Non-senders keep their half here so the socket stays whole until the end.
    let _kept = if is_sender {
        let _ = joined.send(Ok(Some(sink))).await;
        None
    } else {
        let _ = joined.send(Ok(None)).await;
        Some(sink)
    };
    loop {
        tokio::select! {
            _ = stop.changed() => break,
            frame = stream.next() => match frame {
                Some(Ok(Message::Text(text))) => board.record(text.as_str()),
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => {
                    board.closed_by_server.fetch_add(1, Ordering::Relaxed);
                    break;
                }
                Some(Ok(_)) => {}
            },
        }
    }
}

/// One sender: a message every `interval` until `until`.
async fn send_loop(
    mut sink: Sink,
    board: Arc<Board>,
    room: String,
    interval: Duration,
    until: Instant,
) -> Sink {
    let mut ticks = tokio::time::interval(interval);
    loop {
        ticks.tick().await;
        if Instant::now() >= until {
            break;
        }
        let seq = board.next_seq.fetch_add(1, Ordering::Relaxed);
        if seq >= board.sent_ns.len() {
            break;
        }
        let frame = json!({
            "type": "send",
            "room": room,
            "text": format!("{TEXT_PREFIX}{seq}"),
            "ref": format!("r{seq}"),
        });
        board.sent_ns[seq].store(board.now_ns().max(1), Ordering::Relaxed);
        if sink.send(Message::text(frame.to_string())).await.is_err() {
            break;
        }
    }
    sink
}

pub async fn run(args: FanoutArgs) -> anyhow::Result<Value> {
    if args.senders == 0 || args.senders > args.members || args.rate <= 0.0 {
        bail!("need 1 <= --senders <= --members and a positive --rate");
    }
    let token: Arc<str> = args.target.token().await?.context("the chat needs a token")?.into();
    let capacity = (args.rate * args.duration * 1.1) as usize + 16;
    let board = Arc::new(Board::new(capacity));
    let args = Arc::new(args);
    let permits = Arc::new(Semaphore::new(args.concurrency.max(1)));
    let (stop_tx, stop_rx) = watch::channel(false);
    let (joined_tx, mut joined_rx) = mpsc::channel(args.members);
    let tasks: Vec<_> = (0..args.members)
        .map(|i| {
            tokio::spawn(member(
                args.clone(),
                token.clone(),
                board.clone(),
                permits.clone(),
                joined_tx.clone(),
                i < args.senders,
                stop_rx.clone(),
            ))
        })
        .collect();
    drop(joined_tx);

    let mut sinks = Vec::new();
    for _ in 0..args.members {
        match joined_rx.recv().await {
            Some(Ok(Some(sink))) => sinks.push(sink),
            Some(Ok(None)) => {}
            Some(Err(e)) => {
                let _ = stop_tx.send(true);
                tasks.iter().for_each(|t| t.abort());
                return Err(e);
            }
            None => return Err(anyhow!("member tasks ended early")),
        }
    }

    let started = Instant::now();
    let until = started + secs(args.duration);
    let interval = secs(args.senders as f64 / args.rate);
    let senders: Vec<_> = sinks
        .into_iter()
        .map(|sink| tokio::spawn(send_loop(sink, board.clone(), args.room.clone(), interval, until)))
        .collect();
    let mut kept_sinks = Vec::new();
    for sender in senders {
        kept_sinks.push(sender.await?);
    }
    let sent = board.sent();
    let members = args.members as u32;
    let drain_until = Instant::now() + secs(args.drain);
    while Instant::now() < drain_until
        && (0..sent).any(|s| board.received[s].load(Ordering::Relaxed) < members)
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = stop_tx.send(true);
    for task in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
    }
    drop(kept_sinks);

    let mut latency = Latency::default();
    let (mut complete, mut first_sent, mut last_received) = (0u64, u64::MAX, 0u64);
    for s in 0..sent {
        let sent_at = board.sent_ns[s].load(Ordering::Relaxed);
        let last = board.last_ns[s].load(Ordering::Relaxed);
        first_sent = first_sent.min(sent_at);
        last_received = last_received.max(last);
        if board.received[s].load(Ordering::Relaxed) >= members {
            complete += 1;
            latency.record(Duration::from_nanos(last.saturating_sub(sent_at)));
        }
    }
    let deliveries = board.deliveries.load(Ordering::Relaxed);
    let window = Duration::from_nanos(last_received.saturating_sub(first_sent)).as_secs_f64();
    if deliveries == 0 {
        bail!("{sent} messages sent, none delivered");
    }
    Ok(json!({
        "members": args.members,
        "senders": args.senders,
        "rate_offered": args.rate,
        "duration_s": round1(args.duration),
        "sent": sent,
        "acks": board.acks.load(Ordering::Relaxed),
        "delivered_to_all": complete,
        "incomplete": sent as u64 - complete,
        "deliveries": deliveries,
        "deliveries_expected": sent as u64 * u64::from(members),
        "deliveries_per_s": round1(deliveries as f64 / window.max(1e-9)),
        "p50_ms": latency.p50_ms(),
        "p99_ms": latency.p99_ms(),
        "max_ms": latency.max_ms(),
        "error_frames": board.error_frames.load(Ordering::Relaxed),
        "closed_by_server": board.closed_by_server.load(Ordering::Relaxed),
    }))
}
