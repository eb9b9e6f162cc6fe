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

use crate::common::{bounded, next_text, round1, secs, Target, Ws};
use crate::http::HttpConn;
use crate::idle::rss_kib;
use anyhow::{bail, ensure, Context};
use clap::Args;
use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use serde_json::{json, Map, Value};
use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::{mpsc, watch, Semaphore};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;

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

// --- logins -------------------------------------------------------------------------------------

/// A token pair from a response body.
fn pair(body: &[u8], user: usize) -> anyhow::Result<Login> {
    let value: Value = serde_json::from_slice(body).context("token pair: not JSON")?;
    let field = |name: &str| value[name].as_str().map(str::to_owned).with_context(|| format!("no {name}"));
    let expires_in = value["expires_in"].as_i64().context("no expires_in")?;
    Ok(Login {
        user,
        access: field("access_token")?,
        refresh: field("refresh_token")?,
        exp: unix_now() + expires_in,
        born: Instant::now(),
    })
}

/// A password login of `user` (`POST /token`).
async fn log_in(ctx: &Ctx, conn: &mut HttpConn, user: usize) -> anyhow::Result<Login> {
    let (name, password) = &ctx.users[user];
    let (status, _, body) = conn.login(name, password).await?;
    if status != 200 {
        bail!("POST /token for {name} answered {status}: {}", String::from_utf8_lossy(&body));
    }
    pair(&body, user)
}

