//! Soak: wsguard under a long, mixed load that keeps changing, then the checks that nothing was
//! lost and nothing piled up; with several nodes and a fault log, what faults did to it.
//!
//! - `--sockets` chat sockets on `/chat/ws?token=`, spread over `--rooms` rooms. One per room is
//!   an **observer**: connected first, never churned, refreshing in band; it records the id of
//!   every `message` frame of its room. The others are **members** in slots: a slot connects,
//!   lives until it is churned or closed by the server, and connects again.
//! - **Nodes**: with `--node`, sockets are spread over `--addr` and the other nodes (a room's
//!   observer on node `room % nodes`, its members alternating), so publications cross the broker.
//!   An observer that loses its socket joins again on its node with `since` and must receive what
//!   it missed.
//! - **History first**: `--prefill` messages go into each room before the members connect (acked
//!   and checked like the others), so every join's `history` is full-sized from the start (see
//!   [`slots::prefill`]).
//! - **Churn**: `--churn` members a second are closed by the client (1000); their slots reconnect.
//! - **Tokens** come from real logins (`POST /token`): a pool of `--logins-per-user` logins per
//!   user, each refreshed with `POST /refresh` (keeping the rotated refresh token) every third of
//!   the access lifetime, one login replaced by a new password login every `--login-every`
//!   seconds. The server runs with a short access lifetime, so every socket gets `expiring`: a
//!   member answers with an in-band `refresh` (the freshest pool token of its user; expects
//!   `refreshed`), except a `--no-refresh-share` of connections, which do not and must be closed
//!   with 4001 (counted; the slot reconnects).
//! - **Publications**: `--rate` chat `send`s a second, each from a random live member, and with
//!   `--api-key-file`, `--api-rate` API publications a second (`POST /api/publish`); every acked
//!   id is recorded for its room. At the end every acked id must have reached its room's observer
//!   exactly once.
//! - **Wrong logins**: `--wrong-logins-per-sec` `POST /token` with wrong passwords from another
//!   loopback address (`--wrong-login-from`, so the throttle counts them apart from the real
//!   logins); 401 and 429 are the expected answers, counted by status.
//! - **Memory**: the VmRSS of the server at `--addr` (`--pid`) every `--rss-every` seconds.
//!   Settled: the median of the samples in the second fifth of the run; end: at the end of the
//!   run, under full load; after close: once every socket is closed and `--settle` seconds
//!   passed. The check: end <= 1.10 x settled.
//! - **Faults** (`--faults`): see [`faults`]. What went wrong is kept as incidents (kind, node,
//!   time); those in a fault's window are the fault's, the others failures.
//!
//! Bounded: the run lasts `--duration` seconds after the ramp-up (itself bounded), then at most
//! `--drain` seconds of draining and a few seconds of closing; loopback addresses only.

mod api;
mod args;
mod board;
mod dispatch;
mod faults;
mod logins;
mod memory;
mod slots;
mod sockets;
mod summary;

pub(crate) use args::read_api_key;
pub use args::SoakArgs;
use board::{Board, Room, C};
use dispatch::*;
use logins::*;
use memory::*;
use slots::*;
use summary::{summarize, Summary};

use crate::common::{bounded, secs, Target};
use crate::idle::rss_kib;
use anyhow::Context;
use serde::Deserialize;
use serde_json::Value;
use std::borrow::Cow;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::{mpsc, watch, Semaphore};
use tokio::time::Instant;

/// Texts of our publications: `soak <seq>`, `soak fill <n>`, `soak api <node>-<seq>`.
const TEXT_PREFIX: &str = "soak ";

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
    /// One per node, `--addr` first.
    targets: Vec<Target>,
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

impl Ctx {
    fn member_node(&self, slot: usize) -> usize {
        node_of_slot(slot, self.rooms.len(), self.targets.len())
    }

    /// The node of `room`'s observer.
    fn observer_node(&self, room: usize) -> usize {
        room % self.targets.len()
    }
}

