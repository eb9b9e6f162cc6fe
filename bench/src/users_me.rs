//! Workload 3, `GET /users/me`: `--connections` keep-alive HTTP/1.1 connections, each sending
//! one request at a time with the bearer token, for `--duration` seconds.

use crate::common::{round1, secs, Latency, Target};
use crate::http::HttpConn;
use anyhow::{bail, Context};
use clap::Args;
use serde_json::{json, Value};
use std::sync::Arc;
use tokio::sync::Barrier;
use tokio::time::Instant;

#[derive(Args, Debug)]
pub struct UsersMeArgs {
    #[command(flatten)]
    pub target: Target,
    /// Concurrent keep-alive connections
    #[arg(long, default_value_t = 50)]
    pub connections: usize,
    /// Seconds of measurement
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
}

#[derive(Default)]
struct Stats {
    ok: u64,
    not_ok: u64,
    errors: u64,
    latency: Latency,
}

pub async fn run(args: UsersMeArgs) -> anyhow::Result<Value> {
    let token: Arc<str> =
        args.target.token().await?.context("GET /users/me needs a token: drop --no-auth")?.into();
    let gate = Arc::new(Barrier::new(args.connections + 1));
    let mut tasks = Vec::with_capacity(args.connections);
    for _ in 0..args.connections {
        let (addr, token, gate) = (args.target.addr, token.clone(), gate.clone());
        let duration = secs(args.duration);
        tasks.push(tokio::spawn(async move {
            let conn = HttpConn::connect(addr).await;
            gate.wait().await;
            let deadline = Instant::now() + duration;
            let mut conn = conn?;
            let mut stats = Stats::default();
            while Instant::now() < deadline {
                let started = Instant::now();
                match conn.get("/users/me", &token).await {
                    Ok((status, _, _)) if status == 200 => {
                        stats.latency.record(started.elapsed());
                        stats.ok += 1;
                    }
                    Ok(_) => stats.not_ok += 1,
                    Err(_) => {
                        stats.errors += 1;
                        conn = HttpConn::connect(addr).await?;
                    }
                }
            }
            Ok::<_, anyhow::Error>(stats)
        }));
    }
    gate.wait().await;
    let started = Instant::now();
    let mut total = Stats::default();
    let mut failed = 0;
    for task in tasks {
        match task.await? {
            Ok(stats) => {
                total.ok += stats.ok;
                total.not_ok += stats.not_ok;
                total.errors += stats.errors;
                total.latency.merge(&stats.latency);
            }
            Err(_) => failed += 1,
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    if total.ok == 0 {
        bail!("no 200 from GET /users/me ({} other statuses, {} errors)", total.not_ok, total.errors);
    }
    Ok(json!({
        "connections": args.connections,
        "failed_connections": failed,
        "duration_s": round1(elapsed),
        "requests": total.ok,
        "requests_per_s": round1(total.ok as f64 / elapsed),
        "p50_ms": total.latency.p50_ms(),
        "p99_ms": total.latency.p99_ms(),
        "max_ms": total.latency.max_ms(),
        "non_200": total.not_ok,
        "errors": total.errors,
    }))
}
