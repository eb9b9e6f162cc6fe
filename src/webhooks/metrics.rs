//! Webhooks in `/metrics`: events recorded, lost and delivered; POSTs by outcome; the queue.

use crate::metrics::Counter;
use std::collections::BTreeMap;
use std::fmt::Write;
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
    pub(crate) fn render(&self, out: &mut String) {
        let mut family = |name: &str, kind: &str, help: &str, samples: &[(String, String)]| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for (labels, value) in samples {
                let _ = writeln!(out, "{name}{labels} {value}");
            }
        };
        let events = [
            ("recorded", self.recorded.get()),
            ("unrecorded", self.unrecorded.get()),
            ("delivered", self.delivered.get()),
        ];
        let events: Vec<_> =
            events.iter().map(|(r, n)| (format!("{{result=\"{r}\"}}"), n.to_string())).collect();
        family("wsguard_webhook_events_total", "counter", "Webhook events by what became of them.", &events);
        let deliveries = self.deliveries.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let deliveries: Vec<_> =
            deliveries.iter().map(|(o, n)| (format!("{{outcome=\"{o}\"}}"), n.to_string())).collect();
        family("wsguard_webhook_deliveries_total", "counter", "Webhook POSTs by outcome.", &deliveries);
        let queued = self.queued.load(Ordering::Relaxed).to_string();
        family(
            "wsguard_webhook_queue_depth",
            "gauge",
            "Webhook events not yet delivered.",
            &[(String::new(), queued)],
        );
        let oldest = self.oldest_ms.load(Ordering::Relaxed);
        let age = if oldest == 0 { 0.0 } else { (crate::clock::now_ms() - oldest).max(0) as f64 / 1000.0 };
        family(
            "wsguard_webhook_oldest_event_age_seconds",
            "gauge",
            "How long the oldest webhook event not yet delivered has waited.",
            &[(String::new(), format!("{age:.3}"))],
        );
    }
}
