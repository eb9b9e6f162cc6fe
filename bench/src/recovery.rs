//! Two workloads on wsguard's numbered channels (`/connect`), on whatever store the server has:
//!
//! - `recovery`: a subscriber follows a channel, goes away, `--missed` publications are made, and
//!   it comes back with `since`: the time from starting the reconnect (TCP connect, handshake,
//!   subscribe) to the last missed publication received, every one checked once and in order.
//! - `publish-rate`: one sender, each publication awaited (ack after store) before the next, in
//!   turns: a numbered channel (a namespace with history), one without history, and a chat room
//!   (`send`, which builds of wsguard from before channels also speak), so that the cost of
//!   numbering and storing shows as a ratio within one run. With `--senders N`, N senders on
//!   numbered channels of their own against one alone instead (`senders.rs`).

use crate::common::{next_text, round1, secs, Latency, Target, Ws};
use anyhow::{bail, Context};
use clap::Args;
use futures_util::SinkExt;
use serde_json::{json, Value};
use std::time::Duration;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

const WAIT: Duration = Duration::from_secs(30);

#[derive(Args, Debug, Clone)]
pub struct RecoveryArgs {
    #[command(flatten)]
    pub target: Target,
    /// A namespace with history of at least --missed + 1 publications, `subscribe = "any"` and
    /// `publish = "subscribers"`
    #[arg(long, default_value = "bench")]
    pub namespace: String,
    /// Publications made while the subscriber is away
    #[arg(long, default_value_t = 1000)]
    pub missed: u64,
    /// Times to go away and come back (each on a fresh channel)
    #[arg(long, default_value_t = 5)]
    pub repeats: u32,
    /// The store behind the server, copied into the line (`sqlite`, `postgres`)
    #[arg(long, default_value = "sqlite")]
    pub store: String,
}

#[derive(Args, Debug, Clone)]
pub struct PublishRateArgs {
    #[command(flatten)]
    pub target: Target,
    /// A channel of a namespace with history (numbered, stored)
    #[arg(long)]
    pub numbered: Option<String>,
    /// A channel of a namespace without history (`history_size = 0`: neither numbered nor stored)
    #[arg(long)]
    pub unnumbered: Option<String>,
    /// A chat room (`send`; stored and numbered as the default namespace's channel)
    #[arg(long)]
    pub room: Option<String>,
    /// Seconds per turn
    #[arg(long, default_value_t = 3.0)]
    pub duration: f64,
    /// Turns per channel
    #[arg(long, default_value_t = 2)]
    pub turns: u32,
    /// Above 1: this many concurrent senders, each on its own channel `<numbered>-<i>` awaiting
    /// its acks, in turns with one sender alone (only --numbered is used)
    #[arg(long, default_value_t = 1)]
    pub senders: usize,
    /// The store behind the server, copied into the line (`sqlite`, `postgres`)
    #[arg(long, default_value = "sqlite")]
    pub store: String,
}

pub(crate) async fn send(ws: &mut Ws, frame: Value) -> anyhow::Result<()> {
    ws.send(Message::text(frame.to_string())).await.context("sending a frame")
}

/// The next frame whose `type` is `kind`; an error frame fails.
pub(crate) async fn next_of(ws: &mut Ws, kind: &str) -> anyhow::Result<Value> {
    loop {
        let frame: Value = serde_json::from_str(&next_text(ws, WAIT).await?)?;
        match frame["type"].as_str() {
            Some(k) if k == kind => return Ok(frame),
            Some("error") => bail!("the server refused: {frame}"),
            _ => {}
        }
    }
}

async fn connect(target: &Target, token: Option<&str>) -> anyhow::Result<Ws> {
    let mut ws = target.ws("/connect", token).await?;
    next_of(&mut ws, "welcome").await?;
    Ok(ws)
}

/// Publishes `count` publications to `channel` (pipelined, then every ack awaited).
async fn publish_many(ws: &mut Ws, channel: &str, count: u64) -> anyhow::Result<()> {
    for i in 0..count {
        send(ws, json!({"type": "publish", "channel": channel, "data": {"i": i}, "ref": "r"})).await?;
    }
    for _ in 0..count {
        next_of(ws, "ack").await?;
    }
    Ok(())
}

/// One absence: milliseconds from starting the reconnect to the last missed publication.
async fn absence(
    args: &RecoveryArgs,
    token: Option<&str>,
    publisher: &mut Ws,
    channel: &str,
) -> anyhow::Result<f64> {
    let mut subscriber = connect(&args.target, token).await?;
    publish_many(publisher, channel, 1).await?;
    send(&mut subscriber, json!({"type": "subscribe", "channel": channel})).await?;
    let seen = next_of(&mut subscriber, "subscribed").await?;
    let (offset, epoch) = (seen["offset"].as_u64().unwrap_or(0), seen["epoch"].clone());
    subscriber.close(None).await.ok();
    drop(subscriber);
    publish_many(publisher, channel, args.missed).await?;

    let started = Instant::now();
    let mut subscriber = connect(&args.target, token).await?;
    let since = json!({"offset": offset, "epoch": epoch});
    send(&mut subscriber, json!({"type": "subscribe", "channel": channel, "since": since})).await?;
    let mut expected = offset + 1;
    let last = offset + args.missed;
    while expected <= last {
        let frame = next_of(&mut subscriber, "publication").await?;
        let got = frame["offset"].as_u64().context("a publication without an offset")?;
        if got != expected {
            bail!("publication {got} arrived where {expected} was due");
        }
        expected += 1;
    }
    let elapsed = started.elapsed();
    let answer = next_of(&mut subscriber, "subscribed").await?;
    if answer["recovered"] != true {
        bail!("not recovered: {answer}");
    }
    Ok(elapsed.as_secs_f64() * 1000.0)
}