/// Keeps the pool fresh until `done`: every login refreshed each `every`, and a login replaced by
/// a new password login each `--login-every` seconds (in turn over the users, the oldest first).
async fn pool_upkeep(ctx: Arc<Ctx>, every: Duration, mut done: watch::Receiver<bool>) {
    let board = &ctx.board;
    // Connected when first needed: the server closes a connection whose first request does not
    // come within its header-read timeout (10 s), as it should.
    let mut conn: Option<HttpConn> = None;
    let login_every = (ctx.args.login_every > 0.0).then(|| secs(ctx.args.login_every));
    let mut next_refresh = Instant::now() + every;
    let mut next_login = login_every.map(|d| Instant::now() + d);
    let mut next_user = 0;
    loop {
        let wake = next_login.map_or(next_refresh, |l| l.min(next_refresh));
        tokio::select! {
            _ = done.changed() => return,
            _ = tokio::time::sleep_until(wake) => {}
        }
        if conn.is_none() {
            match HttpConn::connect(ctx.args.addr).await {
                Ok(c) => conn = Some(c),
                Err(e) => {
                    board.add(C::pool_connect_failures);
                    board.error(format!("pool: {e:#}"));
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            }
        }
        let Some(conn) = conn.as_mut() else { continue };
        if Instant::now() >= next_refresh {
            next_refresh += every;
            let logins: Vec<(usize, usize, String)> = {
                let pool = ctx.pool.logins.lock().expect("pool lock");
                pool.iter().enumerate().map(|(i, l)| (i, l.user, l.refresh.clone())).collect()
            };
            for (i, user, refresh) in logins {
                let result = match conn.post_bearer("/refresh", &refresh).await {
                    Ok((status, _, body)) if status == 200 => pair(&body, user),
                    Ok((status, _, body)) => Err(anyhow::anyhow!(
                        "POST /refresh answered {status}: {}",
                        String::from_utf8_lossy(&body)
                    )),
                    Err(e) => Err(e),
                };
                match result {
                    Ok(login) => {
                        board.add(C::pool_refreshes_ok);
                        let mut pool = ctx.pool.logins.lock().expect("pool lock");
                        // The login may have been replaced meanwhile: keep the newer one.
                        if pool.get(i).is_some_and(|l| l.refresh == refresh) {
                            let born = pool[i].born;
                            pool[i] = Login { born, ..login };
                        }
                    }
                    Err(e) => {
                        board.add(C::pool_refreshes_failed);
                        board.error(format!("pool refresh: {e:#}"));
                        replace_login(&ctx, conn, user).await;
                    }
                }
            }
        }
        if let (Some(at), Some(every)) = (next_login, login_every) {
            if Instant::now() >= at {
                next_login = Some(at + every);
                replace_login(&ctx, conn, next_user).await;
                next_user = (next_user + 1) % ctx.users.len();
            }
        }
    }
}

/// Logs `user` in by password and puts the login in place of that user's oldest.
async fn replace_login(ctx: &Ctx, conn: &mut HttpConn, user: usize) {
    match log_in(ctx, conn, user).await {
        Ok(login) => {
            ctx.board.add(C::logins_ok);
            let mut pool = ctx.pool.logins.lock().expect("pool lock");
            let oldest = pool.iter().enumerate().filter(|(_, l)| l.user == user).min_by_key(|(_, l)| l.born);
            match oldest.map(|(i, _)| i) {
                Some(i) => pool[i] = login,
                None => pool.push(login),
            }
        }
        Err(e) => {
            ctx.board.add(C::logins_failed);
            ctx.board.error(format!("login: {e:#}"));
        }
    }
}

/// Wrong passwords from `--wrong-login-from` until `until`, in turn for each user and one unknown
/// name; answers counted by status.
async fn wrong_logins(ctx: Arc<Ctx>, until: Instant) {
    let board = &ctx.board;
    let every = secs(1.0 / ctx.args.wrong_logins_per_sec);
    let mut names: Vec<String> = ctx.users.iter().map(|(n, _)| n.clone()).collect();
    names.push("soak-nobody".to_owned());
    let mut conn = None;
    let mut ticks = tokio::time::interval(every);
    for n in 0u64.. {
        ticks.tick().await;
        if Instant::now() >= until {
            break;
        }
        if conn.is_none() {
            match HttpConn::connect_from(ctx.args.addr, Some(ctx.args.wrong_login_from)).await {
                Ok(c) => conn = Some(c),
                Err(e) => {
                    board.add(C::wrong_login_transport_errors);
                    board.error(format!("wrong login: {e:#}"));
                    continue;
                }
            }
        }
        let Some(c) = conn.as_mut() else { continue };
        let name = &names[n as usize % names.len()];
        match c.login(name, &format!("wrong-{n}")).await {
            Ok((status, _, _)) => {
                board.add(C::wrong_logins);
                *board
                    .wrong_login_statuses
                    .lock()
                    .expect("statuses lock")
                    .entry(status.as_u16())
                    .or_default() += 1;
            }
            Err(e) => {
                board.add(C::wrong_login_transport_errors);
                board.error(format!("wrong login: {e:#}"));
                conn = None;
            }
        }
    }
}

// --- sockets ------------------------------------------------------------------------------------

/// What a socket is.
#[derive(Clone, Copy)]
enum Role {
    /// The room's observer: refreshes, never churned, records every message id.
    Observer,
    /// A member; `refreshes` is false for the share that lets its token expire.
    Member { refreshes: bool },
}

/// A reply the socket waits for, in the order the commands were sent.
enum Expect {
    Refresh,
    Send(u64),
}

/// How a connection ended.
enum End {
    /// We closed it (churn, or the end of the run).
    ByUs,
    /// The server closed it with this code.
    Server(u16),
    /// Without a close frame.
    Abnormal(String),
}

/// Connects as `user`, reads the welcome, joins `room` and waits for `members` and `history`.
/// Returns the socket and its token's `exp`.
async fn open(ctx: &Ctx, user: usize, room: &str) -> anyhow::Result<(Ws, i64)> {
    let (token, _) = ctx.pool.freshest(user).context("no login in the pool")?;
    let timeout = secs(ctx.args.join_timeout);
    let deadline = Instant::now() + timeout;
    let mut ws = tokio::time::timeout_at(deadline, ctx.target.ws(&format!("/chat/ws?token={token}"), None))
        .await
        .context("connect timed out")?
        .context("opening /chat/ws")?;
    let welcome = next_text(&mut ws, deadline.saturating_duration_since(Instant::now())).await?;
    let exp = match serde_json::from_str::<Frame>(&welcome) {
        Ok(f) if f.kind == "welcome" => f.exp.context("welcome without exp")?,
        _ => bail!("first frame is not a welcome: {welcome}"),
    };
    ws.send(Message::text(json!({"type": "join", "room": room}).to_string())).await?;
    let (mut members, mut history) = (false, false);
    while !(members && history) {
        let text = next_text(&mut ws, deadline.saturating_duration_since(Instant::now()))
            .await
            .context("join not answered with members and history")?;
        match serde_json::from_str::<Frame>(&text).map(|f| f.kind.into_owned()).as_deref() {
            Ok("members") => members = true,
            Ok("history") => history = true,
            Ok("presence") => {}
            _ => bail!("unexpected answer to join: {text}"),
        }
    }
    Ok((ws, exp))
}

/// One connection of a slot or an observer, until it ends.
struct Conn<'a> {
    ctx: &'a Ctx,
    ws: Ws,
    user: usize,
    room: usize,
    role: Role,
    exp: i64,
    expect: VecDeque<Expect>,
}

