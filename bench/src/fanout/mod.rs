//! Workload `fanout`: `--members` sockets follow `--channels` channels (members split evenly), the
//! first member of each channel publishes to it, and every member (the publisher included)
//! receives every publication of its channel. Paced (`--rate`, publications/s over all channels) or
//! at saturation (no `--rate`: at most `--window` publications outstanding, one being outstanding
//! until its ack and every member's copy arrived). Measures deliveries/s, send-to-receipt
//! latency to the first and to the last member and to the ack, what was lost, and, with `--pid`,
//! the server's CPU time per delivery over the measured window (first send to the last delivery).
//!
//! `--protocol` picks the server: wsguard's channels on `/connect` (the default), the same
//! channels through Centrifugo's client protocol on `/connection/websocket`, wsguard's chat
//! rooms on `/chat/ws`, or the bare broadcast server (`--no-auth`; the URL path names the
//! channel, and the sender's own copy of a publication is its ack), so that wsguard and the
//! ceiling run the very same workload.
//!
//! With `--http-publish`, the publications are made over HTTP instead (`api.rs`): wsguard's server
//! API (`POST /api/publish` with `--api-key-file`) or bare-broadcast's `POST /publish/<channel>`,
//! on `--http-connections` keep-alive connections, paced; every member only receives. With
//! `--channels` equal to `--members`, each socket follows a channel of its own: the notification
//! workload. The line adds the calls' own latency and how many were answered 200.
//!
//! With `--node` (repeatable), the members of each channel are spread over several nodes of one
//! cluster, alternating from node 0 (`--addr`), where every publisher is: publications reach the
//! other nodes through the broker. `--redis` counts the commands Redis processed meanwhile.

mod api;
mod board;
mod drive;
mod join;
mod probes;
mod protocol;
mod summary;

use crate::common::{round1, secs, Target};
use crate::emulated::Transport;
use anyhow::bail;
use board::Board;
use clap::Args;
use drive::Plan;
pub(crate) use probes::{cpu_of, cpu_seconds};
pub(crate) use protocol::Protocol;
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::time::Instant;

/// At most this many publications are tracked (a few tens of MB of board).
const MAX_SLOTS: usize = 1 << 20;

#[derive(Args, Debug, Clone)]
pub struct FanoutArgs {
    #[command(flatten)]
    pub target: Target,
    /// Another node of the same cluster (repeatable): each channel's members alternate between
    /// --addr and these nodes, the publishers stay on --addr. The token from --addr must be valid
    /// on every node
    #[arg(long = "node", value_name = "HOST:PORT")]
    pub nodes: Vec<SocketAddr>,
    /// channel: wsguard /connect; centrifugo: wsguard /connection/websocket (Centrifugo's client
    /// protocol); chat: wsguard /chat/ws rooms; bare: the bare broadcast server
    #[arg(long, value_enum, default_value = "channel")]
    pub protocol: Protocol,
    /// With --protocol centrifugo: how the members connect; the publishers stay on
    /// /connection/websocket, so that publications come in the same way whatever the members' transport
    #[arg(long, value_enum, default_value = "websocket")]
    pub transport: Transport,
    /// Channel (a room with --protocol chat); with --channels N > 1, channels <name>-0 .. <name>-(N-1)
    #[arg(long, alias = "room", default_value = "bench:fan")]
    pub channel: String,
    /// Sockets in all, split evenly over the channels
    #[arg(long, default_value_t = 1000)]
    pub members: usize,
    /// Channels; the first member of each publishes to it
    #[arg(long, default_value_t = 1)]
    pub channels: usize,
    /// Publications per second, all channels together. Without it, publications go as fast as
    /// --window allows
    #[arg(long)]
    pub rate: Option<f64>,
    /// At saturation: publications outstanding at most (sent, and not yet acked and received by
    /// every member)
    #[arg(long, default_value_t = 16)]
    pub window: usize,
    /// Seconds of sending
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Seconds to wait, after the last send, for deliveries still under way
    #[arg(long, default_value_t = 5.0)]
    pub drain: f64,
    /// Sockets connecting and joining at a time
    #[arg(long, default_value_t = 50)]
    pub concurrency: usize,
    /// Seconds a join may take to be answered
    #[arg(long, default_value_t = 10.0)]
    pub join_timeout: f64,
    /// A server process whose CPU time to measure (repeatable: one per node, in node order)
    #[arg(long = "pid")]
    pub pids: Vec<u32>,
    /// Redis (HOST:PORT) whose processed commands to count over the measured window
    #[arg(long)]
    pub redis: Option<SocketAddr>,
    /// A name for this case, copied into the line (the report's rows)
    #[arg(long)]
    pub case: Option<String>,
    /// Publish over HTTP (wsguard: POST /api/publish; bare: POST /publish/<channel>), paced
    /// (--rate); the members only receive
    #[arg(long)]
    pub http_publish: bool,
    /// With --http-publish on wsguard: a file holding an API key with the publish scope
    #[arg(long)]
    pub api_key_file: Option<std::path::PathBuf>,
    /// With --http-publish: keep-alive connections making the calls, one call at a time each
    #[arg(long, default_value_t = 32)]
    pub http_connections: usize,
}

