//! Client connections, from accept to close: the caps on how many are open (in all, and per client
//! address), the header-read and keep-alive timeouts, and HTTP/1.1 (with upgrades) served on each.
//! Plain TCP and TLS alike: the TLS listener admits a connection as soon as it is accepted, so its
//! handshake counts against the caps and against its header-read deadline.
//!
//! A connection is counted by an [`Admitted`] ticket that travels with its stream: into the TLS
//! handshake, into hyper, and into the WebSocket an upgrade makes of it. It is released when the
//! stream is dropped, which is when the socket closes.
//!
//! hyper has a header-read timeout of its own, but its clock also runs while a keep-alive
//! connection waits for its next request, so it would close idle connections as early as slow
//! ones. A watchdog per connection times both instead, as nginx does: from accept (TLS handshake
//! included) the first request's headers must be complete within `--header-read-timeout`; after a
//! response, the connection may stay silent for `--keep-alive-timeout`, and once the next request
//! has begun, its headers again have `--header-read-timeout`. While a request is being handled
//! nothing is timed here; an upgraded connection is the WebSocket's (`--idle-timeout`).

use crate::auth::throttle::client_key;
use crate::config::ConnectionLimits;
use crate::metrics::Metrics;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request};
use axum::response::Response;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::io::{self, IoSlice};
use std::net::{IpAddr, SocketAddr};
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::{Service, ServiceExt};

/// File descriptors kept for everything but client connections: database and Redis connections,
/// key and log files, the runtime's own.
const RESERVED_DESCRIPTORS: usize = 128;

/// The connections open now, and the caps on them.
pub(crate) struct Connections {
    limits: ConnectionLimits,
    open: Mutex<Open>,
    metrics: Arc<Metrics>,
}

#[derive(Default)]
struct Open {
    total: usize,
    by_address: HashMap<IpAddr, usize>,
}

/// Which cap refused a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    Total,
    PerAddress,
}

impl Connections {
    /// The caps of `limits`, the total lowered if the process may not open that many files.
    pub(crate) fn new(mut limits: ConnectionLimits, metrics: Arc<Metrics>) -> Arc<Connections> {
        limits.max_connections = fit_descriptor_limit(limits.max_connections);
        Arc::new(Connections { limits, open: Mutex::default(), metrics })
    }

    /// How long a client has, from accept, for its TLS handshake.
    pub(crate) fn handshake_timeout(&self) -> Duration {
        self.limits.header_read_timeout
    }

    /// A TLS handshake not done by its deadline: as late as headers can be.
    pub(crate) fn handshake_timed_out(&self) {
        self.metrics.connections_closed_header_read.inc();
    }

    /// Counts a connection just accepted from `peer`; `None` when a cap is reached, and then the
    /// caller drops the stream at once.
    pub(crate) fn admit(self: &Arc<Self>, peer: SocketAddr) -> Option<Admitted> {
        let address = client_key(peer.ip());
        match self.count(address) {
            Ok(()) => {
                self.metrics.connections_open.inc();
                Some(Admitted { connections: self.clone(), address, at: Instant::now() })
            }
            Err(refusal) => {
                match refusal {
                    Refusal::Total => self.metrics.connections_refused_total.inc(),
                    Refusal::PerAddress => self.metrics.connections_refused_per_address.inc(),
                }
                tracing::debug!(%peer, ?refusal, "connection refused: too many open");
                None
            }
        }
    }

    fn count(&self, address: IpAddr) -> Result<(), Refusal> {
        let mut open = self.open.lock().expect("connection counts lock poisoned");
        if open.total >= self.limits.max_connections {
            return Err(Refusal::Total);
        }
        let from_address = open.by_address.entry(address).or_default();
        if *from_address >= self.limits.max_connections_per_address {
            return Err(Refusal::PerAddress);
        }
        *from_address += 1;
        open.total += 1;
        Ok(())
    }

    fn release(&self, address: IpAddr) {
        let mut open = self.open.lock().expect("connection counts lock poisoned");
        open.total -= 1;
        if let Some(from_address) = open.by_address.get_mut(&address) {
            *from_address -= 1;
            if *from_address == 0 {
                open.by_address.remove(&address);
            }
        }
    }
}

/// One admitted connection, counted until this is dropped with its stream.
pub(crate) struct Admitted {
    connections: Arc<Connections>,
    address: IpAddr,
    /// When the connection was accepted: the first request's header-read deadline runs from here.
    pub(crate) at: Instant,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        self.connections.release(self.address);
        self.connections.metrics.connections_open.dec();
    }
}