impl Conn<'_> {
    /// Runs the connection until it ends; `cmds` is `None` for an observer.
    async fn run(
        mut self,
        mut cmds: Option<&mut mpsc::Receiver<Cmd>>,
        stop: &mut watch::Receiver<bool>,
    ) -> End {
        let end = loop {
            let cmd = async {
                match cmds.as_mut() {
                    Some(rx) => rx.recv().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = stopped(stop) => break self.close().await,
                Some(cmd) = cmd => match cmd {
                    Cmd::Churn => {
                        self.ctx.board.add(C::churn_closes);
                        break self.close().await;
                    }
                    Cmd::Send(seq) => {
                        if let Err(e) = self.send(seq).await {
                            break End::Abnormal(format!("send: {e}"));
                        }
                    }
                },
                frame = self.ws.next() => match frame {
                    Some(Ok(Message::Text(text))) => {
                        if let Err(e) = self.on_text(text.as_str()).await {
                            break End::Abnormal(format!("refresh: {e}"));
                        }
                    }
                    Some(Ok(Message::Close(close))) => {
                        break End::Server(close.map_or(1005, |c| u16::from(c.code)));
                    }
                    Some(Ok(_)) => {}
                    Some(Err(e)) => break End::Abnormal(e.to_string()),
                    None => break End::Abnormal("connection closed without a close frame".to_owned()),
                },
            }
        };
        let unanswered = self.expect.iter().filter(|e| matches!(e, Expect::Send(_))).count();
        self.ctx.board.pending_sends.fetch_sub(unanswered as i64, Ordering::Relaxed);
        for _ in 0..unanswered {
            self.ctx.board.add(C::unacked_at_close);
        }
        end
    }

    async fn send(&mut self, seq: u64) -> Result<(), tokio_tungstenite::tungstenite::Error> {
        let frame = json!({
            "type": "send",
            "room": self.ctx.rooms[self.room],
            "text": format!("{TEXT_PREFIX}{seq}"),
            "ref": seq.to_string(),
        });
        self.ws.send(Message::text(frame.to_string())).await?;
        self.ctx.board.add(C::sends);
        self.ctx.board.pending_sends.fetch_add(1, Ordering::Relaxed);
        self.expect.push_back(Expect::Send(seq));
        Ok(())
    }

    async fn on_text(&mut self, text: &str) -> Result<(), tokio_tungstenite::tungstenite::Error> {
        let board = &self.ctx.board;
        let Ok(frame) = serde_json::from_str::<Frame>(text) else {
            board.add(C::protocol_surprises);
            board.error(format!("not a frame: {text:.200}"));
            return Ok(());
        };
        match frame.kind.as_ref() {
            "message" => {
                board.add(C::deliveries);
                if matches!(self.role, Role::Observer) {
                    board.add(C::observer_deliveries);
                    let room = &self.ctx.rooms[self.room];
                    match (frame.id, frame.room.as_deref()) {
                        (Some(id), Some(r)) if r == room => {
                            *self.ctx.room_state[self.room]
                                .seen
                                .lock()
                                .expect("seen lock")
                                .entry(id)
                                .or_default() += 1;
                        }
                        _ => {
                            board.add(C::protocol_surprises);
                            board.error(format!("observer of {room} got {text:.200}"));
                        }
                    }
                }
            }
            "ack" => match (self.expect.pop_front(), frame.id) {
                (Some(Expect::Send(seq)), Some(id))
                    if frame.reference.as_deref() == Some(seq.to_string().as_str()) =>
                {
                    board.add(C::acks);
                    board.pending_sends.fetch_sub(1, Ordering::Relaxed);
                    self.ctx.room_state[self.room].acked.lock().expect("acked lock").push(id);
                }
                (expected, _) => {
                    if matches!(expected, Some(Expect::Send(_))) {
                        board.pending_sends.fetch_sub(1, Ordering::Relaxed);
                    }
                    board.add(C::protocol_surprises);
                    board.error(format!("unexpected ack: {text:.200}"));
                }
            },
            "refreshed" => match self.expect.pop_front() {
                Some(Expect::Refresh) => {
                    board.add(C::refreshed);
                    if let Some(exp) = frame.exp {
                        self.exp = exp;
                    }
                }
                other => {
                    if matches!(other, Some(Expect::Send(_))) {
                        board.pending_sends.fetch_sub(1, Ordering::Relaxed);
                    }
                    board.add(C::protocol_surprises);
                    board.error(format!("unexpected refreshed: {text:.200}"));
                }
            },
            "error" => {
                let detail = frame.detail.as_deref().unwrap_or("");
                match self.expect.pop_front() {
                    Some(Expect::Refresh) => {
                        board.add(C::refresh_failed);
                        board.error(format!("in-band refresh refused: {detail}"));
                    }
                    Some(Expect::Send(_)) => {
                        board.pending_sends.fetch_sub(1, Ordering::Relaxed);
                        board.add(C::send_errors);
                        board.error(format!("send refused: {detail}"));
                    }
                    None => {
                        board.add(C::protocol_surprises);
                        board.error(format!("unexpected error frame: {text:.200}"));
                    }
                }
            }
            "expiring" => {
                board.add(C::expiring);
                let refreshes = match self.role {
                    Role::Observer => true,
                    Role::Member { refreshes } => refreshes,
                };
                if refreshes {
                    self.refresh().await?;
                }
            }
            "presence" | "members" | "history" | "pong" => {}
            _ => {
                board.add(C::protocol_surprises);
                board.error(format!("unexpected frame: {text:.200}"));
            }
        }
        Ok(())
    }

    /// Rebinds the socket to the freshest pool token of its user, when that one lives longer.
    async fn refresh(&mut self) -> Result<(), tokio_tungstenite::tungstenite::Error> {
        let board = &self.ctx.board;
        match self.ctx.pool.freshest(self.user) {
            Some((token, exp)) if exp > self.exp => {
                self.ws.send(Message::text(json!({"type": "refresh", "token": token}).to_string())).await?;
                board.add(C::refresh_sent);
                self.expect.push_back(Expect::Refresh);
            }
            _ => {
                // Refreshing to a token that expires no later would bring `expiring` straight back.
                board.add(C::refresh_skipped_stale);
                board.error(format!("no pool token outlives the socket's (exp {})", self.exp));
            }
        }
        Ok(())
    }

    /// Closes with 1000 and reads until the server's close (acks still arriving are counted).
    async fn close(&mut self) -> End {
        let close = CloseFrame { code: CloseCode::Normal, reason: "".into() };
        if let Err(e) = self.ws.send(Message::Close(Some(close))).await {
            return End::Abnormal(format!("closing: {e}"));
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            match tokio::time::timeout_at(deadline, self.ws.next()).await {
                Ok(Some(Ok(Message::Text(text)))) => {
                    let _ = self.on_text(text.as_str()).await;
                }
                Ok(Some(Ok(Message::Close(_)))) | Ok(None) => return End::ByUs,
                Ok(Some(Ok(_))) => {}
                Ok(Some(Err(e))) => return End::Abnormal(format!("closing: {e}")),
                Err(_) => return End::Abnormal("no close reply within 5 s".to_owned()),
            }
        }
    }
}

