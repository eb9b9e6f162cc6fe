//! Workload 5, idle authenticated sockets: the server's resident memory (VmRSS of `--pid`)
//! before and after opening `--sockets` sockets that each received their welcome frame.

use crate::common::{bounded, round1, Target};
use anyhow::{bail, Context};
use clap::Args;
use serde_json::{json, Value};
use std::time::Duration;

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
    /// Sockets being opened at a time
    #[arg(long, default_value_t = 50)]
    pub concurrency: usize,
    /// Milliseconds to let the server settle before each reading
    #[arg(long, default_value_t = 2000)]
    pub settle_ms: u64,
}

/// VmRSS of `pid`, in KiB.
pub fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).context("no VmRSS line")?;
    line.split_whitespace().nth(1).context("empty VmRSS line")?.parse().context("VmRSS is not a number")
}

pub async fn run(args: IdleArgs) -> anyhow::Result<Value> {
    let token = args.target.token().await?;
    let settle = Duration::from_millis(args.settle_ms);
    tokio::time::sleep(settle).await;
    let before = rss_kib(args.pid)?;
    let results =
        bounded(args.sockets, args.concurrency, |_| args.target.ws_welcomed(&args.path, token.as_deref()))
            .await;
    let failed = results.iter().filter(|r| r.is_err()).count();
    let sockets: Vec<_> = results.into_iter().filter_map(Result::ok).collect();
    if sockets.is_empty() {
        bail!("no socket opened");
    }
    tokio::time::sleep(settle).await;
    let after = rss_kib(args.pid)?;
    let opened = sockets.len();
    drop(sockets);
    Ok(json!({
        "sockets": opened,
        "failed": failed,
        "rss_before_kib": before,
        "rss_after_kib": after,
        "kib_per_socket": round1(after.saturating_sub(before) as f64 / opened as f64),
    }))
}
