//! Faults made during the run by a script (`scripts/faults.sh`): Redis or PostgreSQL stopped and
//! started again, a node killed and restarted. The script writes each step to a log, `<unix ms>
//! <event> [node]` a line; after the run the soak reads it and puts every incident in the window
//! of the fault it falls in (from the fault's start to `--fault-grace` seconds after its end).
//! What falls in no window is a failure; per fault, the report shows what happened meanwhile.

use super::board::{Acked, Incident, Room, Seen, C};
use anyhow::{bail, ensure, Context};
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, HashMap};

/// What was taken away.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum FaultKind {
    Redis,
    Postgres,
    /// A node (its index: 0 is `--addr`) killed with SIGKILL and started again.
    Node(usize),
}

/// One fault: down at, up again at (`None`: never came back).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Fault {
    pub(super) kind: FaultKind,
    pub(super) down_ms: i64,
    pub(super) up_ms: Option<i64>,
}

impl Fault {
    /// The incidents this fault answers for: from its start to `grace_ms` after its end.
    pub(super) fn covers(&self, at_ms: i64, grace_ms: i64) -> bool {
        at_ms >= self.down_ms && self.up_ms.is_none_or(|up| at_ms <= up + grace_ms)
    }

    fn name(&self) -> String {
        match self.kind {
            FaultKind::Redis => "Redis stopped and started".to_owned(),
            FaultKind::Postgres => "PostgreSQL stopped and started".to_owned(),
            FaultKind::Node(n) => format!("node {n} killed (SIGKILL) and started again"),
        }
    }
}

/// The faults of a fault log, in the order they started.
pub(super) fn parse(text: &str) -> anyhow::Result<Vec<Fault>> {
    let mut faults: Vec<Fault> = Vec::new();
    for (n, line) in text.lines().enumerate().map(|(n, l)| (n + 1, l.trim())) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let words: Vec<&str> = line.split_whitespace().collect();
        let at_ms: i64 = words[0].parse().with_context(|| format!("line {n}: not a unix time in ms"))?;
        let node = || -> anyhow::Result<usize> {
            words.get(2).context("no node index")?.parse().context("bad node index")
        };
        let (kind, up) = match words.get(1).copied() {
            Some("redis-down") => (FaultKind::Redis, false),
            Some("redis-up") => (FaultKind::Redis, true),
            Some("postgres-down") => (FaultKind::Postgres, false),
            Some("postgres-up") => (FaultKind::Postgres, true),
            Some("node-down") => (FaultKind::Node(node().with_context(|| format!("line {n}"))?), false),
            Some("node-up") => (FaultKind::Node(node().with_context(|| format!("line {n}"))?), true),
            _ => bail!("line {n}: unknown event: {line}"),
        };
        let open = faults.iter_mut().find(|f| f.kind == kind && f.up_ms.is_none());
        match (open, up) {
            (None, false) => faults.push(Fault { kind, down_ms: at_ms, up_ms: None }),
            (Some(fault), true) => {
                ensure!(at_ms >= fault.down_ms, "line {n}: up before down");
                fault.up_ms = Some(at_ms);
            }
            (Some(_), false) => bail!("line {n}: down again before up: {line}"),
            (None, true) => bail!("line {n}: up without a down: {line}"),
        }
    }
    Ok(faults)
}

/// The index of the first fault whose window holds `at_ms`.
pub(super) fn window_of(faults: &[Fault], grace_ms: i64, at_ms: i64) -> Option<usize> {
    faults.iter().position(|f| f.covers(at_ms, grace_ms))
}

/// Incidents of each kind by node (`-`: no node).
fn by_kind_and_node<'a>(incidents: impl Iterator<Item = &'a Incident>) -> Value {
    let mut out: BTreeMap<&str, BTreeMap<String, u64>> = BTreeMap::new();
    for i in incidents {
        let node = i.node.map_or_else(|| "-".to_owned(), |n| n.to_string());
        *out.entry(i.kind.name()).or_default().entry(node).or_default() += 1;
    }
    json!(out)
}

/// Seconds, to the tenth.
fn s(ms: i64) -> f64 {
    (ms as f64 / 100.0).round() / 10.0
}

/// Acked publications whose ack came between `from` and `to`, with their receipts.
fn acked_between(
    rooms: &[(Vec<Acked>, HashMap<i64, Seen>)],
    from: i64,
    to: i64,
) -> impl Iterator<Item = (&Acked, Option<&Seen>)> {
    rooms.iter().flat_map(move |(acked, seen)| {
        acked.iter().filter(move |a| a.at_ms >= from && a.at_ms <= to).map(move |a| (a, seen.get(&a.id)))
    })
}

/// How publications acked in a span fared: how many, how many arrived, ack → observer delays.
fn publications_between(rooms: &[(Vec<Acked>, HashMap<i64, Seen>)], from: i64, to: i64) -> Value {
    let mut delays: Vec<i64> = Vec::new();
    let (mut acked, mut missing, mut recovered) = (0u64, 0u64, 0u64);
    for (a, seen) in acked_between(rooms, from, to) {
        acked += 1;
        match seen {
            Some(seen) => {
                delays.push((seen.first_ms - a.at_ms).max(0));
                recovered += u64::from(seen.recovered);
            }
            None => missing += 1,
        }
    }
    delays.sort_unstable();
    let at = |q: f64| delays.get(((delays.len() as f64 - 1.0) * q).round() as usize).map(|d| s(*d));
    json!({
        "acked": acked,
        "missing": missing,
        "received_by_recovery": recovered,
        "delay_s": {"p50": at(0.5), "max": delays.last().map(|d| s(*d))},
    })
}