/// The node of member slot `slot`: the members of a room (slots `room + k * rooms`) alternate.
fn node_of_slot(slot: usize, rooms: usize, nodes: usize) -> usize {
    (slot / rooms.max(1)) % nodes.max(1)
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
    /// An error frame's `code`.
    #[serde(default, borrow)]
    code: Option<Cow<'a, str>>,
    /// A join's `history`: where the room stands, and with `since`, whether it recovered.
    #[serde(default)]
    offset: Option<i64>,
    #[serde(default, borrow)]
    epoch: Option<Cow<'a, str>>,
    #[serde(default)]
    recovered: Option<bool>,
    #[serde(default)]
    messages: Option<Vec<MessageId>>,
}

/// A message of a `history`, as far as its id.
#[derive(Deserialize)]
struct MessageId {
    #[serde(default)]
    id: Option<i64>,
}

// --- the run ------------------------------------------------------------------------------------

/// The context, and each member slot's command receiver.
fn context(
    args: SoakArgs,
    users: Vec<(String, String)>,
    stop: watch::Receiver<bool>,
) -> (Arc<Ctx>, Vec<mpsc::Receiver<Cmd>>) {
    let members = args.sockets - args.rooms;
    let mut cmd_rxs = Vec::with_capacity(members);
    let slots = (0..members)
        .map(|_| {
            let (tx, rx) = mpsc::channel(4);
            cmd_rxs.push(rx);
            Slot { cmds: tx, joined: AtomicBool::new(false) }
        })
        .collect();
    let targets: Vec<Target> = args
        .node_addrs()
        .into_iter()
        .map(|addr| Target {
            addr,
            username: String::new(),
            password: String::new(),
            no_auth: true,
            source: None,
        })
        .collect();
    let ctx = Ctx {
        rooms: (0..args.rooms).map(|r| format!("soak-{r:03}")).collect(),
        room_state: (0..args.rooms).map(|_| Room::default()).collect(),
        board: Board::new(targets.len()),
        targets,
        users,
        pool: Pool::default(),
        slots,
        permits: Semaphore::new(args.concurrency),
        stop,
        args,
    };
    (Arc::new(ctx), cmd_rxs)
}

/// The sockets' tasks once ramped up, and how the ramp-up went.
struct Ramp {
    tasks: Vec<tokio::task::JoinHandle<()>>,
    prefill_s: f64,
    ramp_up_s: f64,
    ramped: usize,
}

