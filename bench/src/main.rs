//! wsguard-bench: the load generator behind `scripts/bench.sh`. Each workload subcommand runs
//! against one server and prints one JSON line of results; `report` turns the collected lines into
//! the markdown table of the benchmark report.

mod centrifugo;
mod common;
mod echo;
mod emulated;
mod fanout;
mod handshake;
mod http;
mod idle;
mod issuers;
mod login_storm;
mod proxy;
mod recovery;
mod report;
mod senders;
mod soak;
mod users_me;

use clap::{Parser, Subcommand};
use serde_json::{json, Value};

#[derive(Parser)]
#[command(
    name = "wsguard-bench",
    about = "Load generator comparing wsguard, the FastAPI baseline and a bare WebSocket echo server"
)]
struct Cli {
    /// Name of the system under test, copied into the JSON line
    #[arg(long, global = true, default_value = "wsguard")]
    system: String,
    /// Round number, copied into the JSON line
    #[arg(long, global = true, default_value_t = 1)]
    round: u32,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// WebSocket echo: messages/s and latency of back-to-back round trips
    Echo(echo::EchoArgs),
    /// Authenticated WebSocket handshakes per second
    Handshake(handshake::HandshakeArgs),
    /// Handshakes per second with wsguard's own token, a trusted issuer's HS256 token and a JWKS
    /// issuer's RS256 token, in turns of one run
    IssuerHandshake(issuers::IssuersArgs),
    /// GET /users/me requests per second over keep-alive connections
    UsersMe(users_me::UsersMeArgs),
    /// POST /token logins per second, and what they do to other sockets' echo latency
    LoginStorm(login_storm::LoginStormArgs),
    /// Server memory per idle authenticated socket
    Idle(idle::IdleArgs),
    /// Fan-out to the members of channels (wsguard /connect, chat rooms, or bare-broadcast):
    /// deliveries/s, latency to the first and last member and to the ack, server CPU per delivery
    Fanout(fanout::FanoutArgs),
    /// Emulated commands (POST /emulation) per second and their latency to the reply on the
    /// stream, on one node or across two
    Emulation(emulated::commands::EmulationArgs),
    /// Recovery: a subscriber away while publications are made comes back with `since`: time to
    /// the last missed one
    Recovery(recovery::RecoveryArgs),
    /// One sender's acknowledged publications per second: numbered, unnumbered, chat room; or
    /// with --senders N, N senders on channels of their own against one alone
    PublishRate(recovery::PublishRateArgs),
    /// The application's proxies: subscribes through the subscribe proxy beside a static rule,
    /// /connect handshakes admitted by the connect proxy beside a token's
    Proxy(proxy::ProxyArgs),
    /// Soak: thousands of churning chat sockets, expiring and refreshed tokens, publications and
    /// wrong logins for a long run; then every acked publication delivered, memory settled
    Soak(soak::SoakArgs),
    /// Time one argon2id hash with wsguard's parameters (m=19456 KiB, t=2, p=1)
    HashTime {
        #[arg(long, default_value_t = 20)]
        samples: usize,
    },
    /// Render the JSON lines of a run as the markdown results table
    Report(report::ReportArgs),
}

