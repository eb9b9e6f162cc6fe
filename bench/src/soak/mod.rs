//! Soak: one wsguard server under a long, mixed load that keeps changing, then the checks that
//! nothing was lost and nothing piled up.
//!
//! - `--sockets` chat sockets on `/chat/ws?token=`, spread over `--rooms` rooms. One per room is
//!   an **observer**: connected first, never churned, refreshing in band; it records the id of
//!   every `message` frame of its room. The others are **members** in slots: a slot connects,
//!   lives until it is churned or closed by the server, and connects again.
//! - **History first**: `--prefill` messages go into each room before the members connect (acked
//!   and checked like the others), so every join's `history` is full-sized from the start (see
//!   [`prefill`]).
//! - **Churn**: `--churn` members a second are closed by the client (1000); their slots reconnect.
//! - **Tokens** come from real logins (`POST /token`): a pool of `--logins-per-user` logins per
//!   user, each refreshed with `POST /refresh` (keeping the rotated refresh token) every third of
//!   the access lifetime, one login replaced by a new password login every `--login-every`
//!   seconds. The server runs with a short access lifetime, so every socket gets `expiring`: a
//!   member answers with an in-band `refresh` (the freshest pool token of its user; expects
//!   `refreshed`), except a `--no-refresh-share` of connections, which do not and must be closed
//!   with 4001 (counted; the slot reconnects).
//! - **Publications**: `--rate` chat `send`s a second, each from a random live member; every
//!   `ack` id is recorded for its room. At the end every acked id must have reached its room's
//!   observer exactly once. API publications are not there yet: see [`api_publications`].
//! - **Wrong logins**: `--wrong-logins-per-sec` `POST /token` with wrong passwords from another
//!   loopback address (`--wrong-login-from`, so the throttle counts them apart from the real
//!   logins); 401 and 429 are the expected answers, counted by status.
//! - **Memory**: the server's VmRSS (`--pid`) every `--rss-every` seconds. Settled: the median of
//!   the samples in the second fifth of the run; end: at the end of the run, under full load;
//!   after close: once every socket is closed and `--settle` seconds passed. The check:
//!   end <= 1.10 x settled.
//!
//! Bounded: the run lasts `--duration` seconds after the ramp-up (itself bounded), then at most
//! `--drain` seconds of draining and a few seconds of closing; loopback addresses only.

mod dispatch;
mod logins;
mod memory;
mod sockets;

use dispatch::*;
use logins::*;
use memory::*;
use sockets::*;

use crate::common::{bounded, round1, secs, Target};
use crate::http::HttpConn;
use crate::idle::rss_kib;
use anyhow::{ensure, Context};
use clap::Args;

use serde::Deserialize;
use serde_json::{json, Map, Value};
use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::{mpsc, watch, Semaphore};
use tokio::time::Instant;

/// Most sockets a soak opens (the generator and the server share one machine's descriptors).
const MAX_SOCKETS: usize = 50_000;
/// Longest run, in seconds.
const MAX_DURATION_S: f64 = 24.0 * 3600.0;
/// Error messages kept for the JSON line, beyond the counts.
const ERROR_SAMPLES: usize = 20;
/// Texts of our chat publications: `soak <seq>`.
const TEXT_PREFIX: &str = "soak ";
/// The memory check: the end of the run under full load against the settled figure.
const MEMORY_TOLERANCE: f64 = 1.10;

