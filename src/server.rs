//! The server's life: listen (plain or TLS), follow the revocation log, the keys folder, trusted
//! issuers' published keys and the TLS certificate (its files, and SIGHUP), and shut down within a
//! bound on SIGTERM or SIGINT.

use crate::app::AppState;
use crate::auth::keyring;
use crate::clock::now_secs as now;
use crate::config::Config;
use crate::connections::{self, Connections, Plain, TrustedProxies};
use crate::store::StoreResult;
use crate::tls::{Certificates, TlsListener, Trigger};
use axum::Router;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

/// How often each node reads new entries of the revocation log: the bound on how late a
/// revocation made elsewhere (another node, the CLI) closes this node's sockets.
const REVOCATION_POLL: Duration = Duration::from_millis(250);

/// How often a node forgets expired revocations (its memory), and deletes expired logins and
/// revocations from the store: at start, then hourly (every node does it; deletes are idempotent).
const FORGET_EVERY: Duration = Duration::from_secs(60);
const PRUNE_EVERY: Duration = Duration::from_secs(3600);

/// Every route: the HTTP API and pages, the WebSocket endpoints, the chat, the server API.
fn routes() -> Router<AppState> {
    crate::http::routes()
        .merge(crate::ws::routes())
        .merge(crate::session::routes())
        .merge(crate::api::routes())
        .merge(crate::centrifugo::routes())
        .merge(crate::emulation::routes())
}

