//! How many connections are open, in all and per client address, and the caps on them: a
//! connection is counted by its [`ConnectionTicket`] from accept to close.

use crate::auth::throttle::client_key;
use crate::config::ConnectionLimits;
use crate::metrics::Metrics;
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
    pub(crate) fn admit(self: &Arc<Self>, peer: SocketAddr) -> Option<ConnectionTicket> {
        let address = client_key(peer.ip());
        match self.count(address) {
            Ok(()) => {
                self.metrics.connections_open.inc();
                Some(ConnectionTicket { connections: self.clone(), address, at: Instant::now() })
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
pub(crate) struct ConnectionTicket {
    pub(super) connections: Arc<Connections>,
    address: IpAddr,
    /// When the connection was accepted: the first request's header-read deadline runs from here.
    pub(crate) at: Instant,
}

impl Drop for ConnectionTicket {
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
}