/// Counts how a connection ended: ours and expected 4001s are fine, anything else is an error.
fn record_end(ctx: &Ctx, role: Role, end: &End, stopping: bool) {
    let board = &ctx.board;
    match end {
        End::ByUs if stopping => board.add(C::final_closes),
        End::ByUs => {}
        End::Server(code) => {
            board.server_close(*code);
            match (code, role) {
                (4001, Role::Member { refreshes: false }) => board.add(C::closed_4001_expected),
                (4001, _) => {
                    board.add(C::closed_4001_unexpected);
                    board.error("closed with 4001 although it refreshed".to_owned());
                }
                (code, _) => board.error(format!("closed by the server with {code}")),
            }
        }
        End::Abnormal(why) => {
            board.add(C::abnormal_closes);
            board.error(format!("connection ended abnormally: {why}"));
        }
    }
}

/// Connects with the permit of the connect concurrency; counts failures.
async fn connect(ctx: &Ctx, user: usize, room: usize) -> Option<(Ws, i64)> {
    let _permit = ctx.permits.acquire().await.ok()?;
    match open(ctx, user, &ctx.rooms[room]).await {
        Ok(opened) => {
            ctx.board.add(C::connects);
            Some(opened)
        }
        Err(e) => {
            ctx.board.add(C::connect_failures);
            ctx.board.error(format!("connect to room {}: {e:#}", ctx.rooms[room]));
            None
        }
    }
}