/// The total cap, lowered to what the open-file limit allows. The soft limit is raised first, up
/// to the hard limit, as far as the cap needs: a cap above the limit would let a flood of
/// connections take every descriptor (then accept fails, and with it `/healthz`).
fn fit_descriptor_limit(max_connections: usize) -> usize {
    #[cfg(unix)]
    {
        let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        // SAFETY: getrlimit(2) writes into the struct it is given.
        if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
            return max_connections;
        }
        let needed = max_connections.saturating_add(RESERVED_DESCRIPTORS) as libc::rlim_t;
        if limit.rlim_cur < needed {
            let raised = libc::rlimit { rlim_cur: needed.min(limit.rlim_max), rlim_max: limit.rlim_max };
            // SAFETY: setrlimit(2) reads the struct it is given; lowering nothing, within the hard limit.
            if raised.rlim_cur > limit.rlim_cur
                && unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0
            {
                tracing::info!(from = limit.rlim_cur, to = raised.rlim_cur, "raised the open-file limit");
                limit.rlim_cur = raised.rlim_cur;
            }
        }
        let room = usize::try_from(limit.rlim_cur).unwrap_or(usize::MAX).saturating_sub(RESERVED_DESCRIPTORS);
        if room < max_connections {
            let fitted = room.max(1);
            tracing::warn!(
                max_connections,
                open_file_limit = limit.rlim_cur,
                lowered_to = fitted,
                "max_connections does not fit the open-file limit (ulimit -n); lowered"
            );
            return fitted;
        }
    }
    max_connections
}

/// Where connections come from: plain TCP ([`Plain`]) or finished TLS handshakes
/// ([`crate::tls::TlsListener`]). Each comes with its ticket; refused ones never come out.
pub(crate) trait Accept: Send + 'static {
    type Io: AsyncRead + AsyncWrite + Unpin + Send + 'static;

    fn accept(&mut self) -> impl Future<Output = (Self::Io, SocketAddr, Admitted)> + Send;
}

/// Plain TCP: admitted (or closed) as accepted.
pub(crate) struct Plain {
    tcp: TcpListener,
    connections: Arc<Connections>,
}

impl Plain {
    pub(crate) fn new(tcp: TcpListener, connections: Arc<Connections>) -> Plain {
        Plain { tcp, connections }
    }
}

impl Accept for Plain {
    type Io = TcpStream;

    async fn accept(&mut self) -> (TcpStream, SocketAddr, Admitted) {
        loop {
            match self.tcp.accept().await {
                Ok((stream, peer)) => {
                    if let Some(admitted) = self.connections.admit(peer) {
                        return (stream, peer, admitted);
                    }
                }
                Err(err) => accept_failed(err).await,
            }
        }
    }
}

/// After a failed accept(2): a connection that went away before it was accepted is no news; out of
/// file descriptors and the like, back off instead of spinning.
pub(crate) async fn accept_failed(err: io::Error) {
    use io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if matches!(err.kind(), ConnectionAborted | ConnectionRefused | ConnectionReset) {
        return;
    }
    tracing::warn!(error = %err, "accept failed");
    tokio::time::sleep(Duration::from_millis(50)).await;
}