impl FanoutArgs {
    fn check(&self) -> anyhow::Result<()> {
        if self.channels == 0 || self.members < self.channels || !self.members.is_multiple_of(self.channels) {
            bail!("--members must be a positive multiple of --channels");
        }
        if self.rate.is_some_and(|r| r.is_nan() || r <= 0.0) || self.window == 0 {
            bail!("--rate and --window must be positive");
        }
        if (self.protocol == Protocol::Bare) != self.target.no_auth {
            bail!("--protocol bare goes with --no-auth, and only it");
        }
        if self.transport.is_stream() && (self.protocol != Protocol::Centrifugo || self.http_publish) {
            bail!("--transport http_stream or sse goes with --protocol centrifugo, without --http-publish");
        }
        if self.http_publish {
            let members_only = matches!(self.protocol, Protocol::Channel | Protocol::Bare);
            if self.rate.is_none() || !self.nodes.is_empty() || !members_only {
                bail!("--http-publish needs --rate, one node, and --protocol channel or bare");
            }
            if (self.protocol == Protocol::Channel) != self.api_key_file.is_some() {
                bail!("--http-publish on wsguard needs --api-key-file, and bare none");
            }
        }
        Ok(())
    }

    fn channel_name(&self, channel: usize) -> String {
        if self.channels == 1 {
            self.channel.clone()
        } else {
            format!("{}-{channel}", self.channel)
        }
    }

    /// Publications the board tracks.
    fn capacity(&self, members_per_channel: usize) -> usize {
        let publications = match self.rate {
            Some(rate) => rate * self.duration * 1.1,
            // Beyond what this machine delivers: 4 million deliveries/s.
            None => 4e6 * self.duration / members_per_channel as f64,
        };
        (publications as usize + self.window + 16).min(MAX_SLOTS)
    }
}