/// A member slot: connect, live, reconnect, until the stop.
async fn member_slot(ctx: Arc<Ctx>, slot: usize, mut cmds: mpsc::Receiver<Cmd>) {
    let (user, room) = (slot % ctx.users.len(), slot % ctx.rooms.len());
    let mut stop = ctx.stop.clone();
    while !*stop.borrow() {
        let opened = tokio::select! {
            _ = stopped(&mut stop) => break,
            opened = connect(&ctx, user, room) => opened,
        };
        let Some((ws, exp)) = opened else {
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        };
        // Commands sent while the slot was away are stale.
        while cmds.try_recv().is_ok() {}
        let role = Role::Member { refreshes: !chance(ctx.args.no_refresh_share) };
        let conn = Conn { ctx: &ctx, ws, user, room, role, exp, expect: VecDeque::new() };
        ctx.slots[slot].joined.store(true, Ordering::Relaxed);
        ctx.board.open_members.fetch_add(1, Ordering::Relaxed);
        let end = conn.run(Some(&mut cmds), &mut stop).await;
        ctx.slots[slot].joined.store(false, Ordering::Relaxed);
        ctx.board.open_members.fetch_sub(1, Ordering::Relaxed);
        record_end(&ctx, role, &end, *stop.borrow());
    }
}

/// The observer of `room`: connected before anything is sent, it should never be closed; when it
/// is, that is counted and it reconnects (what it missed meanwhile shows as missing).
async fn observer(ctx: Arc<Ctx>, room: usize, ws: Ws, exp: i64) {
    let user = room % ctx.users.len();
    let mut stop = ctx.stop.clone();
    let mut ws_exp = Some((ws, exp));
    while !*stop.borrow() {
        let (ws, exp) = match ws_exp.take() {
            Some(opened) => opened,
            None => {
                ctx.board.add(C::observer_reconnects);
                match connect(&ctx, user, room).await {
                    Some(opened) => opened,
                    None => {
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        continue;
                    }
                }
            }
        };
        let conn = Conn { ctx: &ctx, ws, user, room, role: Role::Observer, exp, expect: VecDeque::new() };
        let end = conn.run(None, &mut stop).await;
        let stopping = *stop.borrow();
        if !stopping {
            ctx.board.error(format!("observer of {} closed", ctx.rooms[room]));
        }
        record_end(&ctx, Role::Observer, &end, stopping);
    }
}