/// Serves HTTP/1.1 with upgrades on every connection `listener` accepts, `service` answering with
/// `ConnectInfo<SocketAddr>` in each request's extensions, until `stop` is cancelled. Then the
/// listener closes (new connections are refused), every connection finishes its request in
/// flight, and this returns once they have.
pub(crate) async fn serve<A, S>(mut listener: A, service: S, stop: CancellationToken)
where
    A: Accept,
    S: Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send,
{
    let mut http = http1::Builder::new();
    // Timed by each connection's watchdog instead (see the module's documentation).
    http.header_read_timeout(None).keep_alive(true);
    let http = Arc::new(http);
    let tasks = TaskTracker::new();
    loop {
        let (io, peer, admitted) = tokio::select! {
            _ = stop.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        tasks.spawn(connection(http.clone(), io, peer, admitted, service.clone(), stop.clone()));
    }
    drop(listener);
    tasks.close();
    tasks.wait().await;
}

/// Why the watchdog closed a connection.
#[derive(Debug, Clone, Copy)]
enum Slow {
    HeaderRead,
    KeepAlive,
}

async fn connection<Io, S>(
    http: Arc<http1::Builder>,
    io: Io,
    peer: SocketAddr,
    admitted: Admitted,
    service: S,
    stop: CancellationToken,
) where
    Io: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send,
{
    let connections = admitted.connections.clone();
    let activity = Arc::new(Activity::new(admitted.at, &connections.limits));
    let io = Watched { io, activity: activity.clone(), _admitted: admitted };
    let requests = activity.clone();
    let service = hyper::service::service_fn(move |request: Request<Incoming>| {
        let busy = requests.begin();
        let mut request = request.map(Body::new);
        // What `into_make_service_with_connect_info::<SocketAddr>` adds: the login throttle reads it.
        request.extensions_mut().insert(ConnectInfo(peer));
        let service = service.clone();
        async move {
            let response = service.oneshot(request).await;
            drop(busy);
            response
        }
    });
    let mut conn = pin!(http.serve_connection(TokioIo::new(io), service).with_upgrades());
    let mut stopping = false;
    loop {
        let deadline = activity.deadline();
        let wake = deadline.map_or_else(Instant::now, |(at, _)| at);
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(err) = result {
                    tracing::debug!(%peer, error = %err, "connection ended with an error");
                }
                break;
            }
            _ = stop.cancelled(), if !stopping => {
                stopping = true;
                conn.as_mut().graceful_shutdown();
            }
            _ = activity.changed.notified() => {}
            _ = tokio::time::sleep_until(wake), if deadline.is_some() => {
                let Some((at, slow)) = activity.deadline() else { continue };
                if Instant::now() < at {
                    continue;
                }
                match slow {
                    Slow::HeaderRead => connections.metrics.connections_closed_header_read.inc(),
                    Slow::KeepAlive => connections.metrics.connections_closed_keep_alive.inc(),
                }
                tracing::debug!(%peer, ?slow, "connection closed: too slow");
                break;
            }
        }
    }
    // Upgraded, the stream lives on in its WebSocket, which times itself.
    activity.detached.store(true, Ordering::Relaxed);
}

/// What the watchdog of one connection reads: requests in flight, and when the connection last
/// moved. Times are milliseconds since `opened`.
struct Activity {
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
    detached: AtomicBool,
    /// Wakes the watchdog when the deadline moved earlier or appeared.
    changed: Notify,
}

impl Activity {
    fn new(opened: Instant, limits: &ConnectionLimits) -> Activity {
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
    fn deadline(&self) -> Option<(Instant, Slow)> {
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
    fn begin(self: &Arc<Self>) -> Busy {
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
struct Busy(Arc<Activity>);

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
struct Watched<Io> {
    io: Io,
    activity: Arc<Activity>,
    _admitted: Admitted,
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
    use super::*;

    fn limits(total: usize, per_address: usize) -> ConnectionLimits {
        ConnectionLimits {
            header_read_timeout: Duration::from_secs(10),
            keep_alive_timeout: Duration::from_secs(60),
            max_connections: total,
            max_connections_per_address: per_address,
        }
    }

    fn peer(address: &str) -> SocketAddr {
        SocketAddr::new(address.parse().unwrap(), 40000)
    }

    #[tokio::test]
    async fn caps_count_from_admission_to_drop_in_all_and_per_address() {
        let metrics = Arc::new(Metrics::default());
        let connections = Connections::new(limits(3, 2), metrics.clone());
        let first = connections.admit(peer("10.0.0.1")).expect("under both caps");
        let second = connections.admit(peer("10.0.0.1")).expect("under both caps");
        assert!(connections.admit(peer("10.0.0.1")).is_none(), "a third from the same address");
        assert_eq!(metrics.connections_refused_per_address.get(), 1);
        // An IPv4-mapped IPv6 peer is the same address.
        assert!(connections.admit(peer("::ffff:10.0.0.1")).is_none());
        let other = connections.admit(peer("10.0.0.2")).expect("another address");
        assert!(connections.admit(peer("10.0.0.3")).is_none(), "the total is reached");
        assert_eq!(metrics.connections_refused_total.get(), 1);
        assert_eq!(metrics.connections_open.get(), 3);
        drop(first);
        let again = connections.admit(peer("10.0.0.1")).expect("a place freed up");
        drop((second, other, again));
        assert_eq!(metrics.connections_open.get(), 0);
        assert!(connections.open.lock().unwrap().by_address.is_empty(), "no address left behind");
    }

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