/// The observers first, the rooms' history filled, then the members, until all are joined or
/// the ramp-up's time is up.
async fn ramp_up(ctx: &Arc<Ctx>, cmd_rxs: Vec<mpsc::Receiver<Cmd>>) -> anyhow::Result<Ramp> {
    let args = &ctx.args;
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(args.sockets);
    for room in 0..args.rooms {
        let opened = open(ctx, ctx.observer_node(room), room % ctx.users.len(), &ctx.rooms[room], None)
            .await
            .with_context(|| format!("the observer of {}", ctx.rooms[room]))?;
        ctx.board.add(C::connects);
        tasks.push(tokio::spawn(observer(ctx.clone(), room, opened)));
    }
    let fill_started = Instant::now();
    let fills = bounded(args.rooms, args.concurrency, |room| prefill(ctx, room)).await;
    fills.into_iter().collect::<anyhow::Result<Vec<()>>>().context("filling the rooms' history")?;
    let prefill_s = fill_started.elapsed().as_secs_f64();
    let members = cmd_rxs.len();
    for (i, rx) in cmd_rxs.into_iter().enumerate() {
        tasks.push(tokio::spawn(member_slot(ctx.clone(), i, rx)));
    }
    let limit = secs(args.ramp_timeout.unwrap_or(60.0 + args.sockets as f64 / 25.0));
    while (ctx.board.open_members.load(Ordering::Relaxed) as usize) < members && started.elapsed() < limit {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let ramped = ctx.board.open_members.load(Ordering::Relaxed) as usize + args.rooms;
    Ok(Ramp { tasks, prefill_s, ramp_up_s: started.elapsed().as_secs_f64(), ramped })
}

/// The load's tasks until `until`: publications, API publications, churn, wrong passwords.
fn load(ctx: &Arc<Ctx>, api_key: Option<&Arc<str>>, until: Instant) -> Vec<tokio::task::JoinHandle<()>> {
    let mut load = vec![tokio::spawn(publish(ctx.clone(), until))];
    if let Some(key) = api_key {
        for node in 0..ctx.targets.len() {
            load.push(tokio::spawn(api::api_publications(ctx.clone(), key.clone(), node, until)));
        }
    }
    if ctx.args.churn > 0.0 {
        load.push(tokio::spawn(churn(ctx.clone(), until)));
    }
    if ctx.args.wrong_logins_per_sec > 0.0 {
        load.push(tokio::spawn(wrong_logins(ctx.clone(), until)));
    }
    load
}

/// Waits until every send is answered and every acked id is at its observer, or `--drain` is up.
async fn drain(ctx: &Ctx) -> f64 {
    let started = Instant::now();
    let until = started + secs(ctx.args.drain);
    while Instant::now() < until
        && (ctx.board.pending_sends.load(Ordering::Relaxed) > 0
            || !ctx.room_state.iter().all(Room::all_delivered))
    {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    started.elapsed().as_secs_f64()
}

pub async fn run(args: SoakArgs) -> anyhow::Result<Value> {
    let users = args::check_args(&args)?;
    let api_key: Option<Arc<str>> =
        args.api_key_file.as_deref().map(args::read_api_key).transpose()?.map(Arc::from);
    let rss_at_start = rss_kib(args.pid)?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let (ctx, cmd_rxs) = context(args, users, stop_rx);
    let args = &ctx.args;
    let (access_ttl, refresh_every) = fill_pool(&ctx).await?;
    let (upkeep_done, upkeep_rx) = watch::channel(false);
    let upkeep = tokio::spawn(pool_upkeep(ctx.clone(), refresh_every, upkeep_rx));
    let ramp = ramp_up(&ctx, cmd_rxs).await?;

    // The run. A script making faults waits for this line.
    let started = Instant::now();
    ctx.board.run_started_ms.store(board::unix_ms(), Ordering::Relaxed);
    eprintln!("soak: run started ({} sockets open), {} s to go", ramp.ramped, args.duration);
    let until = started + secs(args.duration);
    let samples = Arc::new(Mutex::new(Vec::new()));
    let (sampler_done, sampler_rx) = watch::channel(false);
    let sampler = tokio::spawn(sample_rss(ctx.clone(), started, samples.clone(), sampler_rx));
    let load = load(&ctx, api_key.as_ref(), until);
    tokio::time::sleep_until(until).await;
    let end_kib = rss_kib(args.pid).ok();
    let open_at_end = ctx.board.open_members.load(Ordering::Relaxed) as usize + args.rooms;
    for task in load {
        let _ = task.await;
    }
    eprintln!("soak: run over, draining");
    let drained_s = drain(&ctx).await;

    // Close everything, let the server settle, read its memory once more.
    let _ = sampler_done.send(true);
    let _ = sampler.await;
    let _ = stop_tx.send(true);
    let closing = async {
        for task in ramp.tasks {
            let _ = task.await;
        }
    };
    if tokio::time::timeout(Duration::from_secs(30), closing).await.is_err() {
        ctx.board.incident(C::close_timeouts, None, "sockets still closing 30 s after the stop");
    }
    tokio::time::sleep(secs(args.settle)).await;
    let after_close_kib = rss_kib(args.pid).ok();
    let server = server_metrics(args.addr).await;
    let samples = std::mem::take(&mut *samples.lock().expect("samples lock"));
    let _ = upkeep_done.send(true);
    let _ = upkeep.await;
    let summary = Summary {
        rss_at_start,
        prefill_s: ramp.prefill_s,
        ramp_up_s: ramp.ramp_up_s,
        ramped: ramp.ramped,
        open_at_end,
        end_kib,
        after_close_kib,
        drained_s,
        samples,
        server,
        refresh_every,
        access_ttl,
        api: api_key.is_some(),
    };
    Ok(summarize(&ctx, summary))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_picks_stay_in_range_and_spread() {
        let picks: std::collections::HashSet<usize> = (0..1000).map(|_| random_below(10)).collect();
        assert_eq!(picks.len(), 10);
        assert!(!chance(0.0));
        assert!(chance(1.0));
    }

    #[test]
    fn a_rooms_members_alternate_between_the_nodes() {
        let of_room_7: Vec<usize> = (0..4).map(|k| node_of_slot(7 + k * 50, 50, 2)).collect();
        assert_eq!(of_room_7, [0, 1, 0, 1]);
        assert!((0..500).all(|slot| node_of_slot(slot, 50, 1) == 0), "one node holds them all");
    }
}
