//! What every member records into, one slot per publication (its sequence number `seq`), and the
//! window of outstanding publications the sender waits on at saturation.
//!
//! Times are nanoseconds since `epoch`. Per node, `last_ns` and `received` hold one slot per
//! publication at `node * capacity + seq`; deliveries are counted there, not in a shared counter
//! every member would contend on.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use tokio::sync::Semaphore;

pub(super) struct Board {
    epoch: std::time::Instant,
    pub(super) capacity: usize,
    nodes: usize,
    /// When each publication was sent (or, paced, was due to be sent).
    sent_ns: Vec<AtomicU64>,
    /// When its ack came back; 0: not yet.
    ack_ns: Vec<AtomicU64>,
    /// When the first member received it; `u64::MAX`: none yet.
    first_ns: Vec<AtomicU64>,
    last_ns: Vec<AtomicU64>,
    received: Vec<AtomicU32>,
    /// Events still awaited (every member's delivery and the ack): at 0 the publication is complete
    /// and leaves the window.
    pending: Vec<AtomicU32>,
    /// Publications that may still be outstanding; a complete one gives its permit back.
    pub(super) window: Semaphore,
    pub(super) acks: AtomicU64,
    pub(super) error_frames: AtomicU64,
    pub(super) closed_by_server: AtomicU64,
    /// Deliveries whose offset was not above the member's previous one.
    pub(super) offsets_out_of_order: AtomicU64,
}

impl Board {
    pub(super) fn new(capacity: usize, nodes: usize, window: usize) -> Board {
        let zeros = |_| AtomicU64::new(0);
        Board {
            epoch: std::time::Instant::now(),
            capacity,
            nodes,
            sent_ns: (0..capacity).map(zeros).collect(),
            ack_ns: (0..capacity).map(zeros).collect(),
            first_ns: (0..capacity).map(|_| AtomicU64::new(u64::MAX)).collect(),
            last_ns: (0..capacity * nodes).map(zeros).collect(),
            received: (0..capacity * nodes).map(|_| AtomicU32::new(0)).collect(),
            pending: (0..capacity).map(|_| AtomicU32::new(0)).collect(),
            window: Semaphore::new(window),
            acks: AtomicU64::new(0),
            error_frames: AtomicU64::new(0),
            closed_by_server: AtomicU64::new(0),
            offsets_out_of_order: AtomicU64::new(0),
        }
    }

    pub(super) fn now_ns(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// Nanoseconds since the epoch of an instant at or after it.
    pub(super) fn ns_of(&self, at: tokio::time::Instant) -> u64 {
        let at = at.into_std().saturating_duration_since(self.epoch);
        u64::try_from(at.as_nanos()).unwrap_or(u64::MAX)
    }

    /// Publication `seq` is about to be sent at `at_ns`; `events` deliveries and acks will follow.
    pub(super) fn start(&self, seq: usize, at_ns: u64, events: u32) {
        self.pending[seq].store(events, Ordering::Relaxed);
        self.sent_ns[seq].store(at_ns.max(1), Ordering::Release);
    }

    /// One member connected to `node` received publication `seq`.
    pub(super) fn deliver(&self, node: usize, seq: usize) {
        if seq >= self.capacity || node >= self.nodes {
            return;
        }
        let now = self.now_ns();
        self.first_ns[seq].fetch_min(now, Ordering::Relaxed);
        let slot = node * self.capacity + seq;
        self.last_ns[slot].fetch_max(now, Ordering::Relaxed);
        self.received[slot].fetch_add(1, Ordering::Relaxed);
        self.settle(seq);
    }

    /// The ack of publication `seq` came back.
    pub(super) fn ack(&self, seq: usize) {
        if seq >= self.capacity {
            return;
        }
        self.ack_ns[seq].store(self.now_ns(), Ordering::Relaxed);
        self.acks.fetch_add(1, Ordering::Relaxed);
        self.settle(seq);
    }

    /// One awaited event of `seq` happened: the last one frees its place in the window.
    fn settle(&self, seq: usize) {
        let left = self.pending[seq].fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
        if left == Ok(1) {
            self.window.add_permits(1);
        }
    }

    pub(super) fn sent_at(&self, seq: usize) -> u64 {
        self.sent_ns[seq].load(Ordering::Acquire)
    }

    pub(super) fn ack_at(&self, seq: usize) -> Option<u64> {
        Some(self.ack_ns[seq].load(Ordering::Relaxed)).filter(|&t| t > 0)
    }

    pub(super) fn first_at(&self, seq: usize) -> Option<u64> {
        Some(self.first_ns[seq].load(Ordering::Relaxed)).filter(|&t| t < u64::MAX)
    }

    /// Members of `node` that received `seq`, and when the last of them did.
    pub(super) fn on_node(&self, node: usize, seq: usize) -> (u32, u64) {
        let slot = node * self.capacity + seq;
        (self.received[slot].load(Ordering::Relaxed), self.last_ns[slot].load(Ordering::Relaxed))
    }

    /// Members of all nodes that received `seq`, and when the last of them did.
    pub(super) fn on_all(&self, seq: usize) -> (u32, u64) {
        (0..self.nodes)
            .map(|node| self.on_node(node, seq))
            .fold((0, 0), |(n, last), (m, at)| (n + m, last.max(at)))
    }

    /// Whether every delivery and the ack of `seq` arrived.
    pub(super) fn complete(&self, seq: usize) -> bool {
        self.pending[seq].load(Ordering::Acquire) == 0
    }
}