#[derive(Args, Debug, Clone)]
pub struct SoakArgs {
    /// Address of the server (loopback only)
    #[arg(long, default_value = "127.0.0.1:8000")]
    pub addr: SocketAddr,
    /// The server's process id, for its VmRSS in /proc/PID/status
    #[arg(long)]
    pub pid: u32,
    /// Seconds of soak after the ramp-up
    #[arg(long, default_value_t = 600.0)]
    pub duration: f64,
    /// Chat sockets held open, the observers (one per room) included
    #[arg(long, default_value_t = 5000)]
    pub sockets: usize,
    /// Rooms the sockets are spread over
    #[arg(long, default_value_t = 50)]
    pub rooms: usize,
    /// Members closed by the client a second (their slots reconnect)
    #[arg(long, default_value_t = 10.0)]
    pub churn: f64,
    /// Share of connections that ignore `expiring` and must be closed with 4001
    #[arg(long, default_value_t = 0.1)]
    pub no_refresh_share: f64,
    /// Chat publications (`send`) a second, from random members
    #[arg(long, default_value_t = 20.0)]
    pub rate: f64,
    /// A user to log in as, NAME:PASSWORD (repeatable); members and observers alternate between them
    #[arg(long = "user", value_name = "NAME:PASSWORD", default_values_t = [
        "johndoe:secret".to_owned(),
        "janedoe:secret2".to_owned(),
    ])]
    pub users: Vec<String>,
    /// Logins per user in the token pool
    #[arg(long, default_value_t = 4)]
    pub logins_per_user: usize,
    /// Seconds between password logins replacing a login of the pool (0: none)
    #[arg(long, default_value_t = 10.0)]
    pub login_every: f64,
    /// Seconds between refreshes of the pool's logins (default: a third of the access lifetime)
    #[arg(long)]
    pub pool_refresh_every: Option<f64>,
    /// Logins with a wrong password a second (0: none)
    #[arg(long, default_value_t = 1.0)]
    pub wrong_logins_per_sec: f64,
    /// Loopback source address of the wrong logins
    #[arg(long, default_value = "127.0.0.2")]
    pub wrong_login_from: IpAddr,
    /// Seconds between readings of the server's VmRSS
    #[arg(long, default_value_t = 2.0)]
    pub rss_every: f64,
    /// Sockets connecting at a time
    #[arg(long, default_value_t = 50)]
    pub concurrency: usize,
    /// Most seconds the ramp-up to --sockets may take (default: 60 + sockets / 25)
    #[arg(long)]
    pub ramp_timeout: Option<f64>,
    /// Most seconds to wait after the run for acks and deliveries still under way
    #[arg(long, default_value_t = 15.0)]
    pub drain: f64,
    /// Seconds between closing every socket and the last memory reading
    #[arg(long, default_value_t = 5.0)]
    pub settle: f64,
    /// Messages put in each room before the run (each acked and checked like the others), so that
    /// joins get a full `history` from the start (50: a join's history)
    #[arg(long, default_value_t = 50)]
    pub prefill: usize,
    /// Seconds a connect, welcome and join may take
    #[arg(long, default_value_t = 10.0)]
    pub join_timeout: f64,
}

macro_rules! counters {
    ($($name:ident),* $(,)?) => {
        /// The soak's counters, each a field of the JSON line's `counts`.
        #[allow(non_camel_case_types)]
        #[derive(Clone, Copy, Debug)]
        enum C { $($name),* }
        const COUNTER_NAMES: &[&str] = &[$(stringify!($name)),*];
    };
}

counters!(
    // Sockets.
    connects,
    connect_failures,
    observer_reconnects,
    churn_closes,
    final_closes,
    abnormal_closes,
    closed_4001_expected,
    closed_4001_unexpected,
    // Tokens on sockets.
    expiring,
    refresh_sent,
    refreshed,
    refresh_failed,
    refresh_skipped_stale,
    // Chat publications.
    sends,
    sends_skipped,
    acks,
    send_errors,
    unacked_at_close,
    deliveries,
    observer_deliveries,
    // Logins and the pool.
    logins_ok,
    logins_failed,
    pool_refreshes_ok,
    pool_refreshes_failed,
    pool_connect_failures,
    wrong_logins,
    wrong_login_transport_errors,
    // Anything the protocol does not allow: an unexpected frame, an ack for another ref.
    protocol_surprises,
);