impl Command {
    fn name(&self) -> &'static str {
        match self {
            Command::Echo(_) => "echo",
            Command::Handshake(_) => "handshake",
            Command::IssuerHandshake(_) => "issuer-handshake",
            Command::UsersMe(_) => "users-me",
            Command::LoginStorm(_) => "login-storm",
            Command::Idle(_) => "idle",
            Command::Fanout(_) => "fanout",
            Command::Emulation(_) => "emulation",
            Command::Recovery(_) => "recovery",
            Command::PublishRate(_) => "publish-rate",
            Command::Proxy(_) => "proxy",
            Command::Soak(_) => "soak",
            Command::HashTime { .. } => "hash-time",
            Command::Report(_) => "report",
        }
    }

    /// What names the line's report row besides the workload, kept on a failed run's line too.
    fn labels(&self) -> Value {
        match self {
            Command::Fanout(args) => {
                json!({
                    "case": args.case,
                    "nodes": 1 + args.nodes.len(),
                    "protocol": args.protocol.name(),
                    "transport": args.transport.name(),
                })
            }
            Command::Emulation(args) => {
                json!({"case": args.case, "nodes": args.nodes(), "transport": args.transport.name()})
            }
            Command::Handshake(args) => json!({"protocol": args.protocol.name(), "path": args.path()}),
            Command::Idle(args) => json!({
                "subscribed": args.subscribe.is_some(),
                "protocol": args.subscribe.is_some().then(|| args.protocol.name()),
                "transport": args.subscribe.is_some().then(|| args.transport.name()),
            }),
            _ => json!({}),
        }
    }
}

async fn run(command: Command) -> anyhow::Result<Value> {
    match command {
        Command::Echo(args) => echo::run(args).await,
        Command::Handshake(args) => handshake::run(args).await,
        Command::IssuerHandshake(args) => issuers::run(args).await,
        Command::UsersMe(args) => users_me::run(args).await,
        Command::LoginStorm(args) => login_storm::run(args).await,
        Command::Idle(args) => idle::run(args).await,
        Command::Fanout(args) => fanout::run(args).await,
        Command::Emulation(args) => emulated::commands::run(args).await,
        Command::Recovery(args) => recovery::run(args).await,
        Command::PublishRate(args) => recovery::publish_rate(args).await,
        Command::Proxy(args) => proxy::run(args).await,
        Command::Soak(args) => soak::run(args).await,
        Command::HashTime { samples } => {
            let (median, fastest) = login_storm::argon2_hash_time(samples);
            Ok(json!({
                "argon2id_hash_ms": median.as_secs_f64() * 1000.0,
                "argon2id_fastest_ms": fastest.as_secs_f64() * 1000.0,
            }))
        }
        Command::Report(_) => unreachable!("handled before the runtime starts"),
    }
}

/// CPU time (user + system) this process used so far, from /proc/self/stat.
fn cpu_seconds() -> f64 {
    // Fields after the parenthesised command name: utime and stime are the 12th and 13th.
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let ticks: u64 = rest.split_whitespace().skip(11).take(2).filter_map(|f| f.parse::<u64>().ok()).sum();
    // USER_HZ is 100 on Linux.
    ticks as f64 / 100.0
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    if let Command::Report(args) = &cli.command {
        return match report::run(args) {
            Ok(()) => std::process::ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("wsguard-bench report: {e:#}");
                std::process::ExitCode::FAILURE
            }
        };
    }
    // Thousands of sockets: lift the soft descriptor limit to the hard one.
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    let workload = cli.command.name();
    let labels = cli.command.labels();
    let runtime =
        tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("building the tokio runtime");
    let (cpu_before, wall) = (cpu_seconds(), std::time::Instant::now());
    let result = runtime.block_on(run(cli.command));
    let generator_cpu = cpu_seconds() - cpu_before;
    let wall = wall.elapsed().as_secs_f64();
    let (mut line, code) = match result {
        Ok(value) => (value, std::process::ExitCode::SUCCESS),
        Err(e) => (json!({"error": format!("{e:#}")}), std::process::ExitCode::FAILURE),
    };
    // The generator shares the machine with the servers: show how much of it it took.
    let head = json!({
        "system": cli.system,
        "round": cli.round,
        "workload": workload,
        "generator_cpu_pct": (generator_cpu / wall * 100.0).round(),
    });
    if let (Value::Object(out), Value::Object(head), Value::Object(labels)) = (&mut line, head, labels) {
        for (k, v) in head {
            out.insert(k, v);
        }
        for (k, v) in labels {
            out.entry(k).or_insert(v);
        }
    }
    println!("{line}");
    // Don't wait for sockets still closing in the background.
    runtime.shutdown_background();
    code
}
