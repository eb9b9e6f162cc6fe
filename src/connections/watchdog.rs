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
    pub(super) _ticket: ConnectionTicket,
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
    use super::super::test_limits as limits;
    use super::*;

    /// Whether `at` is `timeout` after some moment between `before` and now (times are kept in
    /// whole milliseconds).
    fn within(at: Instant, before: Instant, timeout: Duration) -> bool {
        at + Duration::from_millis(1) >= before + timeout && at <= Instant::now() + timeout
    }

    #[tokio::test]
    async fn deadlines_time_headers_from_accept_and_after_idle_and_nothing_in_flight() {
        let (header, keep_alive) = (Duration::from_secs(10), Duration::from_secs(60));
        let opened = Instant::now();
        let activity = Arc::new(Activity::new(opened, &limits(10, 10)));
        let pause = || tokio::time::sleep(Duration::from_millis(20));
        assert_eq!(activity.deadline().map(|(at, _)| at), Some(opened + header), "from accept");
        pause().await;
        activity.read();
        assert_eq!(activity.deadline().map(|(at, _)| at), Some(opened + header), "bytes do not extend it");

        let busy = activity.begin();
        assert!(activity.deadline().is_none(), "nothing is timed while a request is handled");
        pause().await;
        activity.read();
        activity.wrote();
        assert!(activity.deadline().is_none(), "not even its body, nor the response being written");
        let before = Instant::now();
        drop(busy);
        let (at, slow) = activity.deadline().unwrap();
        assert!(matches!(slow, Slow::KeepAlive) && within(at, before, keep_alive), "{slow:?}");

        pause().await;
        let before = Instant::now();
        activity.wrote();
        let (at, _) = activity.deadline().unwrap();
        assert!(within(at, before, keep_alive), "a response body written is activity");
        pause().await;
        let before = Instant::now();
        activity.read();
        let (at, slow) = activity.deadline().unwrap();
        assert!(
            matches!(slow, Slow::HeaderRead) && within(at, before, header),
            "the next request's first byte"
        );
        pause().await;
        activity.read();
        activity.wrote();
        assert_eq!(activity.deadline().unwrap().0, at, "a trickle does not extend it");
    }
}
