//! Webhooks in `/metrics`: events recorded, lost and delivered; POSTs by outcome; the queue.

use crate::metrics::{by_label, single, Counter, Family};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Mutex;

#[derive(Default)]
pub(crate) struct WebhookMetrics {
    pub(crate) recorded: Counter,
    /// Member changes never recorded (the store down, the queue full): their events are lost.
    pub(crate) unrecorded: Counter,
    pub(crate) delivered: Counter,
    /// POSTs by outcome: `ok`, `timeout`, `unreachable`, `status`.
    deliveries: Mutex<BTreeMap<&'static str, u64>>,
    /// Events waiting, and when the oldest of them happened (0: none), as this node last read.
    queued: AtomicI64,
    oldest_ms: AtomicI64,
}

impl WebhookMetrics {
    pub(crate) fn delivery(&self, outcome: &'static str) {
        *self.deliveries.lock().unwrap_or_else(|e| e.into_inner()).entry(outcome).or_default() += 1;
    }

    pub(crate) fn backlog(&self, queued: u64, oldest_ms: Option<i64>) {
        self.queued.store(queued as i64, Ordering::Relaxed);
        self.oldest_ms.store(oldest_ms.unwrap_or(0), Ordering::Relaxed);
    }

    /// The families, after the others of `/metrics`.
    pub(crate) fn families(&self) -> [Family; 4] {
        let events = [
            ("recorded", self.recorded.get()),
            ("unrecorded", self.unrecorded.get()),
            ("delivered", self.delivered.get()),
        ];
        let deliveries = self.deliveries.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let oldest = self.oldest_ms.load(Ordering::Relaxed);
        let age = if oldest == 0 { 0.0 } else { (crate::clock::now_ms() - oldest).max(0) as f64 / 1000.0 };
        [
            Family::counter(
                "wsguard_webhook_events_total",
                "Webhook events by what became of them.",
                by_label("result", events),
            ),
            Family::counter(
                "wsguard_webhook_deliveries_total",
                "Webhook POSTs by outcome.",
                by_label("outcome", deliveries),
            ),
            Family::gauge(
                "wsguard_webhook_queue_depth",
                "Webhook events not yet delivered.",
                single(self.queued.load(Ordering::Relaxed)),
            ),
            Family::gauge(
                "wsguard_webhook_oldest_event_age_seconds",
                "How long the oldest webhook event not yet delivered has waited.",
                single(format!("{age:.3}")),
            ),
        ]
    }
}