/// Puts `--prefill` messages in `room` from a socket of its own (paced under the per-socket rate
/// limit), each acked and recorded like any publication: every later join then gets a `history`
/// as large as it will ever be. The server keeps a socket's write buffer at the size of the
/// largest frame it sent, so while the rooms filled up, memory would grow with it and never
/// settle within a run.
async fn prefill(ctx: &Ctx, room: usize) -> anyhow::Result<()> {
    if ctx.args.prefill == 0 {
        return Ok(());
    }
    let name = &ctx.rooms[room];
    let (mut ws, _) =
        open(ctx, room % ctx.users.len(), name).await.with_context(|| format!("filling {name}"))?;
    ctx.board.add(C::connects);
    let timeout = secs(ctx.args.join_timeout);
    for n in 0..ctx.args.prefill {
        let reference = format!("fill-{n}");
        let frame =
            json!({"type": "send", "room": name, "text": format!("{TEXT_PREFIX}fill {n}"), "ref": reference});
        ws.send(Message::text(frame.to_string())).await?;
        ctx.board.add(C::sends);
        loop {
            let text =
                next_text(&mut ws, timeout).await.with_context(|| format!("filling {name}: no ack"))?;
            let Ok(frame) = serde_json::from_str::<Frame>(&text) else {
                bail!("filling {name}: {text:.200}")
            };
            match (frame.kind.as_ref(), frame.id) {
                ("ack", Some(id)) if frame.reference.as_deref() == Some(reference.as_str()) => {
                    ctx.board.add(C::acks);
                    ctx.room_state[room].acked.lock().expect("acked lock").push(id);
                    break;
                }
                ("message" | "presence", _) => {}
                _ => bail!("filling {name}: unexpected {text:.200}"),
            }
        }
        // 40 a second: under the default 50 a second per socket, the join included.
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let close = CloseFrame { code: CloseCode::Normal, reason: "".into() };
    ws.send(Message::Close(Some(close))).await?;
    while let Ok(Some(Ok(frame))) = tokio::time::timeout(timeout, ws.next()).await {
        if let Message::Close(_) = frame {
            break;
        }
    }
    Ok(())
}

// --- dispatchers --------------------------------------------------------------------------------

/// A random joined member slot, if one is found in a few tries.
fn pick_joined(ctx: &Ctx) -> Option<usize> {
    (0..32).map(|_| random_below(ctx.slots.len())).find(|&i| ctx.slots[i].joined.load(Ordering::Relaxed))
}

/// `--rate` publications a second from random members, until `until`.
async fn publish(ctx: Arc<Ctx>, until: Instant) {
    let mut ticks = tokio::time::interval(secs(1.0 / ctx.args.rate));
    for seq in 0u64.. {
        ticks.tick().await;
        if Instant::now() >= until {
            break;
        }
        let sent = pick_joined(&ctx).is_some_and(|i| ctx.slots[i].cmds.try_send(Cmd::Send(seq)).is_ok());
        if !sent {
            ctx.board.add(C::sends_skipped);
        }
    }
}

/// `--churn` client closes a second, of random members, until `until`.
async fn churn(ctx: Arc<Ctx>, until: Instant) {
    let mut ticks = tokio::time::interval(secs(1.0 / ctx.args.churn));
    loop {
        ticks.tick().await;
        if Instant::now() >= until {
            break;
        }
        if let Some(i) = pick_joined(&ctx) {
            let _ = ctx.slots[i].cmds.try_send(Cmd::Churn);
        }
    }
}

/// Where API publications (`POST /api/publish`, a later issue) will join the soak. Once the API
/// exists, a task beside [`publish`] posts at its own rate to random rooms and pushes each
/// answered id into that room's `acked` list: the observers' exactly-once check then covers API
/// publications unchanged. Until then they are reported as not run; nothing is faked.
fn api_publications() -> Value {
    json!({"status": "not run", "reason": "POST /api/publish does not exist yet (a later issue adds it)"})
}

// --- memory -------------------------------------------------------------------------------------

/// One VmRSS reading: seconds since the start of the run, KiB, members open.
#[derive(Clone, Copy, Debug)]
struct Sample {
    t: f64,
    kib: u64,
    open: i64,
}

/// The least-squares slope of the readings from `from` seconds on, in KiB per minute: how fast
/// memory still grew once settled (`None` with fewer than two readings).
fn growth_kib_per_min(samples: &[Sample], from: f64) -> Option<f64> {
    let points: Vec<(f64, f64)> =
        samples.iter().filter(|s| s.t >= from).map(|s| (s.t, s.kib as f64)).collect();
    let n = points.len() as f64;
    if points.len() < 2 {
        return None;
    }
    let (mean_t, mean_k) = points.iter().fold((0.0, 0.0), |(t, k), p| (t + p.0 / n, k + p.1 / n));
    let (mut cov, mut var) = (0.0, 0.0);
    for (t, k) in &points {
        cov += (t - mean_t) * (k - mean_k);
        var += (t - mean_t) * (t - mean_t);
    }
    (var > 0.0).then(|| cov / var * 60.0)
}

/// The median of the readings taken between `from` and `to` seconds (both included).
fn median_between(samples: &[Sample], from: f64, to: f64) -> Option<u64> {
    let mut window: Vec<u64> = samples.iter().filter(|s| s.t >= from && s.t <= to).map(|s| s.kib).collect();
    if window.is_empty() {
        return None;
    }
    window.sort_unstable();
    Some(window[window.len() / 2])
}

async fn sample_rss(
    ctx: Arc<Ctx>,
    started: Instant,
    samples: Arc<Mutex<Vec<Sample>>>,
    mut done: watch::Receiver<bool>,
) {
    let mut ticks = tokio::time::interval(secs(ctx.args.rss_every));
    loop {
        tokio::select! {
            _ = done.changed() => return,
            _ = ticks.tick() => {}
        }
        match rss_kib(ctx.args.pid) {
            Ok(kib) => samples.lock().expect("samples lock").push(Sample {
                t: started.elapsed().as_secs_f64(),
                kib,
                open: ctx.board.open_members.load(Ordering::Relaxed),
            }),
            Err(e) => ctx.board.error(format!("reading the server's memory: {e:#}")),
        }
    }
}

/// A few of the server's own counters (`GET /metrics`), to set beside the generator's.
async fn server_metrics(addr: SocketAddr) -> Value {
    const WANTED: &[&str] = &[
        "wsguard_sockets_open",
        "wsguard_sockets_total",
        "wsguard_sockets_closed_total{reason=\"expired\"}",
        "wsguard_sockets_closed_total{reason=\"revoked\"}",
        "wsguard_connections_open",
        "wsguard_connections_refused_total{reason=\"total\"}",
        "wsguard_connections_refused_total{reason=\"per_address\"}",
        "wsguard_logins_total{result=\"ok\"}",
        "wsguard_logins_total{result=\"failed\"}",
    ];
    let text = match HttpConn::connect(addr).await {
        Ok(mut conn) => match conn.get_public("/metrics").await {
            Ok((status, _, body)) if status == 200 => String::from_utf8_lossy(&body).into_owned(),
            Ok((status, _, _)) => return json!({"error": format!("GET /metrics answered {status}")}),
            Err(e) => return json!({"error": format!("{e:#}")}),
        },
        Err(e) => return json!({"error": format!("{e:#}")}),
    };
    let mut out = Map::new();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        if let Some((name, value)) = line.rsplit_once(' ') {
            if WANTED.contains(&name) {
                out.insert(name.to_owned(), value.parse::<f64>().map_or(Value::Null, |v| json!(v)));
            }
        }
    }
    Value::Object(out)
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
