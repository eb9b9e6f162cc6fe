//! The watchdog of one connection: the header-read and keep-alive deadlines (see the module
//! documentation of `connections`).

use super::ConnectionTicket;
use crate::config::ConnectionLimits;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;
use tokio::time::Instant;

/// Why the watchdog closed a connection.
#[derive(Debug, Clone, Copy)]
pub(super) enum Slow {
    HeaderRead,
    KeepAlive,
}

/// What the watchdog of one connection reads: requests in flight, and when the connection last
/// moved. Times are milliseconds since `opened`.
pub(super) struct Activity {
    opened: Instant,
    header_read_timeout: Duration,
    keep_alive_timeout: Duration,
    /// Requests whose response the service has not produced yet.
    in_flight: AtomicUsize,
    /// Whether any request has begun (until then, the deadline runs from accept).
    served: AtomicBool,
    /// When the last response was produced or last had bytes written.
    idle_since: AtomicU64,
    /// 1 + when the first byte of the next request came, 0 while none has.
    next_request_since: AtomicU64,
    /// Set when the connection is no longer served here (closed, or upgraded).
    pub(super) detached: AtomicBool,
    /// Wakes the watchdog when the deadline moved earlier or appeared.
    pub(super) changed: Notify,
}

impl Activity {
    pub(super) fn new(opened: Instant, limits: &ConnectionLimits) -> Activity {
        Activity {
            opened,
            header_read_timeout: limits.header_read_timeout,
            keep_alive_timeout: limits.keep_alive_timeout,
            in_flight: AtomicUsize::new(0),
            served: AtomicBool::new(false),
            idle_since: AtomicU64::new(0),
            next_request_since: AtomicU64::new(0),
            detached: AtomicBool::new(false),
            changed: Notify::new(),
        }
    }

    fn now(&self) -> u64 {
        u64::try_from(self.opened.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn at(&self, millis: u64) -> Instant {
        self.opened + Duration::from_millis(millis)
    }

    /// When the connection is to be closed if nothing changes, and why; `None` while a request
    /// is being handled.
    pub(super) fn deadline(&self) -> Option<(Instant, Slow)> {
        if self.in_flight.load(Ordering::Relaxed) > 0 {
            return None;
        }
        if !self.served.load(Ordering::Relaxed) {
            return Some((self.opened + self.header_read_timeout, Slow::HeaderRead));
        }
        match self.next_request_since.load(Ordering::Relaxed) {
            0 => Some((
                self.at(self.idle_since.load(Ordering::Relaxed)) + self.keep_alive_timeout,
                Slow::KeepAlive,
            )),
            since => Some((self.at(since - 1) + self.header_read_timeout, Slow::HeaderRead)),
        }
    }

    /// A request's headers are complete: nothing is timed until its response is produced.
    pub(super) fn begin(self: &Arc<Self>) -> Busy {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.served.store(true, Ordering::Relaxed);
        self.next_request_since.store(0, Ordering::Relaxed);
        Busy(self.clone())
    }

    fn read(&self) {
        if self.detached.load(Ordering::Relaxed)
            || !self.served.load(Ordering::Relaxed)
            || self.in_flight.load(Ordering::Relaxed) > 0
            || self.next_request_since.load(Ordering::Relaxed) != 0
        {
            return;
        }
        // The next request has begun: its headers have --header-read-timeout from now.
        self.next_request_since.store(self.now() + 1, Ordering::Relaxed);
        self.changed.notify_one();
    }

    fn wrote(&self) {
        // A response body still being written keeps the connection from counting as idle.
        if !self.detached.load(Ordering::Relaxed) && self.in_flight.load(Ordering::Relaxed) == 0 {
            self.idle_since.store(self.now(), Ordering::Relaxed);
        }
    }
}

/// A request being handled; dropped when its response is produced (or the request abandoned).
pub(super) struct Busy(Arc<Activity>);

impl Drop for Busy {
    fn drop(&mut self) {
        let activity = &self.0;
        activity.idle_since.store(activity.now(), Ordering::Relaxed);
        activity.next_request_since.store(0, Ordering::Relaxed);
        activity.in_flight.fetch_sub(1, Ordering::Relaxed);
        activity.changed.notify_one();
    }
}

/// A connection's stream, telling its [`Activity`] about bytes read and written, and holding its
/// ticket until the stream is dropped (after an upgrade, by the WebSocket).
pub(super) struct Watched<Io> {
    pub(super) io: Io,
    pub(super) activity: Arc<Activity>,
    pub(super) _ticket: Arc<ConnectionTicket>,
}

impl<Io: AsyncRead + Unpin> AsyncRead for Watched<Io> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.io).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.read();
        }
        polled
    }
}

