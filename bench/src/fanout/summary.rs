//! The run's JSON line: from the board, the servers' CPU and Redis's counters.

use super::board::Board;
use crate::common::{round1, Latency};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::time::Duration;

/// What the run measured besides the board.
pub(super) struct Measured {
    pub(super) sent: usize,
    pub(super) stalls: u64,
    /// Members of one channel on each node, and how many channels.
    pub(super) members_on: Vec<usize>,
    pub(super) channels: usize,
    /// CPU seconds of each `--pid` over the measured window.
    pub(super) server_cpu: Vec<f64>,
    /// The generator's CPU seconds, and the window's wall seconds.
    pub(super) generator_cpu: f64,
    pub(super) wall: f64,
    /// Redis commands processed meanwhile (all clients), and the calls of each command.
    pub(super) redis: Option<(u64, BTreeMap<String, u64>)>,
}

fn ms(d: u64) -> Duration {
    Duration::from_nanos(d)
}

/// Rounds to three decimals.
fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

fn per(n: f64, d: f64) -> Value {
    if d > 0.0 {
        json!(round3(n / d))
    } else {
        Value::Null
    }
}

pub(super) fn line(board: &Board, m: &Measured) -> Value {
    let nodes = m.members_on.len();
    let expected_each: u32 = m.members_on.iter().sum::<usize>() as u32;
    let (mut to_last, mut to_first, mut to_ack) =
        (Latency::default(), Latency::default(), Latency::default());
    let mut node_last: Vec<Latency> = (0..nodes).map(|_| Latency::default()).collect();
    let mut per_node = vec![0u64; nodes];
    let (mut complete, mut first_sent, mut last_received) = (0u64, u64::MAX, 0u64);
    for seq in 0..m.sent {
        let sent_at = board.sent_at(seq);
        first_sent = first_sent.min(sent_at);
        let (received, last) = board.on_all(seq);
        last_received = last_received.max(last);
        if received >= expected_each {
            to_last.record(ms(last.saturating_sub(sent_at)));
        }
        if board.complete(seq) {
            complete += 1;
        }
        if let Some(first) = board.first_at(seq) {
            to_first.record(ms(first.saturating_sub(sent_at)));
        }
        if let Some(ack) = board.ack_at(seq) {
            to_ack.record(ms(ack.saturating_sub(sent_at)));
        }
        for (node, hist) in node_last.iter_mut().enumerate() {
            let (received, last) = board.on_node(node, seq);
            per_node[node] += u64::from(received);
            if received as usize >= m.members_on[node] {
                hist.record(ms(last.saturating_sub(sent_at)));
            }
        }
    }
    let deliveries: u64 = per_node.iter().sum();
    let expected = m.sent as u64 * u64::from(expected_each);
    let span = ms(last_received.saturating_sub(first_sent)).as_secs_f64().max(1e-9);
    let cpu: f64 = m.server_cpu.iter().sum();
    let mut line = json!({
        "sent": m.sent,
        "publications_per_s": round1(m.sent as f64 / span),
        "acks": board.acks.load(Ordering::Relaxed),
        "complete": complete,
        "incomplete": m.sent as u64 - complete,
        "deliveries": deliveries,
        "deliveries_expected": expected,
        // Not received by the end of the drain.
        "lost": expected.saturating_sub(deliveries),
        "deliveries_per_s": round1(deliveries as f64 / span),
        "p50_ms": to_last.p50_ms(),
        "p99_ms": to_last.p99_ms(),
        "max_ms": to_last.max_ms(),
        "first_p50_ms": to_first.p50_ms(),
        "first_p99_ms": to_first.p99_ms(),
        "ack_p50_ms": to_ack.p50_ms(),
        "ack_p99_ms": to_ack.p99_ms(),
        "window_stalls": m.stalls,
        "error_frames": board.error_frames.load(Ordering::Relaxed),
        "closed_by_server": board.closed_by_server.load(Ordering::Relaxed),
        "offsets_out_of_order": board.offsets_out_of_order.load(Ordering::Relaxed),
        "generator_window_cpu_pct": (m.generator_cpu / m.wall.max(1e-9) * 100.0).round(),
    });
    if !m.server_cpu.is_empty() {
        line["server_cpu_s"] = json!(round3(cpu));
        line["server_cpu_pct"] = json!((cpu / m.wall.max(1e-9) * 100.0).round());
        line["server_cpu_us_per_delivery"] = per(cpu * 1e6, deliveries as f64);
    }
    if nodes > 1 {
        line["members_per_node"] = json!(m.members_on.iter().map(|n| n * m.channels).collect::<Vec<_>>());
        line["deliveries_per_node"] = json!(per_node);
        line["deliveries_per_s_per_node"] =
            json!(per_node.iter().map(|&d| round1(d as f64 / span)).collect::<Vec<_>>());
        for (node, &d) in per_node.iter().enumerate() {
            line[format!("deliveries_per_s_node_{node}")] = json!(round1(d as f64 / span));
        }
        line["p99_ms_per_node"] = json!(node_last.iter().map(Latency::p99_ms).collect::<Vec<_>>());
        if m.server_cpu.len() == nodes {
            let us: Vec<Value> =
                m.server_cpu.iter().zip(&per_node).map(|(&c, &d)| per(c * 1e6, d as f64)).collect();
            line["server_cpu_us_per_delivery_per_node"] = json!(us);
        }
    }
    if let Some((commands, calls)) = &m.redis {
        let pubs = m.sent as f64;
        line["redis_commands"] = json!(commands);
        line["redis_commands_per_publication"] = per(*commands as f64, pubs);
        let each: BTreeMap<&String, Value> =
            calls.iter().map(|(name, &n)| (name, per(n as f64, pubs))).collect();
        line["redis_calls_per_publication"] = json!(each);
    }
    line
}
