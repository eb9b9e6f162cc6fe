//! Workload 6, chat fan-out (wsguard only): `--members` sockets on `/chat/ws?token=...` join one
//! room; `--senders` of them send `{"type":"send"}` at `--rate` messages/s in total, and every
//! member (senders included) receives every message. Measures deliveries/s and, per message, the
//! latency from its send to the moment the LAST member received it.
//!
//! With `--node` (repeatable), the members are spread over several nodes of one cluster: member
//! `i` connects to node `i % nodes` (node 0 is `--addr`), and the senders are all on node 0, so
//! every message reaches the other nodes through the broker. Latency is still to the last member
//! of all nodes, and deliveries count every member; the line adds per-node figures.

use crate::common::{next_text, round1, secs, Latency, Target, Ws};
use anyhow::{anyhow, bail, Context};
use clap::Args;
use futures_util::stream::SplitSink;
use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use serde_json::{json, Value};
use std::borrow::Cow;
use std::net::SocketAddr;
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
    /// Another node of the same cluster (repeatable): members alternate between --addr and these
    /// nodes, the senders stay on --addr. The token from --addr must be valid on every node
    #[arg(long = "node", value_name = "HOST:PORT")]
    pub nodes: Vec<SocketAddr>,
    /// Room every member joins
    #[arg(long, default_value = "bench")]
    pub room: String,
    /// Sockets in the room
    #[arg(long, default_value_t = 1000)]
    pub members: usize,
    /// Members that also send (all on --addr)
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

/// What all members record into; times are nanoseconds since `epoch`. `last_ns` and `received`
/// hold one slot per node and message, at `node * capacity + seq`.
struct Board {
    epoch: std::time::Instant,
    capacity: usize,
    sent_ns: Vec<AtomicU64>,
    last_ns: Vec<AtomicU64>,
    received: Vec<AtomicU32>,
    next_seq: AtomicUsize,
    deliveries: Vec<AtomicU64>,
    acks: AtomicU64,
    error_frames: AtomicU64,
    closed_by_server: AtomicU64,
}