impl<Io: AsyncWrite + Unpin> AsyncWrite for Watched<Io> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.io).poll_write(cx, buf);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.wrote();
        }
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.wrote();
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::super::{connection, test_limits as limits, Connections};
    use super::*;
    use crate::metrics::Metrics;
    use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
    use tokio::task::JoinHandle;
    use tokio_util::sync::CancellationToken;

    const HEADER: Duration = Duration::from_secs(10);
    const KEEP_ALIVE: Duration = Duration::from_secs(60);

    /// A deadline as an offset from accept, and its reason.
    type Deadline = Option<(Duration, &'static str)>;

    /// The deadline as an offset from `opened`, to compare with whole durations.
    fn deadline(activity: &Activity, opened: Instant) -> Deadline {
        activity.deadline().map(|(at, slow)| {
            let why = match slow {
                Slow::HeaderRead => "header",
                Slow::KeepAlive => "keep-alive",
            };
            (at - opened, why)
        })
    }

    /// On a paused clock the deadlines are exact: each step advances time by its duration, does
    /// what it names, then the deadline is (the moment, the reason) after accept, or none.
    #[tokio::test(start_paused = true)]
    async fn deadlines_time_headers_from_accept_and_after_idle_and_nothing_in_flight() {
        let opened = Instant::now();
        let activity = Arc::new(Activity::new(opened, &limits(10, 10)));
        let s = Duration::from_secs;
        let mut busy = Vec::new();
        let steps: &[(u64, &str, Deadline)] = &[
            (0, "nothing", Some((HEADER, "header"))),
            (3, "read", Some((HEADER, "header"))), // bytes of the first request do not extend it
            (2, "begin", None),                    // nothing is timed while a request is handled
            (1, "read", None),                     // not even its body...
            (1, "wrote", None),                    // ...nor the response being written
            (5, "done", Some((s(12) + KEEP_ALIVE, "keep-alive"))),
            (4, "wrote", Some((s(16) + KEEP_ALIVE, "keep-alive"))), // a body written is activity
            (30, "read", Some((s(46) + HEADER, "header"))),         // the next request's first byte
            (7, "read", Some((s(46) + HEADER, "header"))),          // a trickle does not extend it
            (1, "wrote", Some((s(46) + HEADER, "header"))),         // nor does writing
            (1, "begin", None),
            (0, "begin", None), // a second request in flight (pipelined)
            (2, "done", None),  // one of two done: still nothing timed
            (3, "done", Some((s(60) + KEEP_ALIVE, "keep-alive"))),
        ];
        for (i, (after, action, expected)) in steps.iter().enumerate() {
            tokio::time::advance(s(*after)).await;
            match *action {
                "nothing" => {}
                "read" => activity.read(),
                "wrote" => activity.wrote(),
                "begin" => busy.push(activity.begin()),
                "done" => drop(busy.remove(0)),
                other => unreachable!("{other}"),
            }
            assert_eq!(deadline(&activity, opened), *expected, "step {i}: {action} after {after} s");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn once_detached_bytes_move_nothing() {
        let opened = Instant::now();
        let activity = Arc::new(Activity::new(opened, &limits(10, 10)));
        drop(activity.begin());
        activity.detached.store(true, Ordering::Relaxed);
        tokio::time::advance(Duration::from_secs(5)).await;
        activity.read();
        activity.wrote();
        assert_eq!(deadline(&activity, opened), Some((KEEP_ALIVE, "keep-alive")));
    }

    #[tokio::test(start_paused = true)]
    async fn the_watchdog_is_woken_when_a_deadline_appears_or_moves_earlier() {
        let activity = Arc::new(Activity::new(Instant::now(), &limits(10, 10)));
        let woken = || tokio::time::timeout(Duration::from_secs(1), activity.changed.notified());
        assert!(woken().await.is_err(), "nothing happened");
        activity.read();
        assert!(woken().await.is_err(), "the first request's bytes change nothing");
        let busy = activity.begin();
        drop(busy);
        assert!(woken().await.is_ok(), "a response produced: the keep-alive deadline appears");
        activity.read();
        assert!(woken().await.is_ok(), "the next request began: its header deadline is earlier");
        activity.read();
        assert!(woken().await.is_err(), "a trickle moves nothing");
    }

    /// One connection served by [`connection`] over an in-memory pipe, answering `/` at once and
    /// `/slow` after 100 s; the client's end, the serving task, and the metrics.
    fn served() -> (DuplexStream, JoinHandle<()>, Arc<Metrics>) {
        use axum::routing::get;
        let metrics = Arc::new(Metrics::default());
        let connections = Connections::new(limits(10, 10), Default::default(), metrics.clone());
        let peer = "10.0.0.1:40000".parse().unwrap();
        let ticket = connections.admit(peer).expect("under the caps");
        let (client, server) = tokio::io::duplex(4096);
        let app = axum::Router::new().route("/", get(|| async { "ok" })).route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(100)).await;
                "ok"
            }),
        );
        let mut http = hyper::server::conn::http1::Builder::new();
        http.header_read_timeout(None).keep_alive(true);
        let task =
            tokio::spawn(connection(Arc::new(http), server, peer, ticket, app, CancellationToken::new()));
        (client, task, metrics)
    }

    const HALF: &[u8] = b"GET / HTTP/1.1\r\nHost: x\r\nUser-Agent: slow";

    /// Sends a GET of `path` and reads its whole response (the body is "ok").
    async fn get(client: &mut DuplexStream, path: &str) {
        client.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes()).await.unwrap();
        let mut response = Vec::new();
        while !response.ends_with(b"\r\n\r\nok") {
            let mut buf = [0u8; 1024];
            let n = client.read(&mut buf).await.unwrap();
            assert!(n > 0, "closed before the response: {}", String::from_utf8_lossy(&response));
            response.extend_from_slice(&buf[..n]);
        }
        assert!(response.starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&response));
    }

    /// Waits for the watchdog to close the connection: how long that took from `since`, and the
    /// timeout `metrics` counted the close under (once, and under that timeout only).
    async fn closed(
        task: JoinHandle<()>,
        client: &mut DuplexStream,
        since: Instant,
        metrics: &Metrics,
    ) -> (Duration, &'static str) {
        task.await.unwrap();
        let closed_after = since.elapsed();
        assert_eq!(client.read(&mut [0u8; 64]).await.unwrap(), 0, "the client sees the end");
        let counted =
            (metrics.connections_closed_header_read.get(), metrics.connections_closed_keep_alive.get());
        let why = match counted {
            (1, 0) => "header",
            (0, 1) => "keep-alive",
            other => panic!("closes counted (header, keep-alive): {other:?}"),
        };
        (closed_after, why)
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_or_trickling_connection_is_closed_at_the_header_read_timeout_from_accept() {
        let accepted = Instant::now();
        let (mut silent, task, metrics) = served();
        assert_eq!(closed(task, &mut silent, accepted, &metrics).await, (HEADER, "header"));

        let accepted = Instant::now();
        let (mut trickle, task, metrics) = served();
        for byte in HALF {
            trickle.write_all(&[*byte]).await.unwrap();
            tokio::time::sleep(Duration::from_millis(200)).await;
            if accepted.elapsed() >= Duration::from_secs(5) {
                break;
            }
        }
        assert_eq!(closed(task, &mut trickle, accepted, &metrics).await, (HEADER, "header"));
    }

    /// A connection that was served `/`, then sat idle for 30 s: past the header-read timeout, which
    /// does not run between requests.
    async fn idle_after_a_request() -> (DuplexStream, JoinHandle<()>, Arc<Metrics>) {
        let (mut client, task, metrics) = served();
        get(&mut client, "/").await;
        tokio::time::sleep(Duration::from_secs(30)).await;
        (client, task, metrics)
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_connection_is_closed_at_the_keep_alive_timeout_from_its_last_response() {
        let (mut client, task, metrics) = idle_after_a_request().await;
        get(&mut client, "/").await;
        let answered = Instant::now();
        assert_eq!(closed(task, &mut client, answered, &metrics).await, (KEEP_ALIVE, "keep-alive"));
    }

    #[tokio::test(start_paused = true)]
    async fn a_next_request_has_the_header_read_timeout_from_its_first_byte() {
        let (mut client, task, metrics) = idle_after_a_request().await;
        client.write_all(HALF).await.unwrap();
        let begun = Instant::now();
        assert_eq!(closed(task, &mut client, begun, &metrics).await, (HEADER, "header"));
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_handler_is_not_timed_and_the_keep_alive_runs_from_its_response() {
        let (mut client, task, metrics) = served();
        let asked = Instant::now();
        get(&mut client, "/slow").await;
        assert_eq!(asked.elapsed(), Duration::from_secs(100), "answered, however long it took");
        let answered = Instant::now();
        assert_eq!(closed(task, &mut client, answered, &metrics).await, (KEEP_ALIVE, "keep-alive"));
    }
}
