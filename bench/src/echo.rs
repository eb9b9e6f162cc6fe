//! Workload 1, WebSocket echo: `--connections` sockets to `/secured-ws`, each sending a small text
//! frame and awaiting its `You wrote: ...` reply, back to back, for `--duration` seconds.

use crate::common::{next_text, round1, secs, Latency, Target, Ws};
use anyhow::bail;
use clap::Args;
use futures_util::SinkExt;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Barrier;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

#[derive(Args, Debug)]
pub struct EchoArgs {
    #[command(flatten)]
    pub target: Target,
    /// WebSocket path
    #[arg(long, default_value = "/secured-ws")]
    pub path: String,
    /// Concurrent sockets
    #[arg(long, default_value_t = 50)]
    pub connections: usize,
    /// Seconds of measurement
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Bytes of text per frame
    #[arg(long, default_value_t = 32)]
    pub size: usize,
}

/// A text payload of `size` ASCII bytes.
pub fn payload(size: usize) -> String {
    "0123456789abcdef".chars().cycle().take(size).collect()
}

/// What one socket did in an echo loop.
#[derive(Default)]
pub struct EchoStats {
    pub messages: u64,
    pub errors: u64,
    pub latency: Latency,
}

/// Sends `text` and awaits the reply until `deadline`. With `pace`, starts a round trip every
/// `pace` (or right after the previous reply when it came late) and records as a paced client.
pub async fn echo_loop(ws: &mut Ws, text: &str, deadline: Instant, pace: Option<Duration>) -> EchoStats {
    let mut stats = EchoStats::default();
    let mut next_send = Instant::now();
    while Instant::now() < deadline {
        if let Some(pace) = pace {
            tokio::time::sleep_until(next_send).await;
            next_send += pace;
        }
        let started = Instant::now();
        if ws.send(Message::text(text)).await.is_err() {
            stats.errors += 1;
            break;
        }
        match next_text(ws, Duration::from_secs(30)).await {
            Ok(reply) if reply.starts_with("You wrote: ") => {
                match pace {
                    Some(pace) => stats.latency.record_paced(started.elapsed(), pace),
                    None => stats.latency.record(started.elapsed()),
                }
                stats.messages += 1;
            }
            Ok(_) => stats.errors += 1,
            Err(_) => {
                stats.errors += 1;
                break;
            }
        }
        if pace.is_some() && next_send < Instant::now() {
            next_send = Instant::now();
        }
    }
    stats
}

pub async fn run(args: EchoArgs) -> anyhow::Result<Value> {
    let token = args.target.token().await?;
    let text: Arc<str> = payload(args.size).into();
    let gate = Arc::new(Barrier::new(args.connections + 1));
    let mut tasks = Vec::with_capacity(args.connections);
    for _ in 0..args.connections {
        let (target, path, token) = (args.target.clone(), args.path.clone(), token.clone());
        let (gate, text) = (gate.clone(), text.clone());
        let duration = secs(args.duration);
        tasks.push(tokio::spawn(async move {
            let ws = target.ws_welcomed(&path, token.as_deref()).await;
            // Everyone connected: all sockets start (and stop) together.
            gate.wait().await;
            let deadline = Instant::now() + duration;
            let mut ws = ws?;
            Ok::<_, anyhow::Error>(echo_loop(&mut ws, &text, deadline, None).await)
        }));
    }
    gate.wait().await;
    let started = Instant::now();
    let mut total = EchoStats::default();
    let mut failed = 0;
    for task in tasks {
        match task.await? {
            Ok(stats) => {
                total.messages += stats.messages;
                total.errors += stats.errors;
                total.latency.merge(&stats.latency);
            }
            Err(_) => failed += 1,
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    if total.messages == 0 {
        bail!("no echo reply at all ({failed} sockets failed to open)");
    }
    Ok(json!({
        "connections": args.connections,
        "failed_connections": failed,
        "duration_s": round1(elapsed),
        "messages": total.messages,
        "msgs_per_s": round1(total.messages as f64 / elapsed),
        "p50_ms": total.latency.p50_ms(),
        "p99_ms": total.latency.p99_ms(),
        "max_ms": total.latency.max_ms(),
        "errors": total.errors,
    }))
}
