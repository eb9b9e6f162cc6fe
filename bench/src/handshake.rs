//! Workload 2, authenticated handshakes: `--workers` loops, each opening a `/secured-ws` socket
//! with the bearer header, reading the welcome frame and closing (close handshake included), for
//! `--duration` seconds. Latency is connect to welcome; the rate counts whole cycles.

use crate::common::{round1, secs, Latency, Target};
use anyhow::bail;
use clap::Args;
use futures_util::StreamExt;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Barrier;
use tokio::time::Instant;

#[derive(Args, Debug)]
pub struct HandshakeArgs {
    #[command(flatten)]
    pub target: Target,
    /// WebSocket path
    #[arg(long, default_value = "/secured-ws")]
    pub path: String,
    /// Concurrent connecting loops
    #[arg(long, default_value_t = 20)]
    pub workers: usize,
    /// Seconds of measurement
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
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

/// `workers` loops opening `path` with `token` (bearer header), reading the welcome and closing,
/// for `duration` seconds.
pub async fn cycles(
    target: &Target,
    path: &str,
    token: Option<&str>,
    workers: usize,
    duration: f64,
) -> anyhow::Result<Cycles> {
    let gate = Arc::new(Barrier::new(workers + 1));
    let mut tasks = Vec::with_capacity(workers);
    for _ in 0..workers {
        let (target, path, token, gate) =
            (target.clone(), path.to_owned(), token.map(str::to_owned), gate.clone());
        let duration = secs(duration);
        tasks.push(tokio::spawn(async move {
            gate.wait().await;
            let deadline = Instant::now() + duration;
            let mut stats = Cycles::default();
            while Instant::now() < deadline {
                let started = Instant::now();
                match target.ws_welcomed(&path, token.as_deref()).await {
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
    let token = args.target.token().await?;
    let total = cycles(&args.target, &args.path, token.as_deref(), args.workers, args.duration).await?;
    if total.handshakes == 0 {
        bail!("no handshake succeeded ({} errors)", total.errors);
    }
    Ok(json!({
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