/// Counters, closes by code, wrong logins by status, and what went wrong.
struct Board {
    counts: Vec<AtomicU64>,
    server_closes: Mutex<BTreeMap<u16, u64>>,
    wrong_login_statuses: Mutex<BTreeMap<u16, u64>>,
    errors: Mutex<Vec<String>>,
    /// Members joined now (observers not included).
    open_members: AtomicI64,
    /// Sends written and not yet answered, over all sockets.
    pending_sends: AtomicI64,
    started: Instant,
}

impl Board {
    fn new() -> Board {
        Board {
            counts: COUNTER_NAMES.iter().map(|_| AtomicU64::new(0)).collect(),
            server_closes: Mutex::default(),
            wrong_login_statuses: Mutex::default(),
            errors: Mutex::default(),
            open_members: AtomicI64::new(0),
            pending_sends: AtomicI64::new(0),
            started: Instant::now(),
        }
    }

    fn add(&self, c: C) {
        self.counts[c as usize].fetch_add(1, Ordering::Relaxed);
    }

    fn get(&self, c: C) -> u64 {
        self.counts[c as usize].load(Ordering::Relaxed)
    }

    /// Keeps `what` among the samples, with the time since the generator started (to find it in
    /// the server's log).
    fn error(&self, what: String) {
        let mut errors = self.errors.lock().expect("errors lock");
        if errors.len() < ERROR_SAMPLES {
            let at = self.started.elapsed().as_secs_f64();
            errors.push(format!("{at:.1} s: {what}"));
        }
    }

    fn server_close(&self, code: u16) {
        *self.server_closes.lock().expect("closes lock").entry(code).or_default() += 1;
    }

    fn counts_json(&self) -> Value {
        let counts: Map<String, Value> = COUNTER_NAMES
            .iter()
            .zip(&self.counts)
            .map(|(n, c)| ((*n).to_owned(), json!(c.load(Ordering::Relaxed))))
            .collect();
        Value::Object(counts)
    }
}

/// One room: the ids acked to its senders, and how often its observer received each id.
#[derive(Default)]
struct Room {
    acked: Mutex<Vec<i64>>,
    seen: Mutex<HashMap<i64, u32>>,
}

/// Acked ids against an observer's receipts.
#[derive(Debug, Default, PartialEq, Eq)]
struct Tally {
    acked: u64,
    /// Acked, never received by the observer.
    missing: u64,
    /// Ids (acked or not) the observer received more than once.
    duplicates: u64,
    /// Ids acked more than once.
    acked_twice: u64,
    /// Received by the observer but never acked: the sender closed before its ack (allowed).
    delivered_unacked: u64,
}

impl Tally {
    fn of(acked: &[i64], seen: &HashMap<i64, u32>) -> Tally {
        let mut tally = Tally { acked: acked.len() as u64, ..Tally::default() };
        let mut unique = HashSet::with_capacity(acked.len());
        for id in acked {
            if !unique.insert(*id) {
                tally.acked_twice += 1;
            }
            if !seen.contains_key(id) {
                tally.missing += 1;
            }
        }
        for (id, times) in seen {
            if *times > 1 {
                tally.duplicates += 1;
            }
            if !unique.contains(id) {
                tally.delivered_unacked += 1;
            }
        }
        tally
    }

    fn add(&mut self, other: &Tally) {
        self.acked += other.acked;
        self.missing += other.missing;
        self.duplicates += other.duplicates;
        self.acked_twice += other.acked_twice;
        self.delivered_unacked += other.delivered_unacked;
    }
}

/// One login of the pool.
struct Login {
    user: usize,
    access: String,
    refresh: String,
    /// Unix seconds the access token expires at.
    exp: i64,
    born: Instant,
}

/// The token pool: logins by password, refreshed in turn; sockets take the freshest access token
/// of their user.
#[derive(Default)]
struct Pool {
    logins: Mutex<Vec<Login>>,
}

