//! The server's life: listen (plain or TLS), follow the revocation log and the keys folder, and
//! shut down within a bound on SIGTERM or SIGINT.

use crate::app::AppState;
use crate::auth::keyring;
use crate::auth::tokens::now;
use crate::config::Config;
use crate::connections::{self, Connections, Plain};
use crate::store::StoreResult;
use crate::tls::TlsListener;
use axum::Router;
use std::time::Duration;
use tokio::net::TcpListener;

/// How often each node reads new entries of the revocation log: the bound on how late a
/// revocation made elsewhere (another node, the CLI) closes this node's sockets.
const REVOCATION_POLL: Duration = Duration::from_millis(250);

/// How often a node forgets expired revocations (its memory), and deletes expired logins and
/// revocations from the store: at start, then hourly (every node does it; deletes are idempotent).
const FORGET_EVERY: Duration = Duration::from_secs(60);
const PRUNE_EVERY: Duration = Duration::from_secs(3600);

/// Every route: the HTTP API and pages, the WebSocket endpoints, the chat.
fn routes() -> Router<AppState> {
    crate::http::routes().merge(crate::ws::routes()).merge(crate::chat::routes())
}

/// Loads the revocations in force, then follows the log until shutdown.
async fn follow_revocations(state: AppState) -> StoreResult<()> {
    let (mut last_id, live) = state.store.live_revocations(now()).await?;
    for revocation in &live {
        state.auth.revocations.apply(revocation);
    }
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(REVOCATION_POLL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut rounds: u64 = 0;
        let every = |period: Duration| (period.as_millis() / REVOCATION_POLL.as_millis()) as u64;
        loop {
            tokio::select! {
                _ = state.shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            match state.store.revocations_since(last_id, 1000).await {
                Ok(entries) => {
                    for (id, revocation) in entries {
                        state.auth.apply(&revocation);
                        last_id = id;
                    }
                }
                Err(err) => tracing::warn!(error = %err, "reading the revocation log failed"),
            }
            rounds += 1;
            if rounds % every(FORGET_EVERY) == 0 {
                state.auth.revocations.prune(now());
            }
            if rounds % every(PRUNE_EVERY) == 1 {
                match state.store.prune(now()).await {
                    Ok(pruned) => tracing::info!(
                        logins = pruned.logins,
                        revocations = pruned.revocations,
                        "pruned expired entries"
                    ),
                    Err(err) => tracing::warn!(error = %err, "pruning expired entries failed"),
                }
            }
        }
    });
    Ok(())
}

/// After SIGTERM/SIGINT: how long in-flight requests, then closing sockets, get before the
/// process exits anyway (8 s in all).
const REQUEST_GRACE: Duration = Duration::from_secs(5);
const SOCKET_GRACE: Duration = Duration::from_secs(3);

/// Rereads the keys folder now and then, so a rotation made by `wsguard keys rotate` (or another
/// node) starts signing here without a restart.
fn follow_keys(state: AppState) {
    if state.auth.tokens.ring().is_none() {
        return;
    }
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(keyring::RELOAD_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tokio::select! {
                _ = state.shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            let reader = state.clone();
            // Reading files (and parsing a new key) blocks: off the runtime's threads.
            let _ = tokio::task::spawn_blocking(move || {
                if let Some(ring) = reader.auth.tokens.ring() {
                    ring.reload();
                }
            })
            .await;
        }
    });
}

/// Runs the server until SIGTERM or SIGINT.
// Long: the steps of a server's life, in their order, read best in one piece.
pub(crate) async fn serve(config: Config) -> anyhow::Result<()> {
    config.validate()?;
    let tls = match (&config.tls_cert, &config.tls_key) {
        (Some(cert), Some(key)) => Some(crate::tls::acceptor(cert, key)?),
        _ => None,
    };
    let state = AppState::new(config, crate::chat::protocol::left).await?;
    follow_revocations(state.clone()).await?;
    follow_keys(state.clone());
    // Caps and timeouts per connection, from accept (before any TLS handshake) to close.
    let caps = Connections::new(state.config.connections, state.metrics.clone());
    let listener = TcpListener::bind(state.config.bind).await?;
    let addr = listener.local_addr()?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    // The first line on stdout is the address; tests and scripts read the port from it.
    println!("wsguard listening on {scheme}://{addr}");
    tracing::info!(%addr, database = %redact(&state.config.store.database_url()), "listening");
    let shutdown = state.shutdown.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutting down");
        shutdown.cancel();
    });
    let app = crate::http::service(state.clone(), routes());
    let stop = state.shutdown.clone();
    let server = async {
        match tls {
            None => connections::serve(Plain::new(listener, caps), app, stop).await,
            Some(acceptor) => {
                let listener = TlsListener::new(listener, acceptor, caps, stop.clone());
                connections::serve(listener, app, stop).await
            }
        }
    };
    // A client that never finishes its request must not keep the process alive.
    let stopped = state.shutdown.clone();
    let grace_over = async move {
        stopped.cancelled().await;
        tokio::time::sleep(REQUEST_GRACE).await;
    };
    tokio::select! {
        () = server => {}
        _ = grace_over => tracing::warn!("requests still in flight at the shutdown deadline"),
    }
    let deadline = tokio::time::Instant::now() + SOCKET_GRACE;
    // Let the sockets send their 1001 close frames.
    while state.metrics.sockets_open.get() > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

/// A database URL without its password, for logs.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}://…@{}", &url[..scheme], &url[at + 1..])
        }
        _ => url.to_owned(),
    }
}

async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("installing the SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