/// The OpenAPI description of the HTTP API and the server API.
fn openapi() -> utoipa::openapi::OpenApi {
    crate::http::openapi()
        .merge_from(<crate::api::ServerApiDoc as utoipa::OpenApi>::openapi())
        .merge_from(<crate::api::AdminApiDoc as utoipa::OpenApi>::openapi())
        .merge_from(<crate::centrifugo::api::CentrifugoApiDoc as utoipa::OpenApi>::openapi())
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

/// After SIGTERM/SIGINT: how long in-flight requests, then closing sockets, then webhooks get
/// before the process exits anyway (10 s in all).
const REQUEST_GRACE: Duration = Duration::from_secs(5);
const SOCKET_GRACE: Duration = Duration::from_secs(3);
/// Then how long webhooks get to record what the sockets' closing changed.
const WEBHOOKS_GRACE: Duration = Duration::from_secs(2);

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

/// Fetches each trusted issuer's published keys, in the background (a down endpoint neither holds
/// up nor stops the start), then refreshes them until shutdown.
fn follow_issuers(state: &AppState) {
    for issuer in &state.config.sections.trusted_issuers {
        if let Some(file) = &issuer.secret_file {
            let (issuer, file) = (issuer.name(), file.display());
            tracing::info!(issuer, %file, "admitting a trusted issuer's HS256 tokens");
        }
    }
    for (issuer, jwks) in state.auth.issuers.published() {
        tracing::info!(issuer = issuer.label(), url = %jwks.url, "following a trusted issuer's keys");
        jwks.clone().follow(state.shutdown.token());
    }
}

/// Rereads the TLS certificate and key on SIGHUP, and when their files change (checked every
/// `--tls-reload-interval`), so a renewed certificate is presented without a restart. Without TLS,
/// SIGHUP is only logged: it must not end the process, its default action.
fn follow_certificate(state: &AppState, certificates: Option<Arc<Certificates>>, mut hangup: Hangup) {
    let shutdown = state.shutdown.token();
    let every = state.config.tls_reload_interval;
    let mut poll = (certificates.is_some() && !every.is_zero()).then(|| {
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick
    });
    tokio::spawn(async move {
        loop {
            let trigger = tokio::select! {
                _ = shutdown.cancelled() => return,
                () = hangup.recv() => Trigger::Signal,
                () = next_tick(poll.as_mut()) => Trigger::FileChange,
            };
            let Some(certificates) = certificates.clone() else {
                tracing::info!("SIGHUP: nothing to reload (TLS is off)");
                continue;
            };
            // Reading files (and parsing a key) blocks: off the runtime's threads.
            let _ = tokio::task::spawn_blocking(move || {
                if trigger == Trigger::Signal || certificates.changed() {
                    certificates.reload(trigger);
                }
            })
            .await;
        }
    });
}

/// The next tick of `poll`; never without one.
async fn next_tick(poll: Option<&mut tokio::time::Interval>) {
    match poll {
        Some(poll) => {
            poll.tick().await;
        }
        None => std::future::pending().await,
    }
}

/// The listening socket on `bind`; the error names the address and, when it is taken, the flag.
async fn listen(bind: std::net::SocketAddr) -> anyhow::Result<TcpListener> {
    TcpListener::bind(bind).await.map_err(|err| match err.kind() {
        std::io::ErrorKind::AddrInUse => {
            anyhow::anyhow!("cannot listen on {bind}: the address is already in use (another wsguard?); choose another with --bind")
        }
        _ => anyhow::anyhow!("cannot listen on {bind}: {err}"),
    })
}

/// Runs the server until SIGTERM or SIGINT.
// Long: the steps of a server's life, in their order, read best in one piece.
pub(crate) async fn serve(config: Config) -> anyhow::Result<()> {
    config.validate()?;
    // Before anything slow: until then, each of these signals would end the process.
    let (shutdown_signals, hangup) = install_signal_handlers()?;
    let (tls, certificates) = match (&config.tls_cert, &config.tls_key) {
        (Some(cert), Some(key)) => {
            let (acceptor, certificates) = crate::tls::acceptor(cert, key)?;
            (Some(acceptor), Some(certificates))
        }
        _ => (None, None),
    };
    let state = AppState::new(config).await?;
    follow_revocations(state.clone()).await?;
    state.api_keys.clone().follow(state.store.clone(), state.shutdown.token()).await?;
    follow_keys(state.clone());
    follow_issuers(&state);
    follow_certificate(&state, certificates, hangup);
    // Caps and timeouts per connection, from accept (before any TLS handshake) to close.
    let trusted = TrustedProxies::new(&state.config.trusted_proxies);
    let caps = Connections::new(state.config.connections, trusted, state.metrics.clone());
    let listener = listen(state.config.bind).await?;
    let addr = listener.local_addr()?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    // The first line on stdout is the address; tests and scripts read the port from it.
    crate::logs::print(&format!("wsguard listening on {scheme}://{addr}"));
    tracing::info!(%addr, database = %crate::logs::redact_url(&state.config.store.database_url()), "listening");
    let shutdown = state.shutdown.clone();
    tokio::spawn(async move {
        shutdown_signals.recv().await;
        // First: nothing that could fail (such as logging) stands before it.
        shutdown.begin();
        tracing::info!("shutting down");
    });
    let app = crate::http::service(state.clone(), routes(), openapi());
    let stop = state.shutdown.token();
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
    let stopped = state.shutdown.token();
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
    // Last: the closed sockets' leaving is recorded, for delivery after the restart.
    if let Some(webhooks) = &state.webhooks {
        webhooks.finish(WEBHOOKS_GRACE).await;
    }
    Ok(())
}

/// SIGTERM and SIGINT: shut down.
struct ShutdownSignals {
    #[cfg(unix)]
    terminate: tokio::signal::unix::Signal,
    #[cfg(unix)]
    interrupt: tokio::signal::unix::Signal,
}

/// SIGHUP: reread the TLS certificate.
struct Hangup {
    #[cfg(unix)]
    signal: tokio::signal::unix::Signal,
}

/// Installs the handlers of SIGTERM, SIGINT and SIGHUP at once (tokio installs a handler when its
/// stream is made, and keeps it for the life of the process).
fn install_signal_handlers() -> anyhow::Result<(ShutdownSignals, Hangup)> {
    #[cfg(unix)]
    {
        use anyhow::Context as _;
        use tokio::signal::unix::{signal, SignalKind};
        let terminate = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
        let interrupt = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
        let hangup = signal(SignalKind::hangup()).context("installing the SIGHUP handler")?;
        Ok((ShutdownSignals { terminate, interrupt }, Hangup { signal: hangup }))
    }
    #[cfg(not(unix))]
    Ok((ShutdownSignals {}, Hangup {}))
}

impl ShutdownSignals {
    async fn recv(mut self) {
        #[cfg(unix)]
        tokio::select! {
            _ = self.terminate.recv() => {}
            _ = self.interrupt.recv() => {}
        }
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
    }
}

impl Hangup {
    async fn recv(&mut self) {
        #[cfg(unix)]
        if self.signal.recv().await.is_some() {
            return;
        }
        // No SIGHUP off unix; and on unix, `None` means the runtime is going away.
        std::future::pending::<()>().await
    }
}
