//! The JSON line: settings, counts, publications against receipts, memory, faults, checks.

use super::board::{Incident, Receipts, Source, Tally, C};
use super::faults::{self, Fault, FaultKind};
use super::memory::{growth_kib_per_min, median_between, Sample};
use super::Ctx;
use crate::common::round1;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::time::Duration;

/// The memory check: the end of the run under full load against the settled figure.
const MEMORY_TOLERANCE: f64 = 1.10;
/// Error samples shown in the line.
const SAMPLES_SHOWN: usize = 20;

/// What the run measured beside the board.
pub(super) struct Summary {
    pub(super) rss_at_start: u64,
    pub(super) prefill_s: f64,
    pub(super) ramp_up_s: f64,
    pub(super) ramped: usize,
    pub(super) open_at_end: usize,
    pub(super) end_kib: Option<u64>,
    pub(super) after_close_kib: Option<u64>,
    pub(super) drained_s: f64,
    pub(super) samples: Vec<Sample>,
    pub(super) server: Value,
    pub(super) refresh_every: Duration,
    pub(super) access_ttl: i64,
    /// API publications were made.
    pub(super) api: bool,
}

/// Sums a per-room tally over the rooms.
fn tallies(ctx: &Ctx) -> (Tally, Tally, Receipts) {
    let (mut chat, mut api, mut receipts) = (Tally::default(), Tally::default(), Receipts::default());
    for room in &ctx.room_state {
        let acked = room.acked.lock().expect("acked lock");
        let seen = room.seen.lock().expect("seen lock");
        chat.add(&Tally::of(&acked, &seen, Source::Chat));
        api.add(&Tally::of(&acked, &seen, Source::Api));
        receipts.add(&Receipts::of(&acked, &seen));
    }
    (chat, api, receipts)
}

fn map_of<K: ToString>(counts: &BTreeMap<K, u64>) -> Value {
    Value::Object(counts.iter().map(|(k, n)| (k.to_string(), json!(n))).collect())
}

/// The faults of the log, or why they could not be read.
fn read_faults(ctx: &Ctx) -> Option<Result<Vec<Fault>, String>> {
    let file = ctx.args.faults.as_deref()?;
    let text = match std::fs::read_to_string(file) {
        Ok(text) => text,
        Err(e) => return Some(Err(format!("reading {}: {e}", file.display()))),
    };
    Some(faults::parse(&text).map_err(|e| format!("{}: {e:#}", file.display())))
}

/// The faults' part of the line and their checks, and the faults (none without a log).
fn fault_section(ctx: &Ctx, incidents: &[Incident], checks: &mut Map<String, Value>) -> (Value, Vec<Fault>) {
    let board = &ctx.board;
    let grace_ms = grace_ms(ctx);
    let faults = match read_faults(ctx) {
        None => return (Value::Null, Vec::new()),
        Some(Err(why)) => {
            checks.insert("faults_made".into(), json!(false));
            return (json!({"error": why}), Vec::new());
        }
        Some(Ok(faults)) => faults,
    };
    let complete = !faults.is_empty() && faults.iter().all(|f| f.up_ms.is_some());
    checks.insert("faults_made".into(), json!(complete));
    let samples = board.samples.lock().expect("samples lock");
    let run_started = board.run_started_ms.load(Ordering::Relaxed);
    let report = faults::report(&faults, grace_ms, run_started, &ctx.room_state, incidents, &samples);
    let killed: Vec<usize> =
        faults.iter().filter_map(|f| if let FaultKind::Node(n) = f.kind { Some(n) } else { None }).collect();
    let surviving: Map<String, Value> = (0..ctx.targets.len())
        .filter(|n| !killed.contains(n))
        .map(|n| (n.to_string(), json!(faults::disturbances(incidents, n))))
        .collect();
    checks.insert("surviving_nodes_undisturbed".into(), json!(surviving.values().all(|v| v == &json!(0))));
    if !killed.is_empty() {
        let rejoined = report
            .iter()
            .filter_map(|f| f.get("rejoin"))
            .all(|r| r["live_from_other_nodes_after_restart"].as_u64().unwrap_or(0) > 0);
        checks.insert("restarted_nodes_rejoined".into(), json!(rejoined));
    }
    let section = json!({
        "grace_s": ctx.args.fault_grace,
        "faults": report,
        "surviving_nodes_disturbances": surviving,
        "killed_nodes": killed,
    });
    (section, faults)
}

fn grace_ms(ctx: &Ctx) -> i64 {
    (ctx.args.fault_grace * 1000.0) as i64
}

/// The publications' part of the line.
fn publications(ctx: &Ctx, s: &Summary) -> (Value, bool) {
    let board = &ctx.board;
    let (chat, api, receipts) = tallies(ctx);
    let delivered = chat.missing == 0
        && api.missing == 0
        && receipts.duplicates == 0
        && chat.acked_twice + api.acked_twice == 0;
    let api = if s.api {
        json!({
            "status": "run",
            "sent": board.get(C::api_sent),
            "acked": api.acked,
            "missing": api.missing,
            "acked_twice": api.acked_twice,
            "refused": board.get(C::api_refused),
            "transport_errors": board.get(C::api_transport_errors),
        })
    } else {
        json!({"status": "not run", "reason": "no --api-key-file"})
    };
    let value = json!({
        "chat": {
            "sent": board.get(C::sends),
            "acked": chat.acked,
            "missing": chat.missing,
            "acked_twice": chat.acked_twice,
            "unacked_at_close": board.get(C::unacked_at_close),
        },
        "api": api,
        "observers": {
            "received": board.get(C::observer_deliveries),
            "received_by_recovery": board.get(C::recovered_deliveries),
            "duplicates": receipts.duplicates,
            "delivered_unacked": receipts.delivered_unacked,
        },
        "drain_s": round1(s.drained_s),
    });
    (value, delivered)
}