impl Pool {
    fn freshest(&self, user: usize) -> Option<(String, i64)> {
        let logins = self.logins.lock().expect("pool lock");
        logins.iter().filter(|l| l.user == user).max_by_key(|l| l.exp).map(|l| (l.access.clone(), l.exp))
    }
}

/// What a member slot is told.
#[derive(Debug)]
enum Cmd {
    /// Publish `soak <seq>` in the slot's room.
    Send(u64),
    /// Close the socket (1000) and connect again.
    Churn,
}

/// A member slot as the dispatchers see it.
struct Slot {
    cmds: mpsc::Sender<Cmd>,
    joined: AtomicBool,
}

struct Ctx {
    args: SoakArgs,
    target: Target,
    users: Vec<(String, String)>,
    rooms: Vec<String>,
    room_state: Vec<Room>,
    pool: Pool,
    board: Board,
    slots: Vec<Slot>,
    permits: Semaphore,
    /// Set when every socket is to close for good.
    stop: watch::Receiver<bool>,
}

fn unix_now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

/// Resolves once the stop is given (the guard `wait_for` returns is not `Send`: dropped here).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// A random number below `n` (splitmix64 over a shared counter: cheap, good enough to pick).
fn random_below(n: usize) -> usize {
    static STATE: AtomicU64 = AtomicU64::new(0);
    let mut z = STATE.fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed);
    if z == 0 {
        let seed = SystemTime::now().duration_since(UNIX_EPOCH).map_or(1, |d| d.as_nanos() as u64);
        STATE.store(seed | 1, Ordering::Relaxed);
        z = seed;
    }
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    (z % n.max(1) as u64) as usize
}

fn chance(p: f64) -> bool {
    (random_below(1_000_000) as f64) < p * 1_000_000.0
}

/// A server frame, as far as the soak reads it.
#[derive(Deserialize)]
struct Frame<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(default)]
    id: Option<i64>,
    #[serde(default, borrow)]
    room: Option<Cow<'a, str>>,
    #[serde(default, rename = "ref", borrow)]
    reference: Option<Cow<'a, str>>,
    #[serde(default)]
    exp: Option<i64>,
    #[serde(default, borrow)]
    detail: Option<Cow<'a, str>>,
}

// --- the run ------------------------------------------------------------------------------------

