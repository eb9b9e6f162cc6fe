//! HTTPS and WSS: a listener that hands over connections once their TLS handshake is done, so
//! they are served (graceful shutdown, upgrades, `ConnectInfo`) as on plain TCP. A connection is
//! admitted against the connection caps as it is accepted, before its handshake. The certificate
//! is reloaded without a restart (see [`certificate`]).

mod certificate;
mod summary;

pub(crate) use certificate::{inspect, Certificates, Trigger};

use crate::connections::{self, Accept, ConnectionTicket, Connections};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Semaphore};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

/// Handshakes in progress at once; beyond it, accepting waits (the kernel's backlog queues).
const MAX_HANDSHAKES: usize = 1024;

/// A TLS acceptor from PEM files, the certificate chain and its private key, and what holds them:
/// each handshake presents the pair [`Certificates`] holds when it starts.
pub(crate) fn acceptor(cert: &Path, key: &Path) -> anyhow::Result<(TlsAcceptor, Arc<Certificates>)> {
    // The provider is named: reqwest's rustls features may enable others in the same build.
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let certificates = Arc::new(Certificates::load(cert, key, provider.clone())?);
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_cert_resolver(certificates.clone());
    // HTTP/1.1 only: the server speaks it (and WebSockets upgrade over it).
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok((TlsAcceptor::from(Arc::new(config)), certificates))
}

type Handshaken = (TlsStream<TcpStream>, SocketAddr, ConnectionTicket);

/// Accepts TCP connections, admits them against `connections`' caps (closing the others at once),
/// and runs their handshakes concurrently, each within the header-read timeout from accept;
/// `accept` yields finished ones. The TCP listener closes when `stop` is cancelled.
pub(crate) struct TlsListener {
    ready: mpsc::Receiver<Handshaken>,
}

impl TlsListener {
    pub(crate) fn new(
        tcp: TcpListener,
        acceptor: TlsAcceptor,
        connections: Arc<Connections>,
        stop: CancellationToken,
    ) -> Self {
        let (tx, ready) = mpsc::channel(64);
        let handshakes = Arc::new(Semaphore::new(MAX_HANDSHAKES));
        tokio::spawn(async move {
            loop {
                let permit = tokio::select! {
                    _ = stop.cancelled() => return,
                    permit = handshakes.clone().acquire_owned() => permit.expect("never closed"),
                };
                let (stream, peer) = tokio::select! {
                    _ = stop.cancelled() => return,
                    accepted = tcp.accept() => match accepted {
                        Ok(accepted) => accepted,
                        Err(err) => {
                            connections::accept_failed(err).await;
                            continue;
                        }
                    },
                };
                // Beyond a cap, the stream is dropped here: closed before any handshake.
                let Some(ticket) = connections.admit(peer) else { continue };
                let deadline = ticket.at + connections.handshake_timeout();
                let (acceptor, tx, connections) = (acceptor.clone(), tx.clone(), connections.clone());
                tokio::spawn(async move {
                    let _ = stream.set_nodelay(true);
                    match tokio::time::timeout_at(deadline, acceptor.accept(stream)).await {
                        Ok(Ok(tls)) => {
                            // The permit bounds handshakes; the ticket, the connection's life.
                            drop(permit);
                            let _ = tx.send((tls, peer, ticket)).await;
                        }
                        Ok(Err(err)) => tracing::debug!(error = %err, "TLS handshake failed"),
                        Err(_) => {
                            connections.handshake_timed_out();
                            tracing::debug!(%peer, "TLS handshake timed out");
                        }
                    }
                });
            }
        });
        TlsListener { ready }
    }
}

impl Accept for TlsListener {
    type Io = TlsStream<TcpStream>;

    async fn accept(&mut self) -> Handshaken {
        match self.ready.recv().await {
            Some(connection) => connection,
            // The accept loop stopped (shutdown): nothing more will come.
            None => std::future::pending().await,
        }
    }
}