pub async fn run(args: RecoveryArgs) -> anyhow::Result<Value> {
    let token = args.target.token().await?;
    let mut publisher = connect(&args.target, token.as_deref()).await?;
    let run = format!("{:x}", std::process::id() ^ rand_suffix());
    let mut times = Vec::new();
    for repeat in 0..args.repeats {
        let channel = format!("{}:recovery-{run}-{repeat}", args.namespace);
        // The publisher must follow the channel to publish to it; it drains its own copies.
        send(&mut publisher, json!({"type": "subscribe", "channel": channel})).await?;
        next_of(&mut publisher, "subscribed").await?;
        times.push(absence(&args, token.as_deref(), &mut publisher, &channel).await?);
        send(&mut publisher, json!({"type": "unsubscribe", "channel": channel})).await?;
    }
    times.sort_by(f64::total_cmp);
    let median = times[times.len() / 2];
    Ok(json!({
        "store": args.store,
        "missed": args.missed,
        "repeats": args.repeats,
        "median_ms": round1(median),
        "fastest_ms": round1(times[0]),
        "slowest_ms": round1(times[times.len() - 1]),
        "us_per_publication": round1(median * 1000.0 / args.missed as f64),
    }))
}

fn rand_suffix() -> u32 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos())
}

/// Publishes to `channel` (or sends to a room) back to back for `duration`: acks and latencies.
pub(crate) async fn turn(
    ws: &mut Ws,
    channel: &str,
    room: bool,
    duration: Duration,
    latency: &mut Latency,
) -> anyhow::Result<u64> {
    let frame = if room {
        json!({"type": "send", "room": channel, "text": "rate", "ref": "r"})
    } else {
        json!({"type": "publish", "channel": channel, "data": {"text": "rate", "n": 1}, "ref": "r"})
    };
    let text = frame.to_string();
    let end = Instant::now() + duration;
    let mut acks = 0;
    while Instant::now() < end {
        let sent = Instant::now();
        ws.send(Message::text(text.clone())).await?;
        next_of(ws, "ack").await?;
        latency.record(sent.elapsed());
        acks += 1;
    }
    Ok(acks)
}

pub async fn publish_rate(args: PublishRateArgs) -> anyhow::Result<Value> {
    if args.senders > 1 {
        return crate::senders::run(&args).await;
    }
    let token = args.target.token().await?;
    let mut ws = args.target.ws("/chat/ws", token.as_deref()).await?;
    next_of(&mut ws, "welcome").await?;
    let named = [("numbered", &args.numbered), ("unnumbered", &args.unnumbered), ("room", &args.room)];
    let channels: Vec<(&str, &str)> =
        named.iter().filter_map(|(kind, name)| name.as_deref().map(|name| (*kind, name))).collect();
    if channels.is_empty() {
        bail!("nothing to publish to: give --numbered, --unnumbered or --room");
    }
    for (kind, name) in &channels {
        if *kind == "room" {
            send(&mut ws, json!({"type": "join", "room": name})).await?;
            next_of(&mut ws, "history").await?;
        } else {
            send(&mut ws, json!({"type": "subscribe", "channel": name})).await?;
            next_of(&mut ws, "subscribed").await?;
        }
    }
    let mut totals: Vec<(u64, f64, Latency)> =
        channels.iter().map(|_| (0, 0.0, Latency::default())).collect();
    for _ in 0..args.turns {
        for ((kind, name), total) in channels.iter().zip(&mut totals) {
            let started = Instant::now();
            total.0 += turn(&mut ws, name, *kind == "room", secs(args.duration), &mut total.2).await?;
            total.1 += started.elapsed().as_secs_f64();
        }
    }
    let mut line = json!({"turns": args.turns, "turn_s": args.duration});
    let mut rates = std::collections::HashMap::new();
    for ((kind, _), (acks, seconds, latency)) in channels.iter().zip(&totals) {
        let rate = *acks as f64 / seconds.max(f64::EPSILON);
        rates.insert(*kind, rate);
        line[format!("{kind}_per_s")] = round1(rate).into();
        line[format!("{kind}_p50_ms")] = latency.p50_ms();
        line[format!("{kind}_p99_ms")] = latency.p99_ms();
    }
    if let (Some(numbered), Some(unnumbered)) = (rates.get("numbered"), rates.get("unnumbered")) {
        line["numbered_over_unnumbered"] = (round1(numbered / unnumbered * 100.0) / 100.0).into();
    }
    Ok(line)
}
