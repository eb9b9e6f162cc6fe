//! Workload 4, login storm: `--workers` loops posting `POST /token` as fast as answered while
//! `--sockets` echo sockets keep a steady pace; the same sockets' latency without the storm is
//! measured first, so the report can show what the storm does to everyone else.
//!
//! Also measures one argon2id hash (wsguard's parameters: m=19456 KiB, t=2, p=1) on this machine,
//! for the logins/s target: 90% of cores / hash time.

use crate::common::{round1, secs, Latency, Target, Ws};
use crate::echo::{echo_loop, payload, EchoStats};
use crate::http::HttpConn;
use anyhow::{bail, Context};
use argon2::password_hash::{PasswordHasher, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use clap::Args;
use serde_json::{json, Value};
use std::time::Duration;
use tokio::time::Instant;

#[derive(Args, Debug)]
pub struct LoginStormArgs {
    #[command(flatten)]
    pub target: Target,
    /// WebSocket path of the echo sockets
    #[arg(long, default_value = "/secured-ws")]
    pub path: String,
    /// Concurrent login loops
    #[arg(long, default_value_t = 12)]
    pub workers: usize,
    /// Echo sockets whose latency is watched
    #[arg(long, default_value_t = 10)]
    pub sockets: usize,
    /// Each echo socket sends one frame every this many milliseconds
    #[arg(long, default_value_t = 20)]
    pub echo_interval_ms: u64,
    /// Seconds of echo without the storm
    #[arg(long, default_value_t = 5.0)]
    pub idle_duration: f64,
    /// Seconds of storm
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// argon2id hashes timed (the median is reported)
    #[arg(long, default_value_t = 20)]
    pub hash_samples: usize,
}

#[derive(Default)]
struct Logins {
    ok: u64,
    unavailable: u64,
    other: u64,
    errors: u64,
    latency: Latency,
}

/// Hashing this long before measuring: the first hashes of a process run slower (here ~25 ms
/// against ~15 ms) until its 19 MiB working memory settles (transparent huge pages); a server's
/// hashing threads are long past that.
const HASH_WARM_UP: Duration = Duration::from_millis(800);

/// Median and fastest wall time of one argon2id hash with wsguard's parameters, on a thread of
/// its own (as wsguard's hashing threads), after [`HASH_WARM_UP`] of unmeasured hashing.
pub fn argon2_hash_time(samples: usize) -> (Duration, Duration) {
    let measure = move || {
        let params = Params::new(19 * 1024, 2, 1, None).expect("static argon2 parameters");
        let argon2 = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
        let salt = SaltString::encode_b64(b"wsguard-bench-salt").expect("static salt");
        let hash = || {
            let started = std::time::Instant::now();
            argon2.hash_password(b"secret", &salt).expect("argon2 with valid parameters");
            started.elapsed()
        };
        let warm_up = std::time::Instant::now();
        while warm_up.elapsed() < HASH_WARM_UP {
            hash();
        }
        let mut times: Vec<Duration> = (0..samples.max(1)).map(|_| hash()).collect();
        times.sort();
        (times[times.len() / 2], times[0])
    };
    std::thread::spawn(measure).join().expect("the hashing thread does not panic")
}

/// Echoes on every socket at `pace` until `deadline`; all sockets' latencies merged.
async fn watch(sockets: &mut [Ws], deadline: Instant, pace: Duration) -> EchoStats {
    let text = payload(32);
    let loops = sockets.iter_mut().map(|ws| echo_loop(ws, &text, deadline, Some(pace)));
    let mut total = EchoStats::default();
    for stats in futures_util::future::join_all(loops).await {
        total.messages += stats.messages;
        total.errors += stats.errors;
        total.latency.merge(&stats.latency);
    }
    total
}

async fn login_loop(target: &Target, deadline: Instant) -> anyhow::Result<Logins> {
    let mut conn = HttpConn::connect(target.addr).await?;
    let mut logins = Logins::default();
    while Instant::now() < deadline {
        let started = Instant::now();
        match conn.login(&target.username, &target.password).await {
            Ok((status, _, _)) if status == 200 => {
                logins.latency.record(started.elapsed());
                logins.ok += 1;
            }
            Ok((status, headers, _)) if status == 503 => {
                // wsguard's hash queue is full: not a login. Back off as told (at most 1 s).
                logins.unavailable += 1;
                let after = headers
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse::<f64>().ok())
                    .unwrap_or(0.1);
                tokio::time::sleep(secs(after.min(1.0))).await;
            }
            Ok(_) => logins.other += 1,
            Err(_) => {
                logins.errors += 1;
                conn = HttpConn::connect(target.addr).await?;
            }
        }
    }
    Ok(logins)
}

