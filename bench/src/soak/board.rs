//! What the soak counts: counters, incidents (what went wrong, when and on which node), closes by
//! node, and per room the publications acked and the observer's receipts.

use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};
use tokio::time::Instant;

/// Error messages kept, beyond the counts (the report shows a few of them).
const ERROR_SAMPLES: usize = 1000;
/// Incidents kept with their time and node, for the faults' windows.
const MAX_INCIDENTS: usize = 200_000;

macro_rules! counters {
    ($($name:ident),* $(,)?) => {
        /// The soak's counters, each a field of the JSON line's `counts`.
        #[allow(non_camel_case_types)]
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
        pub(super) enum C { $($name),* }
        const COUNTER_NAMES: &[&str] = &[$(stringify!($name)),*];
        impl C {
            pub(super) fn name(self) -> &'static str {
                COUNTER_NAMES[self as usize]
            }
        }
    };
}

counters!(
    // Sockets.
    connects,
    connect_failures,
    observer_reconnects,
    observer_recovered,
    observer_not_recovered,
    churn_closes,
    final_closes,
    abnormal_closes,
    closed_4001_expected,
    closed_4001_unexpected,
    server_closes_other,
    close_timeouts,
    // Tokens on sockets.
    expiring,
    refresh_sent,
    refreshed,
    refresh_failed,
    refresh_unavailable,
    refresh_skipped_stale,
    // Chat publications.
    sends,
    sends_skipped,
    acks,
    send_errors,
    unacked_at_close,
    deliveries,
    observer_deliveries,
    recovered_deliveries,
    // API publications.
    api_sent,
    api_acked,
    api_refused,
    api_transport_errors,
    // Logins and the pool.
    logins_ok,
    logins_failed,
    pool_refreshes_ok,
    pool_refreshes_failed,
    pool_connect_failures,
    wrong_logins,
    wrong_login_transport_errors,
    wrong_login_unexpected_status,
    // The server's memory could not be read.
    rss_read_failures,
    // Anything the protocol does not allow: an unexpected frame, an ack for another ref.
    protocol_surprises,
);

/// Unix time in milliseconds: the soak's clock, shared with the fault log a script writes.
pub(super) fn unix_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

/// Something that went wrong: when, on which node (`None`: not a node's socket or call).
#[derive(Clone, Copy, Debug)]
pub(super) struct Incident {
    pub(super) at_ms: i64,
    pub(super) node: Option<usize>,
    pub(super) kind: C,
}

/// Counters, incidents, closes by code and node, wrong logins by status.
pub(super) struct Board {
    counts: Vec<AtomicU64>,
    pub(super) server_closes: Mutex<BTreeMap<u16, u64>>,
    /// Per node: how its sockets ended when we did not close them ("4001 expected", "1013", …).
    pub(super) node_closes: Vec<Mutex<BTreeMap<String, u64>>>,
    pub(super) wrong_login_statuses: Mutex<BTreeMap<u16, u64>>,
    pub(super) incidents: Mutex<Vec<Incident>>,
    /// (unix ms, message) of the first incidents.
    pub(super) samples: Mutex<Vec<(i64, String)>>,
    /// Members joined now (observers not included).
    pub(super) open_members: AtomicI64,
    /// Sends written and not yet answered, over all sockets.
    pub(super) pending_sends: AtomicI64,
    /// Unix ms the run (after the ramp-up) started at; 0 before.
    pub(super) run_started_ms: AtomicI64,
    pub(super) started: Instant,
}

impl Board {
    pub(super) fn new(nodes: usize) -> Board {
        Board {
            counts: COUNTER_NAMES.iter().map(|_| AtomicU64::new(0)).collect(),
            server_closes: Mutex::default(),
            node_closes: (0..nodes).map(|_| Mutex::default()).collect(),
            wrong_login_statuses: Mutex::default(),
            incidents: Mutex::default(),
            samples: Mutex::default(),
            open_members: AtomicI64::new(0),
            pending_sends: AtomicI64::new(0),
            run_started_ms: AtomicI64::new(0),
            started: Instant::now(),
        }
    }

    pub(super) fn add(&self, c: C) {
        self.counts[c as usize].fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn get(&self, c: C) -> u64 {
        self.counts[c as usize].load(Ordering::Relaxed)
    }

    /// Counts `kind` as something that went wrong on `node`, keeps its time, and `what` among
    /// the samples.
    pub(super) fn incident(&self, kind: C, node: Option<usize>, what: impl Into<String>) {
        self.add(kind);
        let at_ms = unix_ms();
        {
            let mut incidents = self.incidents.lock().expect("incidents lock");
            if incidents.len() < MAX_INCIDENTS {
                incidents.push(Incident { at_ms, node, kind });
            }
        }
        let mut samples = self.samples.lock().expect("samples lock");
        if samples.len() < ERROR_SAMPLES {
            let at = self.started.elapsed().as_secs_f64();
            let on = node.map_or_else(String::new, |n| format!(" (node {n})"));
            samples.push((at_ms, format!("{at:.1} s{on}: {}", what.into())));
        }
    }

    pub(super) fn server_close(&self, code: u16) {
        *self.server_closes.lock().expect("closes lock").entry(code).or_default() += 1;
    }

    pub(super) fn node_close(&self, node: usize, how: impl Into<String>) {
        if let Some(closes) = self.node_closes.get(node) {
            *closes.lock().expect("closes lock").entry(how.into()).or_default() += 1;
        }
    }

    pub(super) fn counts_json(&self) -> Value {
        let counts: Map<String, Value> = COUNTER_NAMES
            .iter()
            .zip(&self.counts)
            .map(|(n, c)| ((*n).to_owned(), json!(c.load(Ordering::Relaxed))))
            .collect();
        Value::Object(counts)
    }
}

/// Who made a publication.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Source {
    /// A member's `send`.
    Chat,
    /// `POST /api/publish`.
    Api,
}

