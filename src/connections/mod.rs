//! Client connections, from accept to close: the caps on how many are open (in all, and per client
//! address), the header-read and keep-alive timeouts, and HTTP/1.1 (with upgrades) served on each.
//! Plain TCP and TLS alike: the TLS listener admits a connection as soon as it is accepted, so its
//! handshake counts against the caps and against its header-read deadline.
//!
//! A connection is counted by a [`ConnectionTicket`] that travels with its stream: into the TLS
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
//!
//! Every request is given its [`ClientAddr`] here: behind a trusted proxy, the client the proxy
//! names (`forwarded.rs`), against whose cap the connection then counts.

mod caps;
mod client;
mod forwarded;
mod watchdog;

pub(crate) use caps::{ConnectionTicket, Connections};
pub(crate) use client::ClientAddr;
pub(crate) use forwarded::TrustedProxies;
use watchdog::{Activity, Slow, Watched};

/// Limits for the unit tests: the default timeouts and the caps given.
#[cfg(test)]
fn test_limits(total: usize, per_address: usize) -> crate::config::ConnectionLimits {
    crate::config::ConnectionLimits {
        header_read_timeout: std::time::Duration::from_secs(10),
        keep_alive_timeout: std::time::Duration::from_secs(60),
        max_connections: total,
        max_connections_per_address: per_address,
    }
}

use axum::body::Body;
use axum::extract::Request;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::future::Future;
use std::io::{self};
use std::net::SocketAddr;
use std::pin::pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::{Service, ServiceExt};

/// Where connections come from: plain TCP ([`Plain`]) or finished TLS handshakes
/// ([`crate::tls::TlsListener`]). Each comes with its ticket; refused ones never come out.
pub(crate) trait Accept: Send + 'static {
    type Io: AsyncRead + AsyncWrite + Unpin + Send + 'static;

    fn accept(&mut self) -> impl Future<Output = (Self::Io, SocketAddr, ConnectionTicket)> + Send;
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

    async fn accept(&mut self) -> (TcpStream, SocketAddr, ConnectionTicket) {
        loop {
            match self.tcp.accept().await {
                Ok((stream, peer)) => {
                    if let Some(ticket) = self.connections.admit(peer) {
                        // Frames are small and often several per event: without this, a second
                        // write waits for the peer's delayed ACK of the first (Nagle, ~40 ms).
                        if let Err(err) = stream.set_nodelay(true) {
                            tracing::debug!(error = %err, "cannot set TCP_NODELAY");
                        }
                        return (stream, peer, ticket);
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
/// the [`ClientAddr`] in each request's extensions, until `stop` is cancelled. Then the
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
        let (io, peer, ticket) = tokio::select! {
            _ = stop.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        tasks.spawn(connection(http.clone(), io, peer, ticket, service.clone(), stop.clone()));
    }
    drop(listener);
    tasks.close();
    tasks.wait().await;
}

async fn connection<Io, S>(
    http: Arc<http1::Builder>,
    io: Io,
    peer: SocketAddr,
    ticket: ConnectionTicket,
    service: S,
    stop: CancellationToken,
) where
    Io: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send,
{
    let connections = ticket.connections.clone();
    let activity = Arc::new(Activity::new(ticket.at, &connections.limits));
    // Shared with the requests: a proxy's connection counts against each request's client.
    let ticket = Arc::new(ticket);
    let io = Watched { io, activity: activity.clone(), _ticket: ticket.clone() };
    let requests = activity.clone();
    let service = hyper::service::service_fn(move |request: Request<Incoming>| {
        let busy = requests.begin();
        let mut request = request.map(Body::new);
        let client = ticket.client(request.headers());
        let service = service.clone();
        async move {
            let response = match client {
                Ok(client) => {
                    request.extensions_mut().insert(ClientAddr(client));
                    service.oneshot(request).await
                }
                Err(_) => Ok(too_many_connections()),
            };
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

/// A trusted proxy's request for a client at its cap of connections.
fn too_many_connections() -> Response {
    let detail = serde_json::json!({ "detail": "Too many connections from this address" });
    (StatusCode::TOO_MANY_REQUESTS, Json(detail)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Metrics;

    #[tokio::test]
    async fn accepted_streams_send_small_writes_at_once() {
        let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = tcp.local_addr().unwrap();
        let connections =
            Connections::new(test_limits(10, 10), TrustedProxies::default(), Arc::new(Metrics::default()));
        let mut plain = Plain::new(tcp, connections);
        let _client = TcpStream::connect(address).await.unwrap();
        let (stream, _, _ticket) = plain.accept().await;
        assert!(stream.nodelay().unwrap(), "TCP_NODELAY on every accepted stream");
    }
}
