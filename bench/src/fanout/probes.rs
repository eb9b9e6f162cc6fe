//! What the servers spend over the measured window: their CPU time from /proc, and the commands
//! Redis processed (a cluster's fan-out goes through it).

use anyhow::{bail, Context};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// CPU seconds (utime + stime) process `pid` used so far.
pub(crate) fn cpu_seconds(pid: u32) -> anyhow::Result<f64> {
    let path = format!("/proc/{pid}/stat");
    let stat = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    // After the parenthesised command name, utime and stime are the 12th and 13th fields.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let ticks: Vec<u64> = rest.split_whitespace().skip(11).take(2).filter_map(|f| f.parse().ok()).collect();
    if ticks.len() != 2 {
        bail!("{path}: no utime and stime");
    }
    // USER_HZ is 100 on Linux.
    Ok(ticks.iter().sum::<u64>() as f64 / 100.0)
}

/// CPU seconds of each process in `pids`.
pub(crate) fn cpu_of(pids: &[u32]) -> anyhow::Result<Vec<f64>> {
    pids.iter().map(|&pid| cpu_seconds(pid)).collect()
}

/// Redis's command counters: the total, and the calls of each command.
#[derive(Default)]
pub(super) struct RedisCounts {
    pub(super) total: u64,
    pub(super) calls: BTreeMap<String, u64>,
}

impl RedisCounts {
    pub(super) async fn read(addr: SocketAddr) -> anyhow::Result<RedisCounts> {
        let stream =
            TcpStream::connect(addr).await.with_context(|| format!("connecting to Redis at {addr}"))?;
        let mut conn = BufReader::new(stream);
        let stats = info(&mut conn, "stats").await?;
        let commands = info(&mut conn, "commandstats").await?;
        let total =
            field(&stats, "total_commands_processed").context("INFO stats: no total_commands_processed")?;
        // Lines like `cmdstat_publish:calls=12,usec=...`.
        let calls = commands
            .lines()
            .filter_map(|line| {
                let (name, rest) = line.strip_prefix("cmdstat_")?.split_once(':')?;
                let calls = rest.strip_prefix("calls=")?.split(',').next()?.parse().ok()?;
                Some((name.to_owned(), calls))
            })
            .collect();
        Ok(RedisCounts { total, calls })
    }

    /// The commands processed since `before`, leaving out our own INFO calls, and the calls of
    /// each command that was called meanwhile.
    pub(super) fn since(&self, before: &RedisCounts) -> (u64, BTreeMap<String, u64>) {
        let mut calls: BTreeMap<String, u64> = self
            .calls
            .iter()
            .map(|(name, &n)| (name.clone(), n.saturating_sub(before.calls.get(name).copied().unwrap_or(0))))
            .filter(|&(_, n)| n > 0)
            .collect();
        let ours = calls.remove("info").unwrap_or(0);
        (self.total.saturating_sub(before.total).saturating_sub(ours), calls)
    }
}

fn field(info: &str, name: &str) -> Option<u64> {
    info.lines().find_map(|line| line.strip_prefix(name)?.strip_prefix(':')?.trim().parse().ok())
}

/// `INFO <section>`, spoken in RESP.
async fn info(conn: &mut BufReader<TcpStream>, section: &str) -> anyhow::Result<String> {
    let request = format!("*2\r\n$4\r\nINFO\r\n${}\r\n{section}\r\n", section.len());
    conn.get_mut().write_all(request.as_bytes()).await?;
    let mut header = String::new();
    conn.read_line(&mut header).await?;
    let Some(len) = header.strip_prefix('$').and_then(|n| n.trim().parse::<usize>().ok()) else {
        bail!("Redis answered INFO with {}", header.trim());
    };
    let mut body = vec![0; len + 2];
    conn.read_exact(&mut body).await?;
    body.truncate(len);
    Ok(String::from_utf8_lossy(&body).into_owned())
}