pub async fn run(args: LoginStormArgs) -> anyhow::Result<Value> {
    let samples = args.hash_samples;
    // On a thread of the blocking pool, as the server hashes.
    let (hash_time, fastest) = tokio::task::spawn_blocking(move || argon2_hash_time(samples)).await?;
    let token = args.target.token().await?.context("the login storm needs a login")?;
    let mut sockets = Vec::with_capacity(args.sockets);
    for _ in 0..args.sockets {
        sockets.push(args.target.ws_welcomed(&args.path, Some(&token)).await?);
    }
    let pace = Duration::from_millis(args.echo_interval_ms.max(1));

    let idle = watch(&mut sockets, Instant::now() + secs(args.idle_duration), pace).await;

    let started = Instant::now();
    let deadline = started + secs(args.duration);
    let workers: Vec<_> = (0..args.workers)
        .map(|_| {
            let target = args.target.clone();
            tokio::spawn(async move { login_loop(&target, deadline).await })
        })
        .collect();
    let storm = watch(&mut sockets, deadline, pace).await;
    let mut logins = Logins::default();
    for worker in workers {
        let l = worker.await??;
        logins.ok += l.ok;
        logins.unavailable += l.unavailable;
        logins.other += l.other;
        logins.errors += l.errors;
        logins.latency.merge(&l.latency);
    }
    // Workers finish their last request after the deadline: count the time they took.
    let elapsed = started.elapsed().as_secs_f64();
    if logins.ok == 0 {
        bail!(
            "no successful login ({} x 503, {} other statuses, {} errors)",
            logins.unavailable,
            logins.other,
            logins.errors
        );
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let hash_s = hash_time.as_secs_f64();
    let ratio = match (storm.latency.p99_ms().as_f64(), idle.latency.p99_ms().as_f64()) {
        (Some(s), Some(i)) if i > 0.0 => json!((s / i * 100.0).round() / 100.0),
        _ => Value::Null,
    };
    Ok(json!({
        "workers": args.workers,
        "sockets": args.sockets,
        "echo_interval_ms": args.echo_interval_ms,
        "duration_s": round1(elapsed),
        "logins": logins.ok,
        "logins_per_s": round1(logins.ok as f64 / elapsed),
        "login_p50_ms": logins.latency.p50_ms(),
        "login_p99_ms": logins.latency.p99_ms(),
        "status_503": logins.unavailable,
        "other_status": logins.other,
        "errors": logins.errors,
        "echo_idle_p50_ms": idle.latency.p50_ms(),
        "echo_idle_p99_ms": idle.latency.p99_ms(),
        "echo_storm_p50_ms": storm.latency.p50_ms(),
        "echo_storm_p99_ms": storm.latency.p99_ms(),
        "echo_storm_max_ms": storm.latency.max_ms(),
        "echo_p99_storm_over_idle": ratio,
        "echo_errors": idle.errors + storm.errors,
        "cores": cores,
        "argon2id_hash_ms": (hash_s * 10000.0).round() / 10.0,
        "argon2id_fastest_ms": (fastest.as_secs_f64() * 10000.0).round() / 10.0,
        "target_logins_per_s": round1(0.9 * cores as f64 / hash_s),
    }))
}
