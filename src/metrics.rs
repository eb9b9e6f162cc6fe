//! Counters and gauges, rendered in the Prometheus text format at `/metrics`.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Mutex;

#[derive(Default)]
pub(crate) struct Counter(AtomicU64);

impl Counter {
    pub(crate) fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn inc_by(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
    pub(crate) fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

#[derive(Default)]
pub(crate) struct Gauge(AtomicI64);

impl Gauge {
    pub(crate) fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn dec(&self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
    pub(crate) fn get(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Server-API calls by key name and status class (`2xx`…`5xx`). Key names are few (made by an
/// operator), so the label set stays small; calls without a valid key count under `(none)`.
#[derive(Default)]
pub(crate) struct ApiCalls(Mutex<BTreeMap<String, [u64; STATUS_CLASSES.len()]>>);

/// The key label of calls that presented no valid key (a name can hold no parenthesis).
pub(crate) const NO_KEY: &str = "(none)";

const STATUS_CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

impl ApiCalls {
    pub(crate) fn count(&self, key: &str, status: u16) {
        let class = usize::from(status.clamp(100, 599) / 100 - 1);
        let mut calls = self.0.lock().unwrap_or_else(|e| e.into_inner());
        // A key seen before (nearly every call) allocates nothing.
        match calls.get_mut(key) {
            Some(counts) => counts[class] += 1,
            None => calls.entry(key.to_owned()).or_default()[class] += 1,
        }
    }

    /// `{key="…",status="…"}` and the count of each class seen.
    fn samples(&self) -> Vec<(String, String)> {
        let calls = self.0.lock().unwrap_or_else(|e| e.into_inner());
        calls
            .iter()
            .flat_map(|(key, counts)| {
                STATUS_CLASSES.iter().zip(counts).filter(|(_, &count)| count > 0).map(
                    move |(class, count)| {
                        (format!("{{key=\"{key}\",status=\"{class}\"}}"), count.to_string())
                    },
                )
            })
            .collect()
    }
}

/// Calls to the application's proxy endpoints: how many by event and outcome, and how long they
/// took by event (a Prometheus histogram).
#[derive(Default)]
pub(crate) struct ProxyCalls(Mutex<BTreeMap<&'static str, ProxyEvent>>);

#[derive(Default)]
struct ProxyEvent {
    outcomes: BTreeMap<&'static str, u64>,
    /// Calls at or under each of [`PROXY_BUCKETS`], then every call.
    buckets: [u64; PROXY_BUCKETS.len()],
    count: u64,
    seconds: f64,
}

/// The histogram's upper bounds, in seconds.
const PROXY_BUCKETS: [f64; 10] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0];

impl ProxyCalls {
    pub(crate) fn record(&self, event: &'static str, outcome: &'static str, took: std::time::Duration) {
        let mut events = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let calls = events.entry(event).or_default();
        *calls.outcomes.entry(outcome).or_default() += 1;
        let seconds = took.as_secs_f64();
        for (bucket, bound) in calls.buckets.iter_mut().zip(PROXY_BUCKETS) {
            if seconds <= bound {
                *bucket += 1;
            }
        }
        calls.count += 1;
        calls.seconds += seconds;
    }

    /// `{event="…",outcome="…"}` and the count of each.
    fn outcomes(&self) -> Vec<(String, String)> {
        let events = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let mut samples = Vec::new();
        for (event, calls) in events.iter() {
            for (outcome, count) in &calls.outcomes {
                samples.push((format!("{{event=\"{event}\",outcome=\"{outcome}\"}}"), count.to_string()));
            }
        }
        samples
    }

    /// The histogram's samples: `_bucket{event,le}`, `_sum{event}`, `_count{event}`.
    fn durations(&self) -> Vec<(String, String)> {
        let events = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let mut samples = Vec::new();
        for (event, calls) in events.iter() {
            for (bound, count) in PROXY_BUCKETS.iter().zip(calls.buckets) {
                samples.push((format!("_bucket{{event=\"{event}\",le=\"{bound}\"}}"), count.to_string()));
            }
            samples.push((format!("_bucket{{event=\"{event}\",le=\"+Inf\"}}"), calls.count.to_string()));
            samples.push((format!("_sum{{event=\"{event}\"}}"), format!("{:.6}", calls.seconds)));
            samples.push((format!("_count{{event=\"{event}\"}}"), calls.count.to_string()));
        }
        samples
    }
}

#[derive(Default)]
pub(crate) struct Metrics {
    pub(crate) logins_ok: Counter,
    pub(crate) logins_failed: Counter,
    /// Every connection's session: WebSockets and emulated ones (HTTP streaming and SSE).
    pub(crate) sockets_open: Gauge,
    pub(crate) sockets_total: Counter,
    /// The emulated sessions among them, by transport.
    pub(crate) http_streams_open: Gauge,
    pub(crate) sse_streams_open: Gauge,
    /// `POST /emulation` requests, by what became of them.
    pub(crate) emulation_handed: Counter,
    pub(crate) emulation_no_node: Counter,
    pub(crate) emulation_refused: Counter,
    pub(crate) messages_in: Counter,
    /// Publications to channels (chat messages included), from clients and the server API.
    pub(crate) publications: Counter,
    /// Fetches of publications a socket missed before one it was handed (another node's still
    /// on its way, or a fan-out lost while the broker was down).
    pub(crate) gap_fills: Counter,
    pub(crate) socket_rejections: Counter,
    pub(crate) socket_closed_expired: Counter,
    pub(crate) socket_closed_revoked: Counter,
    /// Client connections from accept to close (TLS handshakes, HTTP, upgraded WebSockets).
    pub(crate) connections_open: Gauge,
    pub(crate) connections_refused_total: Counter,
    pub(crate) connections_refused_per_address: Counter,
    pub(crate) connections_closed_header_read: Counter,
    pub(crate) connections_closed_keep_alive: Counter,
    pub(crate) api_calls: ApiCalls,
    pub(crate) proxy_calls: ProxyCalls,
    pub(crate) webhooks: crate::webhooks::WebhookMetrics,
}

impl Metrics {
    /// The Prometheus text exposition of every metric; `hashes` is (count, total microseconds).
    pub(crate) fn render(&self, hashes: (usize, usize)) -> String {
        // In the order /metrics lists them.
        let families = [
            Family::counter(
                "wsguard_logins_total",
                "Password logins by result.",
                by_label("result", [("ok", self.logins_ok.get()), ("failed", self.logins_failed.get())]),
            ),
            Family::gauge(
                "wsguard_sockets_open",
                "Connections open now: WebSockets, HTTP streams and SSE streams.",
                single(self.sockets_open.get()),
            ),
            Family::gauge(
                "wsguard_streams_open",
                "Emulated connections open now, by transport (also counted in wsguard_sockets_open).",
                by_label(
                    "transport",
                    [("http_stream", self.http_streams_open.get()), ("sse", self.sse_streams_open.get())],
                ),
            ),
            Family::counter(
                "wsguard_emulation_requests_total",
                "POST /emulation requests: handed to the node of their session, naming no live node, or refused (malformed, too big, foreign Origin).",
                by_label(
                    "outcome",
                    [
                        ("handed", self.emulation_handed.get()),
                        ("no_node", self.emulation_no_node.get()),
                        ("refused", self.emulation_refused.get()),
                    ],
                ),
            ),
            Family::counter(
                "wsguard_sockets_total",
                "Connections accepted: WebSockets, HTTP streams and SSE streams.",
                single(self.sockets_total.get()),
            ),
            Family::counter(
                "wsguard_socket_messages_total",
                "Messages received on WebSockets.",
                single(self.messages_in.get()),
            ),
            Family::counter(
                "wsguard_publications_total",
                "Publications to channels, chat messages included.",
                single(self.publications.get()),
            ),
            Family::counter(
                "wsguard_gap_fills_total",
                "Fetches from the store of publications a socket missed before one it was handed.",
                single(self.gap_fills.get()),
            ),
            Family::counter(
                "wsguard_socket_rejections_total",
                "WebSocket handshakes refused: Origin, authentication, socket caps, the connect proxy.",
                single(self.socket_rejections.get()),
            ),
            Family::counter(
                "wsguard_sockets_closed_total",
                "Sockets closed by the server, by reason.",
                by_label(
                    "reason",
                    [
                        ("expired", self.socket_closed_expired.get()),
                        ("revoked", self.socket_closed_revoked.get()),
                    ],
                ),
            ),
            Family::gauge(
                "wsguard_connections_open",
                "Client connections open now: TLS handshakes, HTTP and WebSockets.",
                single(self.connections_open.get()),
            ),
            Family::counter(
                "wsguard_connections_refused_total",
                "Connections closed at accept, by the cap they exceeded.",
                by_label(
                    "reason",
                    [
                        ("total", self.connections_refused_total.get()),
                        ("per_address", self.connections_refused_per_address.get()),
                    ],
                ),
            ),
            Family::counter(
                "wsguard_connections_timed_out_total",
                "Connections closed for slowness, by timeout: request headers, or idle keep-alive.",
                by_label(
                    "reason",
                    [
                        ("header_read", self.connections_closed_header_read.get()),
                        ("keep_alive", self.connections_closed_keep_alive.get()),
                    ],
                ),
            ),
            Family::counter("wsguard_password_hashes_total", "Password hashes computed.", single(hashes.0)),
            Family::counter(
                "wsguard_password_hash_seconds_total",
                "Time spent hashing passwords.",
                single(format!("{:.6}", hashes.1 as f64 / 1e6)),
            ),
            Family::counter(
                "wsguard_log_lines_dropped_total",
                "Log lines (and stdout lines) dropped because the stream refused them.",
                single(crate::logs::dropped()),
            ),
            Family::counter(
                "wsguard_api_requests_total",
                "Server-API requests by key name and status class.",
                self.api_calls.samples(),
            ),
            Family::counter(
                "wsguard_proxy_requests_total",
                "Calls to the application's proxy endpoints by event and outcome.",
                self.proxy_calls.outcomes(),
            ),
            Family::histogram(
                "wsguard_proxy_request_duration_seconds",
                "How long calls to the application's proxy endpoints took, by event.",
                self.proxy_calls.durations(),
            ),
        ];
        let mut out = String::new();
        for family in families.iter().chain(&self.webhooks.families()) {
            family.write(&mut out);
        }
        out
    }
}

/// One metric family as `/metrics` shows it: its `# HELP` and `# TYPE` lines, then its samples.
pub(crate) struct Family {
    name: &'static str,
    kind: &'static str,
    help: &'static str,
    /// Each sample's labels (`{result="ok"}`, or none) and value.
    samples: Vec<(String, String)>,
}

impl Family {
    pub(crate) fn counter(name: &'static str, help: &'static str, samples: Vec<(String, String)>) -> Family {
        Family { name, kind: "counter", help, samples }
    }

    pub(crate) fn gauge(name: &'static str, help: &'static str, samples: Vec<(String, String)>) -> Family {
        Family { name, kind: "gauge", help, samples }
    }

    fn histogram(name: &'static str, help: &'static str, samples: Vec<(String, String)>) -> Family {
        Family { name, kind: "histogram", help, samples }
    }

    fn write(&self, out: &mut String) {
        let Family { name, kind, help, samples } = self;
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for (labels, value) in samples {
            let _ = writeln!(out, "{name}{labels} {value}");
        }
    }
}

/// A family's one sample, without labels.
pub(crate) fn single(value: impl ToString) -> Vec<(String, String)> {
    vec![(String::new(), value.to_string())]
}

/// A sample for each value of `label`: `{label="value"}`.
pub(crate) fn by_label<V: ToString>(
    label: &str,
    values: impl IntoIterator<Item = (&'static str, V)>,
) -> Vec<(String, String)> {
    values.into_iter().map(|(value, n)| (format!("{{{label}=\"{value}\"}}"), n.to_string())).collect()
}