fn check_args(args: &SoakArgs) -> anyhow::Result<Vec<(String, String)>> {
    ensure!(
        args.addr.ip().is_loopback(),
        "--addr must be a loopback address: the soak stays on this machine"
    );
    ensure!(args.wrong_login_from.is_loopback(), "--wrong-login-from must be a loopback address");
    ensure!(args.rooms >= 1 && args.rooms <= 1000, "--rooms must be 1-1000");
    ensure!(
        args.sockets > args.rooms && args.sockets <= MAX_SOCKETS,
        "--sockets must be more than --rooms (one observer each) and at most {MAX_SOCKETS}"
    );
    ensure!(
        args.duration > 0.0 && args.duration <= MAX_DURATION_S,
        "--duration must be 0-{MAX_DURATION_S} s"
    );
    ensure!(args.rate > 0.0 && args.rate <= 10_000.0, "--rate must be above 0 and at most 10000");
    ensure!(args.churn >= 0.0 && args.churn <= 10_000.0, "--churn must be 0-10000");
    ensure!(
        args.wrong_logins_per_sec >= 0.0 && args.wrong_logins_per_sec <= 1000.0,
        "--wrong-logins-per-sec: 0-1000"
    );
    ensure!((0.0..=1.0).contains(&args.no_refresh_share), "--no-refresh-share must be 0-1");
    ensure!(
        args.rss_every > 0.0 && args.logins_per_user >= 1 && args.concurrency >= 1,
        "bad --rss-every, --logins-per-user or --concurrency"
    );
    ensure!(
        args.drain >= 0.0 && args.drain <= 600.0 && args.settle >= 0.0 && args.settle <= 600.0,
        "--drain and --settle: 0-600 s"
    );
    ensure!(args.join_timeout > 0.0 && args.join_timeout <= 600.0, "--join-timeout: above 0, at most 600 s");
    ensure!(args.prefill <= 1000, "--prefill: at most 1000 messages per room");
    ensure!(
        args.ramp_timeout.is_none_or(|t| t > 0.0 && t <= 3600.0)
            && args.pool_refresh_every.is_none_or(|t| (1.0..=3600.0).contains(&t))
            && (0.0..=3600.0).contains(&args.login_every),
        "--ramp-timeout, --pool-refresh-every and --login-every: at most an hour"
    );
    let users = args
        .users
        .iter()
        .map(|u| {
            u.split_once(':').map(|(n, p)| (n.to_owned(), p.to_owned())).context("--user is NAME:PASSWORD")
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    ensure!(!users.is_empty(), "at least one --user");
    Ok(users)
}

pub async fn run(args: SoakArgs) -> anyhow::Result<Value> {
    let users = check_args(&args)?;
    let rss_at_start = rss_kib(args.pid)?;
    let members = args.sockets - args.rooms;
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut cmd_rxs = Vec::with_capacity(members);
    let slots = (0..members)
        .map(|_| {
            let (tx, rx) = mpsc::channel(4);
            cmd_rxs.push(rx);
            Slot { cmds: tx, joined: AtomicBool::new(false) }
        })
        .collect();
    let ctx = Arc::new(Ctx {
        target: Target { addr: args.addr, username: String::new(), password: String::new(), no_auth: true },
        rooms: (0..args.rooms).map(|r| format!("soak-{r:03}")).collect(),
        room_state: (0..args.rooms).map(|_| Room::default()).collect(),
        users,
        pool: Pool::default(),
        board: Board::new(),
        slots,
        permits: Semaphore::new(args.concurrency),
        stop: stop_rx,
        args,
    });
    let args = &ctx.args;

    // The pool: every login by password, before any socket.
    let mut conn = HttpConn::connect(args.addr).await?;
    for user in 0..ctx.users.len() {
        for _ in 0..args.logins_per_user {
            let login = log_in(&ctx, &mut conn, user).await?;
            ctx.board.add(C::logins_ok);
            ctx.pool.logins.lock().expect("pool lock").push(login);
        }
    }
    drop(conn);
    let access_ttl = {
        let pool = ctx.pool.logins.lock().expect("pool lock");
        (pool.iter().map(|l| l.exp).min().unwrap_or(0) - unix_now()).max(1)
    };
    let refresh_every =
        args.pool_refresh_every.map_or(secs(access_ttl as f64 / 3.0), secs).max(Duration::from_secs(1));
    let (upkeep_done, upkeep_rx) = watch::channel(false);
    let upkeep = tokio::spawn(pool_upkeep(ctx.clone(), refresh_every, upkeep_rx));

    // Ramp-up: the observers, then the members.
    let ramp_started = Instant::now();
    let mut observers = Vec::with_capacity(args.rooms);
    for room in 0..args.rooms {
        let (ws, exp) = open(&ctx, room % ctx.users.len(), &ctx.rooms[room])
            .await
            .with_context(|| format!("the observer of {}", ctx.rooms[room]))?;
        ctx.board.add(C::connects);
        observers.push(tokio::spawn(observer(ctx.clone(), room, ws, exp)));
    }
    let fill_started = Instant::now();
    let fills = bounded(args.rooms, args.concurrency, |room| prefill(&ctx, room)).await;
    fills.into_iter().collect::<anyhow::Result<Vec<()>>>().context("filling the rooms' history")?;
    let prefill_s = fill_started.elapsed().as_secs_f64();
    let slot_tasks: Vec<_> = cmd_rxs
        .into_iter()
        .enumerate()
        .map(|(i, rx)| tokio::spawn(member_slot(ctx.clone(), i, rx)))
        .collect();
    let ramp_limit = secs(args.ramp_timeout.unwrap_or(60.0 + args.sockets as f64 / 25.0));
    while (ctx.board.open_members.load(Ordering::Relaxed) as usize) < members
        && ramp_started.elapsed() < ramp_limit
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let ramp_up_s = ramp_started.elapsed().as_secs_f64();
    let ramped = ctx.board.open_members.load(Ordering::Relaxed) as usize + args.rooms;

    // The run.
    let started = Instant::now();
    let until = started + secs(args.duration);
    let samples = Arc::new(Mutex::new(Vec::new()));
    let (sampler_done, sampler_rx) = watch::channel(false);
    let sampler = tokio::spawn(sample_rss(ctx.clone(), started, samples.clone(), sampler_rx));
    let mut load = vec![tokio::spawn(publish(ctx.clone(), until))];
    if args.churn > 0.0 {
        load.push(tokio::spawn(churn(ctx.clone(), until)));
    }
    if args.wrong_logins_per_sec > 0.0 {
        load.push(tokio::spawn(wrong_logins(ctx.clone(), until)));
    }
    tokio::time::sleep_until(until).await;
    let end_kib = rss_kib(args.pid)?;
    let open_at_end = ctx.board.open_members.load(Ordering::Relaxed) as usize + args.rooms;
    for task in load {
        let _ = task.await;
    }

    // Drain: every send answered and every acked id at its observer, or the time is up.
    let drain_until = Instant::now() + secs(args.drain);
    let all_delivered = |ctx: &Ctx| {
        ctx.room_state.iter().all(|room| {
            let seen = room.seen.lock().expect("seen lock");
            room.acked.lock().expect("acked lock").iter().all(|id| seen.contains_key(id))
        })
    };
    let drain_started = Instant::now();
    while Instant::now() < drain_until
        && (ctx.board.pending_sends.load(Ordering::Relaxed) > 0 || !all_delivered(&ctx))
    {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let drained_s = drain_started.elapsed().as_secs_f64();

    // Close everything, let the server settle, read its memory once more.
    let _ = sampler_done.send(true);
    let _ = sampler.await;
    let _ = stop_tx.send(true);
    let closing = async {
        for task in observers.into_iter().chain(slot_tasks) {
            let _ = task.await;
        }
    };
    let closed_in_time = tokio::time::timeout(Duration::from_secs(30), closing).await.is_ok();
    if !closed_in_time {
        ctx.board.error("sockets still closing 30 s after the stop".to_owned());
    }
    tokio::time::sleep(secs(args.settle)).await;
    let after_close_kib = rss_kib(args.pid)?;
    let server = server_metrics(args.addr).await;
    let samples = std::mem::take(&mut *samples.lock().expect("samples lock"));
    let _ = upkeep_done.send(true);
    let _ = upkeep.await;

    Ok(summarize(
        &ctx,
        Summary {
            rss_at_start,
            prefill_s,
            ramp_up_s,
            ramped,
            open_at_end,
            end_kib,
            after_close_kib,
            drained_s,
            samples,
            server,
            refresh_every,
            access_ttl,
        },
    ))
}

/// What the run measured beside the board.
struct Summary {
    rss_at_start: u64,
    prefill_s: f64,
    ramp_up_s: f64,
    ramped: usize,
    open_at_end: usize,
    end_kib: u64,
    after_close_kib: u64,
    drained_s: f64,
    samples: Vec<Sample>,
    server: Value,
    refresh_every: Duration,
    access_ttl: i64,
}

fn summarize(ctx: &Ctx, s: Summary) -> Value {
    let (args, board) = (&ctx.args, &ctx.board);
    let mut tally = Tally::default();
    for room in &ctx.room_state {
        let acked = room.acked.lock().expect("acked lock");
        let seen = room.seen.lock().expect("seen lock");
        tally.add(&Tally::of(&acked, &seen));
    }
    // Settled: the median over the second fifth of the run.
    let window = (args.duration / 5.0, 2.0 * args.duration / 5.0);
    let settled = median_between(&s.samples, window.0, window.1);
    let ratio = settled.map(|settled| s.end_kib as f64 / settled.max(1) as f64);
    let opens: Vec<i64> = s.samples.iter().map(|x| x.open + args.rooms as i64).collect();
    let server_closes: Map<String, Value> = board
        .server_closes
        .lock()
        .expect("closes lock")
        .iter()
        .map(|(code, n)| (code.to_string(), json!(n)))
        .collect();
    let wrong: Map<String, Value> = board
        .wrong_login_statuses
        .lock()
        .expect("statuses lock")
        .iter()
        .map(|(status, n)| (status.to_string(), json!(n)))
        .collect();
    let unexpected_wrong_login_statuses: u64 = board
        .wrong_login_statuses
        .lock()
        .expect("statuses lock")
        .iter()
        .filter(|(status, _)| !matches!(status, 401 | 429))
        .map(|(_, n)| n)
        .sum();
    let unexpected_server_closes: u64 = board
        .server_closes
        .lock()
        .expect("closes lock")
        .iter()
        .filter(|(code, _)| **code != 4001)
        .map(|(_, n)| n)
        .sum();
    // Whatever should not happen in a healthy run, from the generator's side.
    let errors = board.get(C::connect_failures)
        + board.get(C::observer_reconnects)
        + board.get(C::abnormal_closes)
        + board.get(C::closed_4001_unexpected)
        + unexpected_server_closes
        + board.get(C::refresh_failed)
        + board.get(C::refresh_skipped_stale)
        + board.get(C::send_errors)
        + board.get(C::logins_failed)
        + board.get(C::pool_refreshes_failed)
        + board.get(C::pool_connect_failures)
        + board.get(C::wrong_login_transport_errors)
        + unexpected_wrong_login_statuses
        + board.get(C::protocol_surprises);
    let delivered = tally.missing == 0 && tally.duplicates == 0 && tally.acked_twice == 0;
    let memory_ok = ratio.is_some_and(|r| r <= MEMORY_TOLERANCE);
    json!({
        "addr": args.addr.to_string(),
        "settings": {
            "duration_s": args.duration,
            "sockets": args.sockets,
            "rooms": args.rooms,
            "observers": args.rooms,
            "churn_per_s": args.churn,
            "no_refresh_share": args.no_refresh_share,
            "publications_per_s": args.rate,
            "prefill_per_room": args.prefill,
            "users": ctx.users.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>(),
            "logins_per_user": args.logins_per_user,
            "login_every_s": args.login_every,
            "pool_refresh_every_s": round1(s.refresh_every.as_secs_f64()),
            "access_ttl_s": s.access_ttl,
            "wrong_logins_per_s": args.wrong_logins_per_sec,
            "wrong_login_from": args.wrong_login_from.to_string(),
            "rss_every_s": args.rss_every,
        },
        "ramp_up_s": round1(s.ramp_up_s),
        "prefill_s": round1(s.prefill_s),
        "sockets_after_ramp_up": s.ramped,
        "sockets_open_at_end": s.open_at_end,
        "sockets_open_min": opens.iter().min(),
        "sockets_open_max": opens.iter().max(),
        "counts": board.counts_json(),
        "closes": {
            "by_us_churn": board.get(C::churn_closes),
            "by_us_at_the_end": board.get(C::final_closes),
            "by_server": server_closes,
            "abnormal": board.get(C::abnormal_closes),
        },
        "wrong_logins_by_status": wrong,
        "publications": {
            "chat": {
                "sent": board.get(C::sends),
                "acked": tally.acked,
                "delivered_to_observers": board.get(C::observer_deliveries),
                "missing": tally.missing,
                "duplicates": tally.duplicates,
                "acked_twice": tally.acked_twice,
                "delivered_unacked": tally.delivered_unacked,
                "unacked_at_close": board.get(C::unacked_at_close),
                "drain_s": round1(s.drained_s),
            },
            "api": api_publications(),
        },
        "rss_kib": {
            "at_start": s.rss_at_start,
            "settled": settled,
            "settled_window_s": [round1(window.0), round1(window.1)],
            "end": s.end_kib,
            "after_close": s.after_close_kib,
            "max": s.samples.iter().map(|x| x.kib).max(),
            "end_over_settled": ratio.map(|r| (r * 1000.0).round() / 1000.0),
            "growth_after_settling_kib_per_min": growth_kib_per_min(&s.samples, window.0).map(round1),
            "samples": s.samples.iter().map(|x| json!([round1(x.t), x.kib, x.open + args.rooms as i64])).collect::<Vec<_>>(),
        },
        "server_metrics_after_close": s.server,
        "errors": errors,
        "error_samples": *board.errors.lock().expect("errors lock"),
        "checks": {
            "every_acked_delivered": delivered,
            "memory_within_10pct": memory_ok,
            "no_generator_errors": errors == 0,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tally_finds_missing_duplicate_and_unacked_ids() {
        let seen: HashMap<i64, u32> = [(1, 1), (2, 2), (4, 1)].into_iter().collect();
        let tally = Tally::of(&[1, 2, 3], &seen);
        assert_eq!(
            tally,
            Tally { acked: 3, missing: 1, duplicates: 1, acked_twice: 0, delivered_unacked: 1 }
        );
        let clean = Tally::of(&[5, 6], &[(5, 1), (6, 1)].into_iter().collect());
        assert_eq!(clean, Tally { acked: 2, ..Tally::default() });
        assert_eq!(Tally::of(&[7, 7], &[(7, 1)].into_iter().collect()).acked_twice, 1);
    }

    #[test]
    fn the_settled_figure_is_the_median_of_its_window() {
        let at = |t: f64, kib: u64| Sample { t, kib, open: 0 };
        let samples = [at(1.0, 900), at(2.0, 100), at(3.0, 300), at(4.0, 200), at(5.0, 5000)];
        assert_eq!(median_between(&samples, 2.0, 4.0), Some(200));
        assert_eq!(median_between(&samples, 6.0, 9.0), None);
        let line: Vec<Sample> = (0..10).map(|i| at(f64::from(i) * 6.0, 1000 + 50 * i as u64)).collect();
        let slope = growth_kib_per_min(&line, 0.0).expect("ten readings");
        assert!((slope - 500.0).abs() < 1e-6, "50 KiB every 6 s is 500 KiB a minute, not {slope}");
        assert_eq!(growth_kib_per_min(&line[..1], 0.0), None);
    }

    #[test]
    fn random_picks_stay_in_range_and_spread() {
        let picks: HashSet<usize> = (0..1000).map(|_| random_below(10)).collect();
        assert_eq!(picks.len(), 10);
        assert!(!chance(0.0));
        assert!(chance(1.0));
    }

    #[test]
    fn only_loopback_addresses_are_accepted() {
        use clap::Parser;
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            soak: SoakArgs,
        }
        let parse = |extra: &[&str]| {
            let mut argv = vec!["soak", "--pid", "1"];
            argv.extend_from_slice(extra);
            check_args(&Cli::parse_from(argv).soak)
        };
        assert!(parse(&[]).is_ok());
        assert!(parse(&["--addr", "10.0.0.1:8000"]).is_err());
        assert!(parse(&["--wrong-login-from", "192.168.1.2"]).is_err());
        assert!(parse(&["--sockets", "50"]).is_err(), "no room left for members");
        assert!(parse(&["--user", "nopassword"]).is_err());
    }
}