/// One acknowledged publication: its id, who made it, on which node, when the ack came.
#[derive(Clone, Copy, Debug)]
pub(super) struct Acked {
    pub(super) id: i64,
    pub(super) source: Source,
    pub(super) node: usize,
    pub(super) at_ms: i64,
}

/// An id as its room's observer received it: how often, first when, whether first recovered
/// (sent in answer to a `join` with `since`) rather than live, on which node.
#[derive(Clone, Copy, Debug)]
pub(super) struct Seen {
    pub(super) times: u32,
    pub(super) first_ms: i64,
    pub(super) recovered: bool,
    pub(super) node: usize,
}

/// One room: the publications acked to their senders, and its observer's receipts.
#[derive(Default)]
pub(super) struct Room {
    pub(super) acked: Mutex<Vec<Acked>>,
    pub(super) seen: Mutex<HashMap<i64, Seen>>,
}

impl Room {
    pub(super) fn ack(&self, id: i64, source: Source, node: usize) {
        let acked = Acked { id, source, node, at_ms: unix_ms() };
        self.acked.lock().expect("acked lock").push(acked);
    }

    pub(super) fn saw(&self, id: i64, node: usize, recovered: bool) {
        let mut seen = self.seen.lock().expect("seen lock");
        seen.entry(id).or_insert(Seen { times: 0, first_ms: unix_ms(), recovered, node }).times += 1;
    }

    pub(super) fn has_seen(&self, id: i64) -> bool {
        self.seen.lock().expect("seen lock").contains_key(&id)
    }

    /// Whether every acked id reached the observer.
    pub(super) fn all_delivered(&self) -> bool {
        let seen = self.seen.lock().expect("seen lock");
        self.acked.lock().expect("acked lock").iter().all(|a| seen.contains_key(&a.id))
    }
}

/// Acked publications of one source against the observer's receipts.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Tally {
    pub(super) acked: u64,
    /// Acked, never received by the observer.
    pub(super) missing: u64,
    /// Ids acked more than once.
    pub(super) acked_twice: u64,
}

/// The observer's receipts against every acked publication.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Receipts {
    /// Ids the observer received more than once.
    pub(super) duplicates: u64,
    /// Received but never acked: the sender closed (or the API call failed) before the answer.
    pub(super) delivered_unacked: u64,
}

impl Tally {
    pub(super) fn of(acked: &[Acked], seen: &HashMap<i64, Seen>, source: Source) -> Tally {
        let mut tally = Tally::default();
        let mut unique = HashSet::new();
        for a in acked.iter().filter(|a| a.source == source) {
            tally.acked += 1;
            if !unique.insert(a.id) {
                tally.acked_twice += 1;
            }
            if !seen.contains_key(&a.id) {
                tally.missing += 1;
            }
        }
        tally
    }

    pub(super) fn add(&mut self, other: &Tally) {
        self.acked += other.acked;
        self.missing += other.missing;
        self.acked_twice += other.acked_twice;
    }
}

impl Receipts {
    pub(super) fn of(acked: &[Acked], seen: &HashMap<i64, Seen>) -> Receipts {
        let ids: HashSet<i64> = acked.iter().map(|a| a.id).collect();
        Receipts {
            duplicates: seen.values().filter(|s| s.times > 1).count() as u64,
            delivered_unacked: seen.keys().filter(|id| !ids.contains(id)).count() as u64,
        }
    }

    pub(super) fn add(&mut self, other: &Receipts) {
        self.duplicates += other.duplicates;
        self.delivered_unacked += other.delivered_unacked;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acked(id: i64, source: Source) -> Acked {
        Acked { id, source, node: 0, at_ms: 0 }
    }

    fn seen(pairs: &[(i64, u32)]) -> HashMap<i64, Seen> {
        pairs
            .iter()
            .map(|&(id, times)| (id, Seen { times, first_ms: 0, recovered: false, node: 0 }))
            .collect()
    }

    #[test]
    fn the_tally_finds_missing_duplicate_and_unacked_ids_per_source() {
        let all = [acked(1, Source::Chat), acked(2, Source::Chat), acked(3, Source::Api)];
        let receipts = seen(&[(1, 1), (2, 2), (4, 1)]);
        assert_eq!(Tally::of(&all, &receipts, Source::Chat), Tally { acked: 2, missing: 0, acked_twice: 0 });
        assert_eq!(Tally::of(&all, &receipts, Source::Api), Tally { acked: 1, missing: 1, acked_twice: 0 });
        assert_eq!(Receipts::of(&all, &receipts), Receipts { duplicates: 1, delivered_unacked: 1 });
        let twice = [acked(7, Source::Chat), acked(7, Source::Chat)];
        assert_eq!(Tally::of(&twice, &seen(&[(7, 1)]), Source::Chat).acked_twice, 1);
    }

    #[test]
    fn incidents_keep_their_node_and_count() {
        let board = Board::new(2);
        board.incident(C::connect_failures, Some(1), "refused");
        board.incident(C::logins_failed, None, "503");
        assert_eq!(board.get(C::connect_failures), 1);
        let incidents = board.incidents.lock().expect("lock");
        assert_eq!(incidents.len(), 2);
        assert_eq!((incidents[0].node, incidents[0].kind), (Some(1), C::connect_failures));
        assert!(board.samples.lock().expect("lock")[0].1.contains("(node 1): refused"));
    }
}