pub async fn run(args: FanoutArgs) -> anyhow::Result<Value> {
    args.check()?;
    let targets: Vec<Arc<Target>> = std::iter::once(args.target.clone())
        .chain(args.nodes.iter().map(|&addr| Target { addr, ..args.target.clone() }))
        .map(Arc::new)
        .collect();
    let nodes = targets.len();
    let per_channel = args.members / args.channels;
    let api_key: Option<Arc<str>> = match &args.api_key_file {
        Some(file) => Some(crate::soak::read_api_key(file)?.into()),
        None => None,
    };
    let members_on: Vec<usize> =
        (0..nodes).map(|n| (0..per_channel).filter(|j| j % nodes == n).count()).collect();
    let board = Arc::new(Board::new(args.capacity(per_channel), nodes, args.window));
    let args = Arc::new(args);
    let (tasks, sinks) = join::join_all(&args, &targets, &board).await?;

    let redis_before = match args.redis {
        Some(addr) => Some(probes::RedisCounts::read(addr).await?),
        None => None,
    };
    let (cpu_before, generator_before) =
        (probes::cpu_of(&args.pids)?, probes::cpu_seconds(std::process::id())?);
    let started = Instant::now();
    let channels: Vec<String> = (0..args.channels).map(|c| args.channel_name(c)).collect();
    let (sent, http) = match args.rate.filter(|_| args.http_publish) {
        Some(rate) => {
            let plan = api::HttpPlan {
                protocol: args.protocol,
                addr: args.target.addr,
                key: api_key,
                channels: Arc::new(channels),
                interval: secs(1.0 / rate),
                events: per_channel as u32 + 1,
                started,
                until: started + secs(args.duration),
                connections: args.http_connections,
            };
            let mut http = api::drive(board.clone(), plan).await;
            http.seconds = started.elapsed().as_secs_f64().max(args.duration);
            (drive::Sent { count: http.count, stalls: 0, sinks: Vec::new() }, Some(http))
        }
        None => {
            let plan = Plan {
                protocol: args.protocol,
                channels,
                interval: args.rate.map(|rate| secs(1.0 / rate)),
                stall: secs(2.0),
                events: per_channel as u32 + 1,
                until: started + secs(args.duration),
            };
            (drive::drive(sinks, board.clone(), plan).await, None)
        }
    };
    drive::drain(&board, sent.count, Instant::now() + secs(args.drain)).await;
    let wall = started.elapsed().as_secs_f64();
    let cpu_after = probes::cpu_of(&args.pids)?;
    let generator_cpu = probes::cpu_seconds(std::process::id())? - generator_before;
    let redis = match (args.redis, &redis_before) {
        (Some(addr), Some(before)) => Some(probes::RedisCounts::read(addr).await?.since(before)),
        _ => None,
    };
    tasks.iter().for_each(|t| t.abort());
    drop(sent.sinks);

    let measured = summary::Measured {
        sent: sent.count,
        stalls: sent.stalls,
        members_on,
        channels: args.channels,
        server_cpu: cpu_after.iter().zip(&cpu_before).map(|(a, b)| a - b).collect(),
        generator_cpu,
        wall,
        redis,
    };
    let mut line = summary::line(&board, &measured);
    if let Some(http) = &http {
        line["publisher"] = json!("http");
        line["http_connections"] = json!(args.http_connections);
        line["api_ok"] = json!(http.ok);
        line["api_refused"] = json!(http.refused);
        line["api_failed"] = json!(http.failed);
        line["api_error"] = json!(http.first_error);
        line["api_ok_per_s"] = json!(round1(http.ok as f64 / http.seconds));
        line["api_call_p50_ms"] = http.call.p50_ms();
        line["api_call_p99_ms"] = http.call.p99_ms();
    }
    if line["deliveries"].as_u64() == Some(0) {
        bail!("{} publications sent, none delivered", sent.count);
    }
    let head = json!({
        "protocol": args.protocol.name(),
        "transport": args.transport.name(),
        "case": args.case,
        "members": args.members,
        "channels": args.channels,
        "members_per_channel": per_channel,
        "nodes": nodes,
        "mode": if args.rate.is_some() { "paced" } else { "saturation" },
        "window": args.rate.is_none().then_some(args.window),
        "rate_offered": args.rate,
        "duration_s": round1(args.duration),
        "measured_s": round1(wall),
    });
    if nodes > 1 {
        line["node_addrs"] = json!(targets.iter().map(|t| t.addr.to_string()).collect::<Vec<_>>());
    }
    if let (Value::Object(out), Value::Object(head)) = (&mut line, head) {
        for (k, v) in head {
            out.insert(k, v);
        }
    }
    Ok(line)
}