/// What the run saw of every fault: timing, publications during and after it, incidents in its
/// window (by kind and node), a few error samples; for a node, its rejoin.
pub(super) fn report(
    faults: &[Fault],
    grace_ms: i64,
    run_started_ms: i64,
    rooms: &[Room],
    incidents: &[Incident],
    samples: &[(i64, String)],
) -> Vec<Value> {
    let rooms: Vec<(Vec<Acked>, HashMap<i64, Seen>)> = rooms
        .iter()
        .map(|r| (r.acked.lock().expect("acked lock").clone(), r.seen.lock().expect("seen lock").clone()))
        .collect();
    faults
        .iter()
        .enumerate()
        .map(|(index, f)| {
            let up = f.up_ms.unwrap_or(i64::MAX);
            let mine = |at: i64| window_of(faults, grace_ms, at) == Some(index);
            let mut entry = Map::new();
            entry.insert("what".into(), json!(f.name()));
            entry.insert("down_at_s".into(), json!(s(f.down_ms - run_started_ms)));
            entry.insert("outage_s".into(), json!(f.up_ms.map(|u| s(u - f.down_ms))));
            entry.insert(
                "window_s".into(),
                json!([s(f.down_ms - run_started_ms), f.up_ms.map(|u| s(u + grace_ms - run_started_ms))]),
            );
            entry.insert("acked_during_outage".into(), publications_between(&rooms, f.down_ms, up));
            entry.insert(
                "acked_in_grace".into(),
                publications_between(&rooms, up, up.saturating_add(grace_ms)),
            );
            entry.insert("incidents".into(), by_kind_and_node(incidents.iter().filter(|i| mine(i.at_ms))));
            let some: Vec<&String> =
                samples.iter().filter(|(at, _)| mine(*at)).map(|(_, m)| m).take(5).collect();
            entry.insert("samples".into(), json!(some));
            if let (FaultKind::Node(node), Some(up)) = (f.kind, f.up_ms) {
                entry.insert("rejoin".into(), rejoin(&rooms, node, up));
            }
            Value::Object(entry)
        })
        .collect()
}

/// A restarted node back in the cluster: its observers, joined again with `since`, received what
/// they missed by recovery, then live publications acked on the other nodes.
fn rejoin(rooms: &[(Vec<Acked>, HashMap<i64, Seen>)], node: usize, up_ms: i64) -> Value {
    let (mut recovered, mut cross_live, mut first_cross) = (0u64, 0u64, None::<i64>);
    for (acked, seen) in rooms {
        let acked: HashMap<i64, &Acked> = acked.iter().map(|a| (a.id, a)).collect();
        for (id, seen) in seen.iter().filter(|(_, s)| s.node == node) {
            if seen.recovered && seen.first_ms >= up_ms {
                recovered += 1;
            }
            let other = acked.get(id).filter(|a| a.node != node && a.at_ms > up_ms);
            if other.is_some() && !seen.recovered {
                cross_live += 1;
                first_cross = Some(first_cross.map_or(seen.first_ms, |f| f.min(seen.first_ms)));
            }
        }
    }
    json!({
        "recovered_by_its_observers": recovered,
        "live_from_other_nodes_after_restart": cross_live,
        "first_live_from_other_nodes_s_after_up": first_cross.map(|f| s(f - up_ms)),
    })
}

/// Sockets of a node that was never killed ended other than by us or an expected 4001: anything
/// like that is a disturbance, whenever it happened.
pub(super) fn disturbances(incidents: &[Incident], node: usize) -> u64 {
    incidents
        .iter()
        .filter(|i| i.node == Some(node))
        .filter(|i| {
            matches!(
                i.kind,
                C::abnormal_closes
                    | C::closed_4001_unexpected
                    | C::server_closes_other
                    | C::observer_reconnects
            )
        })
        .count() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fault_log_pairs_downs_and_ups() {
        let log = "# faults\n100 redis-down\n250 redis-up\n300 postgres-down\n400 postgres-up\n\
                   500 node-down 1\n900 node-up 1\n";
        let faults = parse(log).expect("a good log");
        assert_eq!(faults.len(), 3);
        assert_eq!(faults[0], Fault { kind: FaultKind::Redis, down_ms: 100, up_ms: Some(250) });
        assert_eq!(faults[2].kind, FaultKind::Node(1));
        assert_eq!(window_of(&faults, 20, 260), Some(0), "in the grace after Redis");
        assert_eq!(window_of(&faults, 20, 280), None, "between faults");
        assert_eq!(window_of(&faults, 20, 920), Some(2));
        assert!(parse("100 redis-up\n").is_err(), "up without down");
        assert!(parse("100 redis-down\n200 redis-down\n").is_err(), "down twice");
        assert!(parse("100 node-down\n").is_err(), "no node");
        assert!(parse("x redis-down\n").is_err());
        assert!(parse("100 disk-full\n").is_err());
        let open = parse("100 postgres-down\n").expect("still down");
        assert!(open[0].covers(1_000_000, 0), "a fault that never ended covers the rest");
    }

    #[test]
    fn only_closes_count_as_disturbances_of_a_node() {
        let at = |kind, node| Incident { at_ms: 0, node: Some(node), kind };
        let incidents = [
            at(C::abnormal_closes, 1),
            at(C::connect_failures, 0),
            at(C::server_closes_other, 0),
            at(C::send_errors, 0),
        ];
        assert_eq!(disturbances(&incidents, 0), 1);
        assert_eq!(disturbances(&incidents, 1), 1);
    }
}
