//! `publish-rate --senders N`: N sockets, each publishing to a numbered channel of its own
//! (`<numbered>-<i>`) and awaiting each ack before its next, in turns with one of them alone: the
//! acknowledged publications/s of many senders (which the store writes in shared transactions)
//! against one sender's, measured in the same run.

use crate::common::{round1, secs, Latency, Ws};
use crate::recovery::{next_of, send, turn, PublishRateArgs};
use anyhow::{bail, Context};
use serde_json::{json, Value};
use std::time::Duration;
use tokio::time::Instant;

/// Acks and latencies of a turn.
#[derive(Default)]
struct Tally {
    acks: u64,
    seconds: f64,
    latency: Latency,
}

impl Tally {
    fn rate(&self) -> f64 {
        self.acks as f64 / self.seconds.max(f64::EPSILON)
    }
}

/// Opens `count` sockets, socket `i` following channel `<numbered>-<i>` (publishers must).
async fn open(args: &PublishRateArgs, numbered: &str, count: usize) -> anyhow::Result<Vec<(Ws, String)>> {
    let token = args.target.token().await?;
    let opened = crate::common::bounded(count, 20, |i| {
        let (target, token) = (&args.target, token.as_deref());
        async move {
            let mut ws = target.ws("/chat/ws", token).await?;
            next_of(&mut ws, "welcome").await?;
            let channel = format!("{numbered}-{i}");
            send(&mut ws, json!({"type": "subscribe", "channel": channel})).await?;
            next_of(&mut ws, "subscribed").await?;
            anyhow::Ok((ws, channel))
        }
    })
    .await;
    opened.into_iter().collect()
}

/// Every socket publishes on its own channel for `duration`, all at once.
async fn together(
    sockets: &mut Vec<(Ws, String)>,
    duration: Duration,
    tally: &mut Tally,
) -> anyhow::Result<()> {
    let started = Instant::now();
    let tasks: Vec<_> = sockets
        .drain(..)
        .map(|(mut ws, channel)| {
            tokio::spawn(async move {
                let mut latency = Latency::default();
                let acks = turn(&mut ws, &channel, false, duration, &mut latency).await;
                (ws, channel, acks, latency)
            })
        })
        .collect();
    for task in tasks {
        let (ws, channel, acks, latency) = task.await.context("a sender panicked")?;
        tally.acks += acks?;
        tally.latency.merge(&latency);
        sockets.push((ws, channel));
    }
    tally.seconds += started.elapsed().as_secs_f64();
    Ok(())
}

pub async fn run(args: &PublishRateArgs) -> anyhow::Result<Value> {
    let Some(numbered) = args.numbered.as_deref() else {
        bail!("--senders needs --numbered: the prefix of the senders' channels");
    };
    let mut sockets = open(args, numbered, args.senders).await?;
    let (mut one, mut many) = (Tally::default(), Tally::default());
    let duration = secs(args.duration);
    for _ in 0..args.turns {
        let (ws, channel) = &mut sockets[0];
        let started = Instant::now();
        one.acks += turn(ws, channel, false, duration, &mut one.latency).await?;
        one.seconds += started.elapsed().as_secs_f64();
        together(&mut sockets, duration, &mut many).await?;
    }
    Ok(json!({
        "store": args.store,
        "senders": args.senders,
        "turns": args.turns,
        "turn_s": args.duration,
        "one_sender_per_s": round1(one.rate()),
        "one_sender_p50_ms": one.latency.p50_ms(),
        "one_sender_p99_ms": one.latency.p99_ms(),
        "senders_per_s": round1(many.rate()),
        "senders_p50_ms": many.latency.p50_ms(),
        "senders_p99_ms": many.latency.p99_ms(),
        "senders_over_one": round1(many.rate() / one.rate().max(f64::EPSILON) * 100.0) / 100.0,
    }))
}