fn settings(ctx: &Ctx, s: &Summary) -> Value {
    let args = &ctx.args;
    json!({
        "duration_s": args.duration,
        "nodes": args.node_addrs().iter().map(ToString::to_string).collect::<Vec<_>>(),
        "sockets": args.sockets,
        "rooms": args.rooms,
        "observers": args.rooms,
        "churn_per_s": args.churn,
        "no_refresh_share": args.no_refresh_share,
        "publications_per_s": args.rate,
        "api_publications_per_s": s.api.then_some(args.api_rate),
        "prefill_per_room": args.prefill,
        "users": ctx.users.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>(),
        "logins_per_user": args.logins_per_user,
        "login_every_s": args.login_every,
        "pool_refresh_every_s": round1(s.refresh_every.as_secs_f64()),
        "access_ttl_s": s.access_ttl,
        "wrong_logins_per_s": args.wrong_logins_per_sec,
        "wrong_login_from": args.wrong_login_from.to_string(),
        "rss_every_s": args.rss_every,
    })
}

fn memory(ctx: &Ctx, s: &Summary) -> (Value, Option<f64>) {
    let duration = ctx.args.duration;
    // Settled: the median over the second fifth of the run.
    let window = (duration / 5.0, 2.0 * duration / 5.0);
    let settled = median_between(&s.samples, window.0, window.1);
    let ratio = settled.zip(s.end_kib).map(|(settled, end)| end as f64 / settled.max(1) as f64);
    let rooms = ctx.args.rooms as i64;
    let value = json!({
        "at_start": s.rss_at_start,
        "settled": settled,
        "settled_window_s": [round1(window.0), round1(window.1)],
        "end": s.end_kib,
        "after_close": s.after_close_kib,
        "max": s.samples.iter().map(|x| x.kib).max(),
        "end_over_settled": ratio.map(|r| (r * 1000.0).round() / 1000.0),
        "growth_after_settling_kib_per_min": growth_kib_per_min(&s.samples, window.0).map(round1),
        "samples": s.samples.iter().map(|x| json!([round1(x.t), x.kib, x.open + rooms])).collect::<Vec<_>>(),
    });
    (value, ratio)
}

pub(super) fn summarize(ctx: &Ctx, s: Summary) -> Value {
    let (args, board) = (&ctx.args, &ctx.board);
    let opens: Vec<i64> = s.samples.iter().map(|x| x.open + args.rooms as i64).collect();
    let incidents = board.incidents.lock().expect("incidents lock").clone();
    let mut checks = Map::new();
    let (publications, delivered) = publications(ctx, &s);
    checks.insert("every_acked_delivered".into(), json!(delivered));
    let (rss, ratio) = memory(ctx, &s);
    let (faults, fault_list) = fault_section(ctx, &incidents, &mut checks);
    if faults.is_null() {
        // With faults, what the server went through is not a steady state: memory is shown only.
        checks.insert("memory_within_10pct".into(), json!(ratio.is_some_and(|r| r <= MEMORY_TOLERANCE)));
    }
    let grace_ms = grace_ms(ctx);
    let unexplained = |at_ms: i64| faults::window_of(&fault_list, grace_ms, at_ms).is_none();
    let mut errors_by_kind: BTreeMap<&str, u64> = BTreeMap::new();
    for i in incidents.iter().filter(|i| unexplained(i.at_ms)) {
        *errors_by_kind.entry(i.kind.name()).or_default() += 1;
    }
    let errors: u64 = errors_by_kind.values().sum();
    checks.insert("no_generator_errors".into(), json!(errors == 0));
    let shown: Vec<String> = board
        .samples
        .lock()
        .expect("samples lock")
        .iter()
        .filter(|(at, _)| unexplained(*at))
        .map(|(_, m)| m.clone())
        .take(SAMPLES_SHOWN)
        .collect();
    let node_closes: Map<String, Value> = board
        .node_closes
        .iter()
        .enumerate()
        .map(|(n, closes)| (n.to_string(), map_of(&closes.lock().expect("closes lock"))))
        .collect();
    json!({
        "addr": args.addr.to_string(),
        "settings": settings(ctx, &s),
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
            "by_server": map_of(&board.server_closes.lock().expect("closes lock")),
            "abnormal": board.get(C::abnormal_closes),
            "by_node": node_closes,
        },
        "wrong_logins_by_status": map_of(&board.wrong_login_statuses.lock().expect("statuses lock")),
        "publications": publications,
        "rss_kib": rss,
        "server_metrics_after_close": s.server,
        "faults": faults,
        "errors": errors,
        "errors_by_kind": errors_by_kind,
        "error_samples": shown,
        "checks": checks,
    })
}