impl Board {
    fn new(capacity: usize, nodes: usize) -> Board {
        let zeros = |_| AtomicU64::new(0);
        Board {
            epoch: std::time::Instant::now(),
            capacity,
            sent_ns: (0..capacity).map(zeros).collect(),
            last_ns: (0..capacity * nodes).map(zeros).collect(),
            received: (0..capacity * nodes).map(|_| AtomicU32::new(0)).collect(),
            next_seq: AtomicUsize::new(0),
            deliveries: (0..nodes).map(zeros).collect(),
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

    /// Members of `node` that received message `seq`, and when the last of them did.
    fn on_node(&self, node: usize, seq: usize) -> (u32, u64) {
        let slot = node * self.capacity + seq;
        (self.received[slot].load(Ordering::Relaxed), self.last_ns[slot].load(Ordering::Relaxed))
    }

    /// Members of all nodes that received message `seq`, and when the last of them did.
    fn on_all(&self, seq: usize) -> (u32, u64) {
        (0..self.deliveries.len())
            .map(|node| self.on_node(node, seq))
            .fold((0, 0), |(n, last), (m, at)| (n + m, last.max(at)))
    }

    /// One frame received by a member connected to `node`.
    fn record(&self, node: usize, text: &str) {
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
                if let Some(seq) = seq.filter(|&s| s < self.capacity) {
                    let slot = node * self.capacity + seq;
                    self.last_ns[slot].fetch_max(self.now_ns(), Ordering::Relaxed);
                    self.received[slot].fetch_add(1, Ordering::Relaxed);
                    self.deliveries[node].fetch_add(1, Ordering::Relaxed);
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

/// Where a member connects, and whether it sends.
struct Seat {
    /// Index of the node: 0 is `--addr`, then the `--node`s in order.
    node: usize,
    target: Arc<Target>,
    is_sender: bool,
}

/// One member: joins its seat's node, reports (handing over its sending half when it is a
/// sender), then reads until told to stop.
async fn member(
    args: Arc<FanoutArgs>,
    seat: Seat,
    token: Arc<str>,
    board: Arc<Board>,
    permits: Arc<Semaphore>,
    joined: mpsc::Sender<anyhow::Result<Option<Sink>>>,
    mut stop: watch::Receiver<bool>,
) {
    let permit = permits.acquire().await;
    let ws = join(&seat.target, &token, &args.room, secs(args.join_timeout))
        .await
        .with_context(|| format!("member on node {} ({})", seat.node, seat.target.addr));
    drop(permit);
    let (sink, mut stream) = match ws {
        Ok(ws) => ws.split(),
        Err(e) => {
            let _ = joined.send(Err(e)).await;
            return;
        }
    };
    // Non-senders keep their half here so the socket stays whole until the end.
    let _kept = if seat.is_sender {
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
                Some(Ok(Message::Text(text))) => board.record(seat.node, text.as_str()),
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
    // Node 0 is --addr; member i connects to node i % nodes; the senders are the first members
    // of node 0.
    let targets: Vec<Arc<Target>> = std::iter::once(args.target.clone())
        .chain(args.nodes.iter().map(|&addr| Target { addr, ..args.target.clone() }))
        .map(Arc::new)
        .collect();
    let nodes = targets.len();
    let node_of = |i: usize| i % nodes;
    let members_on: Vec<usize> =
        (0..nodes).map(|n| (0..args.members).filter(|&i| node_of(i) == n).count()).collect();
    if args.senders == 0 || args.senders > members_on[0] || args.rate <= 0.0 {
        bail!("need 1 <= --senders <= the members on --addr ({}) and a positive --rate", members_on[0]);
    }
    let token: Arc<str> = args.target.token().await?.context("the chat needs a token")?.into();
    let capacity = (args.rate * args.duration * 1.1) as usize + 16;
    let board = Arc::new(Board::new(capacity, nodes));
    let args = Arc::new(args);
    let permits = Arc::new(Semaphore::new(args.concurrency.max(1)));
    let (stop_tx, stop_rx) = watch::channel(false);
    let (joined_tx, mut joined_rx) = mpsc::channel(args.members);
    let tasks: Vec<_> = (0..args.members)
        .map(|i| {
            let node = node_of(i);
            let seat = Seat {
                node,
                target: targets[node].clone(),
                is_sender: node == 0 && i / nodes < args.senders,
            };
            tokio::spawn(member(
                args.clone(),
                seat,
                token.clone(),
                board.clone(),
                permits.clone(),
                joined_tx.clone(),
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
    while Instant::now() < drain_until && (0..sent).any(|s| board.on_all(s).0 < members) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = stop_tx.send(true);
    for task in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
    }
    drop(kept_sinks);

    // To the last member of all nodes, and to the last member of each node.
    let mut latency = Latency::default();
    let mut node_latency: Vec<Latency> = (0..nodes).map(|_| Latency::default()).collect();
    let (mut complete, mut first_sent, mut last_received) = (0u64, u64::MAX, 0u64);
    for s in 0..sent {
        let sent_at = board.sent_ns[s].load(Ordering::Relaxed);
        let (received, last) = board.on_all(s);
        first_sent = first_sent.min(sent_at);
        last_received = last_received.max(last);
        if received >= members {
            complete += 1;
            latency.record(Duration::from_nanos(last.saturating_sub(sent_at)));
        }
        for (node, hist) in node_latency.iter_mut().enumerate() {
            let (received, last) = board.on_node(node, s);
            if received as usize >= members_on[node] {
                hist.record(Duration::from_nanos(last.saturating_sub(sent_at)));
            }
        }
    }
    let per_node: Vec<u64> = board.deliveries.iter().map(|d| d.load(Ordering::Relaxed)).collect();
    let deliveries: u64 = per_node.iter().sum();
    let window = Duration::from_nanos(last_received.saturating_sub(first_sent)).as_secs_f64();
    if deliveries == 0 {
        bail!("{sent} messages sent, none delivered");
    }
    let mut line = json!({
        "members": args.members,
        "senders": args.senders,
        "nodes": nodes,
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
    });
    if nodes > 1 {
        // Node 0 gets the messages from its own hub, the others through the broker.
        line["node_addrs"] = json!(targets.iter().map(|t| t.addr.to_string()).collect::<Vec<_>>());
        line["members_per_node"] = json!(members_on);
        line["deliveries_per_node"] = json!(per_node);
        line["p50_ms_per_node"] = json!(node_latency.iter().map(Latency::p50_ms).collect::<Vec<_>>());
        line["p99_ms_per_node"] = json!(node_latency.iter().map(Latency::p99_ms).collect::<Vec<_>>());
    }
    Ok(line)
}
