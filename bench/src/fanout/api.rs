//! Publications over HTTP (`--http-publish`), what a notification gateway mostly gets: an
//! application backend calls the server, one call per publication, on keep-alive connections. On
//! wsguard `POST /api/publish` with an API key (`--api-key-file`), `{"channel","data":{"seq":N}}`;
//! on bare-broadcast `POST /publish/<channel>` with the frame `{"seq":N}` as the body. A 200 is the
//! publication's ack.
//!
//! Paced only: `--http-connections` workers, worker `w` making publications `w`, `w + W`, … each at
//! its due time (or at once when late), one call at a time on its own connection. Latency to the
//! members and to the answer counts from when a publication was due; the call's own time (from
//! sending the request to its answer) is measured apart.

use super::board::Board;
use super::protocol::Protocol;
use crate::common::Latency;
use crate::http::HttpConn;
use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HOST};
use hyper::{Method, Request};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// Longest a call may take before it counts as failed (and its connection is dropped).
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// How the workers publish.
pub(super) struct HttpPlan {
    pub(super) protocol: Protocol,
    pub(super) addr: SocketAddr,
    /// wsguard's API key; none for bare-broadcast.
    pub(super) key: Option<Arc<str>>,
    pub(super) channels: Arc<Vec<String>>,
    pub(super) interval: Duration,
    pub(super) events: u32,
    pub(super) started: Instant,
    pub(super) until: Instant,
    pub(super) connections: usize,
}

/// What the workers did.
#[derive(Default)]
pub(super) struct HttpSent {
    /// Publications due (and attempted).
    pub(super) count: usize,
    pub(super) ok: u64,
    pub(super) refused: u64,
    pub(super) failed: u64,
    /// The first refusal or failure, to say why.
    pub(super) first_error: Option<String>,
    /// From sending each request to its answer.
    pub(super) call: Latency,
    /// From the first due time to the last answer (set by the caller).
    pub(super) seconds: f64,
}

impl HttpPlan {
    /// Publications due before `until`, capped by the board.
    fn due_count(&self, capacity: usize) -> usize {
        let window = self.until.saturating_duration_since(self.started).as_secs_f64();
        ((window / self.interval.as_secs_f64()).ceil() as usize).min(capacity)
    }

    fn request(&self, seq: usize) -> anyhow::Result<Request<Full<Bytes>>> {
        let channel = &self.channels[seq % self.channels.len()];
        let (path, body) = match self.protocol {
            Protocol::Bare => (format!("/publish/{channel}"), format!(r#"{{"seq":{seq}}}"#)),
            _ => ("/api/publish".to_owned(), format!(r#"{{"channel":"{channel}","data":{{"seq":{seq}}}}}"#)),
        };
        let mut request = Request::builder()
            .method(Method::POST)
            .uri(path)
            .header(HOST, self.addr.to_string())
            .header(CONTENT_TYPE, "application/json");
        if let Some(key) = &self.key {
            request = request.header(AUTHORIZATION, format!("Bearer {key}"));
        }
        Ok(request.body(Full::new(Bytes::from(body)))?)
    }
}

/// Runs the workers until every publication due before `plan.until` was made.
pub(super) async fn drive(board: Arc<Board>, plan: HttpPlan) -> HttpSent {
    let plan = Arc::new(plan);
    let count = plan.due_count(board.capacity);
    let workers: Vec<_> = (0..plan.connections.max(1))
        .map(|w| tokio::spawn(worker(w, count, board.clone(), plan.clone())))
        .collect();
    let mut sent = HttpSent { count, ..HttpSent::default() };
    for worker in workers {
        let Ok(done) = worker.await else { continue };
        sent.ok += done.ok;
        sent.refused += done.refused;
        sent.failed += done.failed;
        sent.first_error = sent.first_error.or(done.first_error);
        sent.call.merge(&done.call);
    }
    sent
}

async fn worker(first: usize, count: usize, board: Arc<Board>, plan: Arc<HttpPlan>) -> HttpSent {
    let mut done = HttpSent::default();
    let mut conn: Option<HttpConn> = None;
    for seq in (first..count).step_by(plan.connections.max(1)) {
        let due = plan.started + plan.interval.mul_f64(seq as f64);
        if due > Instant::now() {
            tokio::time::sleep_until(due).await;
        }
        board.start(seq, board.ns_of(due), plan.events);
        let request = match plan.request(seq) {
            Ok(request) => request,
            Err(e) => {
                done.failed += 1;
                done.first_error.get_or_insert_with(|| format!("{e:#}"));
                continue;
            }
        };
        let began = Instant::now();
        let call = async {
            if conn.is_none() {
                conn = Some(HttpConn::connect(plan.addr).await?);
            }
            conn.as_mut().expect("connected above").send(request).await
        };
        match tokio::time::timeout(CALL_TIMEOUT, call).await {
            Ok(Ok((status, _, _))) if status == 200 => {
                done.call.record(began.elapsed());
                board.ack(seq);
                done.ok += 1;
            }
            Ok(Ok((status, _, body))) => {
                done.refused += 1;
                done.first_error.get_or_insert_with(|| {
                    format!("answered {status}: {:.200}", String::from_utf8_lossy(&body))
                });
            }
            Ok(Err(e)) => {
                conn = None;
                done.failed += 1;
                done.first_error.get_or_insert_with(|| format!("{e:#}"));
            }
            Err(_) => {
                conn = None;
                done.failed += 1;
                done.first_error.get_or_insert_with(|| "no answer within 10 s".to_owned());
            }
        }
    }
    done
}
