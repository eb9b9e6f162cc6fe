//! The server's memory over the run, and its own counts at the end.

use super::board::C;
use super::*;
use crate::common::secs;
use crate::http::HttpConn;
use crate::idle::rss_kib;

use serde_json::{json, Map, Value};
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use tokio::sync::watch;
use tokio::time::Instant;

// --- memory -------------------------------------------------------------------------------------

/// One VmRSS reading: seconds since the start of the run, KiB, members open.
#[derive(Clone, Copy, Debug)]
pub(super) struct Sample {
    pub(super) t: f64,
    pub(super) kib: u64,
    pub(super) open: i64,
}

/// The least-squares slope of the readings from `from` seconds on, in KiB per minute: how fast
/// memory still grew once settled (`None` with fewer than two readings).
pub(super) fn growth_kib_per_min(samples: &[Sample], from: f64) -> Option<f64> {
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
pub(super) fn median_between(samples: &[Sample], from: f64, to: f64) -> Option<u64> {
    let mut window: Vec<u64> = samples.iter().filter(|s| s.t >= from && s.t <= to).map(|s| s.kib).collect();
    if window.is_empty() {
        return None;
    }
    window.sort_unstable();
    Some(window[window.len() / 2])
}

pub(super) async fn sample_rss(
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
            Err(e) => {
                ctx.board.incident(C::rss_read_failures, None, format!("reading the server's memory: {e:#}"))
            }
        }
    }
}

/// A few of the server's own counters (`GET /metrics`), to set beside the generator's.
pub(super) async fn server_metrics(addr: SocketAddr) -> Value {
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
