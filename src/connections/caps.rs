//! How many connections are open, in all and per client address, and the caps on them: a
//! connection is counted by its [`ConnectionTicket`] from accept to close.
//!
//! A trusted proxy's connection carries many clients' requests, one after the other: it counts
//! against no address at accept, and against the client of each request from that request on
//! ([`ConnectionTicket::client`]). A WebSocket so counts against its client while it is open.

use super::forwarded::{client_address, TrustedProxies};
use crate::auth::throttle::client_key;
use crate::config::ConnectionLimits;
use crate::metrics::Metrics;
use axum::http::HeaderMap;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

/// File descriptors kept for everything but client connections: database and Redis connections,
/// key and log files, the runtime's own.
const RESERVED_DESCRIPTORS: usize = 128;

/// The connections open now, and the caps on them.
pub(crate) struct Connections {
    pub(super) limits: ConnectionLimits,
    trusted: TrustedProxies,
    open: Mutex<Open>,
    pub(super) metrics: Arc<Metrics>,
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
    /// The caps of `limits`, the total lowered if the process may not open that many files;
    /// `trusted` the proxies whose headers name their clients.
    pub(crate) fn new(
        mut limits: ConnectionLimits,
        trusted: TrustedProxies,
        metrics: Arc<Metrics>,
    ) -> Arc<Connections> {
        limits.max_connections = fit_descriptor_limit(limits.max_connections);
        if !trusted.is_empty() {
            tracing::info!(
                proxies = trusted.list(),
                "client addresses from the Forwarded or X-Forwarded-For of trusted proxies"
            );
        }
        Arc::new(Connections { limits, trusted, open: Mutex::default(), metrics })
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
    pub(crate) fn admit(self: &Arc<Self>, peer: SocketAddr) -> Option<ConnectionTicket> {
        let proxy = self.trusted.contains(peer.ip());
        let address = (!proxy).then(|| client_key(peer.ip()));
        let counted = self.count_new(address);
        match counted {
            Ok(()) => {
                self.metrics.connections_open.inc();
                let (connections, peer, address) = (self.clone(), peer.ip(), Mutex::new(address));
                Some(ConnectionTicket { connections, peer, proxy, address, at: Instant::now() })
            }
            Err(refusal) => {
                self.refused(refusal);
                tracing::debug!(%peer, ?refusal, "connection refused: too many open");
                None
            }
        }
    }

    /// Counts a new connection in the total and, if it has one, against its `address`.
    fn count_new(&self, address: Option<IpAddr>) -> Result<(), Refusal> {
        let mut open = self.open.lock().expect("connection counts lock poisoned");
        if open.total >= self.limits.max_connections {
            return Err(Refusal::Total);
        }
        if let Some(address) = address {
            self.count(&mut open, address)?;
        }
        open.total += 1;
        Ok(())
    }

    fn refused(&self, refusal: Refusal) {
        match refusal {
            Refusal::Total => self.metrics.connections_refused_total.inc(),
            Refusal::PerAddress => self.metrics.connections_refused_per_address.inc(),
        }
    }

    /// Counts one more connection from `address`, unless it is at its cap.
    fn count(&self, open: &mut Open, address: IpAddr) -> Result<(), Refusal> {
        let from_address = open.by_address.entry(address).or_default();
        if *from_address >= self.limits.max_connections_per_address {
            return Err(Refusal::PerAddress);
        }
        *from_address += 1;
        Ok(())
    }

    fn uncount(open: &mut Open, address: IpAddr) {
        if let Some(from_address) = open.by_address.get_mut(&address) {
            *from_address -= 1;
            if *from_address == 0 {
                open.by_address.remove(&address);
            }
        }
    }

    /// Moves a connection counted against `from` to `to` (both client keys); when `to` is at its
    /// cap, it counts against neither.
    fn recount(&self, from: Option<IpAddr>, to: IpAddr) -> Result<(), Refusal> {
        if from == Some(to) {
            return Ok(());
        }
        let mut open = self.open.lock().expect("connection counts lock poisoned");
        if let Some(from) = from {
            Self::uncount(&mut open, from);
        }
        self.count(&mut open, to)
    }

    fn release(&self, address: Option<IpAddr>) {
        let mut open = self.open.lock().expect("connection counts lock poisoned");
        open.total -= 1;
        if let Some(address) = address {
            Self::uncount(&mut open, address);
        }
    }
}

/// One admitted connection, counted until this is dropped with its stream.
pub(crate) struct ConnectionTicket {
    pub(super) connections: Arc<Connections>,
    /// The TCP peer's address.
    peer: IpAddr,
    /// Whether the peer is a trusted proxy.
    proxy: bool,
    /// The client key counted against its cap: the peer's; for a proxy's connection, its latest
    /// request's client (none before its first request, or when that client was at its cap).
    address: Mutex<Option<IpAddr>>,
    /// When the connection was accepted: the first request's header-read deadline runs from here.
    pub(crate) at: Instant,
}

impl ConnectionTicket {
    /// The client a request on this connection with `headers` comes from (see
    /// [`client_address`]). On a trusted proxy's connection, from now on the connection counts
    /// against that client's cap: `Err` with the client when it is at its cap already.
    pub(crate) fn client(&self, headers: &HeaderMap) -> Result<IpAddr, IpAddr> {
        if !self.proxy {
            return Ok(self.peer.to_canonical());
        }
        let connections = &self.connections;
        let client = client_address(self.peer, headers, &connections.trusted);
        let mut address = self.address.lock().expect("connection address lock poisoned");
        let key = client_key(client);
        match connections.recount(*address, key) {
            Ok(()) => {
                *address = Some(key);
                Ok(client)
            }
            Err(refusal) => {
                *address = None;
                connections.refused(refusal);
                tracing::debug!(%client, proxy = %self.peer, "request refused: too many connections from its client");
                Err(client)
            }
        }
    }
}

impl Drop for ConnectionTicket {
    fn drop(&mut self) {
        let address = *self.address.get_mut().unwrap_or_else(|poisoned| poisoned.into_inner());
        self.connections.release(address);
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

#[cfg(test)]
mod tests {
    use super::super::test_limits as limits;
    use super::*;

    fn peer(address: &str) -> SocketAddr {
        SocketAddr::new(address.parse().unwrap(), 40000)
    }

    #[tokio::test]
    async fn caps_count_from_admission_to_drop_in_all_and_per_address() {
        let metrics = Arc::new(Metrics::default());
        let connections = Connections::new(limits(3, 2), TrustedProxies::default(), metrics.clone());
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

    fn headers(x_forwarded_for: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert("x-forwarded-for", x_forwarded_for.parse().unwrap());
        headers
    }

    #[tokio::test]
    async fn a_proxys_connection_counts_against_its_latest_requests_client() {
        let metrics = Arc::new(Metrics::default());
        let trusted = TrustedProxies::new(&["10.0.0.1/32".parse().unwrap()]);
        let connections = Connections::new(limits(10, 2), trusted, metrics.clone());
        // The proxy itself is under no per-address cap: its connections are its clients'.
        let proxied: Vec<_> = (0..4).map(|_| connections.admit(peer("10.0.0.1")).unwrap()).collect();
        let client = |ticket: &ConnectionTicket, from: &str| ticket.client(&headers(from));
        let (a, b): (IpAddr, IpAddr) = ("203.0.113.7".parse().unwrap(), "198.51.100.9".parse().unwrap());
        assert_eq!(client(&proxied[0], "203.0.113.7"), Ok(a));
        assert_eq!(client(&proxied[0], "203.0.113.7"), Ok(a), "the same client again counts once");
        assert_eq!(client(&proxied[1], "203.0.113.7"), Ok(a));
        assert_eq!(client(&proxied[2], "203.0.113.7"), Err(a), "a third connection of that client");
        assert_eq!(metrics.connections_refused_per_address.get(), 1);
        assert_eq!(client(&proxied[2], "198.51.100.9"), Ok(b), "another client on the same connection");
        // A connection moves to its next request's client, freeing a place of the last one.
        assert_eq!(client(&proxied[0], "198.51.100.9"), Ok(b));
        assert_eq!(client(&proxied[3], "203.0.113.7"), Ok(a));
        // A direct client's headers count for nothing.
        let direct = connections.admit(peer("192.0.2.1")).expect("a place of its own address");
        assert_eq!(direct.client(&headers("203.0.113.7")), Ok("192.0.2.1".parse().unwrap()));
        // Through a proxy or not, a client has one count: `a` has two connections already.
        assert!(connections.admit(peer("203.0.113.7")).is_none());
        drop((proxied, direct));
        assert_eq!(metrics.connections_open.get(), 0);
        let open = connections.open.lock().unwrap();
        assert!(open.by_address.is_empty() && open.total == 0, "nothing left behind");
    }
}
