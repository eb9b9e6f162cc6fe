//! Workload `emulation`: emulated commands per second and their latency. `--streams` streams on
//! `--addr`, each subscribed to a channel of its own (`<--channel>-<i>`), and for each a worker
//! publishing to that channel by `POST /emulation` to `--commands-to` (another node of the same
//! cluster, which hands them through the broker to the node holding the session; by default
//! `--addr` itself), one command at a time on a keep-alive connection of its own. Latency runs
//! from sending the POST to the command's reply arriving on the stream; the POST's own time (to
//! its 204) is measured apart. With `--pid` (one per node), the servers' CPU per command.

use super::{open, post, Posts, Stream, Transport};
use crate::centrifugo;
use crate::common::{bounded, round1, secs, Latency, Target};
use crate::http::HttpConn;
use anyhow::{bail, Context};
use clap::Args;
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// Longest a command may take to be answered on its stream: past it, its worker stops.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Args, Debug)]
pub struct EmulationArgs {
    #[command(flatten)]
    pub target: Target,
    /// Where the commands are posted [default: --addr]; another node of the cluster carries them
    /// through the broker to --addr, where the streams are
    #[arg(long, value_name = "HOST:PORT")]
    pub commands_to: Option<SocketAddr>,
    /// http_stream or sse
    #[arg(long, value_enum, default_value = "http_stream")]
    pub transport: Transport,
    /// Streams, each with its worker
    #[arg(long, default_value_t = 20)]
    pub streams: usize,
    /// Seconds of commands
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Stream i publishes to <CHANNEL>-i (a namespace that keeps no history, so that what is
    /// measured is the command's way, not the store)
    #[arg(long, default_value = "bench-live:emulated")]
    pub channel: String,
    /// A server process whose CPU time to measure (repeatable: one per node)
    #[arg(long = "pid")]
    pub pids: Vec<u32>,
    /// A name for this case, copied into the line (the report's rows)
    #[arg(long)]
    pub case: Option<String>,
}

impl EmulationArgs {
    pub fn nodes(&self) -> usize {
        if self.commands_to.is_some_and(|to| to != self.target.addr) {
            2
        } else {
            1
        }
    }
}

/// What a worker did.
#[derive(Default)]
struct Done {
    commands: u64,
    errors: u64,
    first_error: Option<String>,
    /// POST to the reply on the stream, and POST to its 204.
    reply: Latency,
    post: Latency,
}

pub async fn run(args: EmulationArgs) -> anyhow::Result<Value> {
    if !args.transport.is_stream() || args.streams == 0 {
        bail!("--transport http_stream or sse, and at least one stream");
    }
    let to = args.commands_to.unwrap_or(args.target.addr);
    let token = args.target.token().await?.context("emulated connections need a token")?;
    let posts = Arc::new(Posts::new(to, None));
    let opened = bounded(args.streams, 20, |i| {
        let (args, token, posts) = (&args, &token, posts.clone());
        async move {
            let channel = format!("{}-{i}", args.channel);
            let deadline = Instant::now() + COMMAND_TIMEOUT;
            let stream = open(&args.target, args.transport, token, deadline).await?;
            let conn = HttpConn::connect(to).await?;
            let mut worker = Worker { stream, conn, channel, posts };
            // Subscribed through the node the commands go to, as everything after.
            worker
                .command(&centrifugo::subscribe_command(&worker.channel), |line| {
                    line.contains("\"subscribe\":{")
                })
                .await?;
            anyhow::Ok(worker)
        }
    })
    .await;
    let workers = opened.into_iter().collect::<anyhow::Result<Vec<_>>>()?;

    let cpu_before = crate::fanout::cpu_of(&args.pids)?;
    let started = Instant::now();
    let until = started + secs(args.duration);
    let tasks: Vec<_> = workers.into_iter().map(|w| tokio::spawn(w.run(until))).collect();
    let mut all = Done::default();
    for task in tasks {
        let done = task.await?;
        all.commands += done.commands;
        all.errors += done.errors;
        all.first_error = all.first_error.or(done.first_error);
        all.reply.merge(&done.reply);
        all.post.merge(&done.post);
    }
    let wall = started.elapsed().as_secs_f64();
    let cpu: f64 = crate::fanout::cpu_of(&args.pids)?.iter().zip(&cpu_before).map(|(a, b)| a - b).sum();
    if all.commands == 0 {
        bail!("no command answered: {}", all.first_error.unwrap_or_default());
    }
    Ok(json!({
        "case": args.case,
        "transport": args.transport.name(),
        "nodes": args.nodes(),
        "streams": args.streams,
        "duration_s": round1(args.duration),
        "measured_s": round1(wall),
        "commands": all.commands,
        "commands_per_s": round1(all.commands as f64 / wall),
        "p50_ms": all.reply.p50_ms(),
        "p99_ms": all.reply.p99_ms(),
        "max_ms": all.reply.max_ms(),
        "post_p50_ms": all.post.p50_ms(),
        "post_p99_ms": all.post.p99_ms(),
        "errors": all.errors,
        "first_error": all.first_error,
        "server_cpu_s": (!args.pids.is_empty()).then(|| (cpu * 1000.0).round() / 1000.0),
        "server_cpu_us_per_command": (!args.pids.is_empty()).then(|| round1(cpu * 1e6 / all.commands as f64)),
    }))
}

/// One stream and the connection its commands are posted on.
struct Worker {
    stream: Stream,
    conn: HttpConn,
    channel: String,
    /// For pongs, while `conn` waits on a command.
    posts: Arc<Posts>,
}

impl Worker {
    /// Publishes until `until`, one command at a time; stops at the first failure.
    async fn run(mut self, until: Instant) -> Done {
        let mut done = Done::default();
        let mut seq = 0;
        while Instant::now() < until {
            let command = centrifugo::publish_frame(&self.channel, seq);
            let began = Instant::now();
            match self.command(&command, |line| centrifugo::publish_ack(line) == Some(seq)).await {
                Ok((posted, replied)) => {
                    done.post.record(posted - began);
                    done.reply.record(replied - began);
                    done.commands += 1;
                }
                Err(e) => {
                    done.errors += 1;
                    done.first_error = Some(format!("{e:#}"));
                    break;
                }
            }
            seq += 1;
        }
        done
    }

    /// Posts `command` and reads the stream until `is_reply` says a line is its reply: when the
    /// POST was answered and when the reply came.
    async fn command(
        &mut self,
        command: &str,
        is_reply: impl Fn(&str) -> bool,
    ) -> anyhow::Result<(Instant, Instant)> {
        let Worker { stream: Stream { id, lines }, conn, posts, .. } = self;
        let id = &*id;
        let posting = async {
            post(conn, id, command).await?;
            anyhow::Ok(Instant::now())
        };
        let reply = async {
            loop {
                let line = lines.next().await?.context("the stream ended")?;
                if is_reply(line) {
                    return anyhow::Ok(Instant::now());
                }
                if line == centrifugo::PING {
                    posts.pong(id).await;
                } else if line.contains("\"error\":") {
                    bail!("error reply: {line}");
                }
                // Else a publication pushed back to this subscriber, or another push.
            }
        };
        let both = async { tokio::try_join!(posting, reply) };
        tokio::time::timeout(COMMAND_TIMEOUT, both).await.context("no reply within 5 s")?
    }
}
