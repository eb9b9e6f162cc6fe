//! The shared state, and the server's life: start, follow the revocation log, shut down.

use crate::auth::keyring::{self, KeyRing};
use crate::auth::keys::{ensure_data_dir, HmacKey};
use crate::auth::password::Hasher;
use crate::auth::tokens::{now, SigningKeys, Tokens};
use crate::auth::Authenticator;
use crate::broker::{DynBroker, InProcess, RedisBroker};
use crate::chat::hub::Hub;
use crate::config::Config;
use crate::metrics::Metrics;
use crate::store::{self, DynStore, Revocation, StoreResult};
use crate::tls::TlsListener;
use crate::ws::registry::Sockets;
use crate::ws::session::Limits;
use axum::serve::ListenerExt;
use std::net::SocketAddr;
use std::ops::Deref;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// How often each node reads new entries of the revocation log: the bound on how late a
/// revocation made elsewhere (another node, the CLI) closes this node's sockets.
const REVOCATION_POLL: Duration = Duration::from_millis(250);

pub struct Inner {
    pub config: Config,
    pub store: DynStore,
    pub auth: Authenticator,
    pub hasher: Hasher,
    pub sockets: Arc<Sockets>,
    /// This node's chat rooms.
    pub hub: Arc<Hub>,
    /// Room fan-out across nodes (in-process on a single node).
    pub broker: DynBroker,
    pub metrics: Metrics,
    pub limits: Limits,
    /// Cancelled on SIGTERM/SIGINT: sockets close with 1001.
    pub shutdown: CancellationToken,
    pub secure_cookies: bool,
    /// Failed-login counters, checked before any hashing.
    pub throttle: crate::auth::throttle::Throttle,
}

#[derive(Clone)]
pub struct AppState(Arc<Inner>);

impl Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl AppState {
    pub async fn new(config: Config) -> anyhow::Result<AppState> {
        ensure_data_dir(&config.data_dir)?;
        let store = store::connect(&config.database_url).await?;
        let keys: SigningKeys = if keyring::is_asymmetric(config.jwt_alg) {
            KeyRing::open(&config.jwt_keys_dir, config.jwt_alg, config.refresh_ttl)?.into()
        } else {
            HmacKey::load(config.jwt_secret_file.as_deref(), &config.data_dir)?.into()
        };
        let tokens = Tokens::new(
            keys,
            config.issuer.clone(),
            config.audience.clone(),
            config.access_ttl,
            config.refresh_ttl,
        );
        let limits = Limits {
            max_message_bytes: config.max_message_bytes,
            max_messages_per_sec: config.max_messages_per_sec,
            idle_timeout: config.idle_timeout,
            ping_interval: config.ping_interval,
            expiry_warning: config.expiry_warning,
        };
        let shutdown = CancellationToken::new();
        let hub = Arc::new(Hub::default());
        let broker: DynBroker = match &config.broker_url {
            Some(url) => RedisBroker::start(url, &config.cluster, hub.clone(), shutdown.clone()).await?,
            None => Arc::new(InProcess::new(hub.clone())),
        };
        Ok(AppState(Arc::new(Inner {
            hub,
            broker,
            auth: Authenticator::new(tokens, store.clone()),
            hasher: Hasher::new(config.hash_concurrency, config.hash_queue),
            store,
            sockets: Arc::default(),
            metrics: Metrics::default(),
            limits,
            shutdown,
            secure_cookies: config.tls_cert.is_some(),
            throttle: crate::auth::throttle::Throttle::new(crate::auth::throttle::Limits {
                per_user_and_address: config.login_max_failures,
                per_address: config.login_max_failures_per_address,
                per_user: config.login_max_failures_per_user,
                window: config.login_window,
            }),
            config,
        })))
    }

    /// Applies a revocation on this node: the token stops verifying and its sockets close.
    pub fn apply_revocation(&self, revocation: &Revocation) {
        self.auth.revocations.apply(revocation);
        self.auth.forget(&revocation.username);
        let closed = self.sockets.revoke(revocation);
        if closed > 0 {
            tracing::info!(username = %revocation.username, closed, "revocation closed sockets");
        }
    }

    /// Records a revocation in the log (for every node) and applies it here at once.
    pub async fn revoke(&self, revocation: Revocation) -> StoreResult<()> {
        self.store.revoke(&revocation, now()).await?;
        self.apply_revocation(&revocation);
        Ok(())
    }
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
        loop {
            tokio::select! {
                _ = state.shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            match state.store.revocations_since(last_id, 1000).await {
                Ok(entries) => {
                    for (id, revocation) in entries {
                        state.apply_revocation(&revocation);
                        last_id = id;
                    }
                }
                Err(err) => tracing::warn!(error = %err, "reading the revocation log failed"),
            }
            rounds += 1;
            if rounds % 240 == 0 {
                state.auth.revocations.prune(now());
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
pub async fn serve(config: Config) -> anyhow::Result<()> {
    let tls = match (&config.tls_cert, &config.tls_key) {
        (Some(cert), Some(key)) => Some(crate::tls::acceptor(cert, key)?),
        _ => None,
    };
    let state = AppState::new(config).await?;
    follow_revocations(state.clone()).await?;
    follow_keys(state.clone());
    let listener = TcpListener::bind(state.config.bind).await?;
    let addr = listener.local_addr()?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    // The first line on stdout is the address; tests and scripts read the port from it.
    println!("wsguard listening on {scheme}://{addr}");
    tracing::info!(%addr, database = %redact(&state.config.database_url), "listening");
    let shutdown = state.shutdown.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutting down");
        shutdown.cancel();
    });
    // The peer address feeds the login throttle.
    let app = axum::ServiceExt::<axum::extract::Request>::into_make_service_with_connect_info::<SocketAddr>(
        crate::http::service(state.clone()),
    );
    let stop = state.shutdown.clone();
    let graceful = async move { stop.cancelled().await };
    let server = async {
        match tls {
            None => axum::serve(listener, app).with_graceful_shutdown(graceful).await,
            Some(acceptor) => {
                // tap_io: axum's `ConnectInfo<SocketAddr>` impl for a custom listener goes through it.
                let listener = TlsListener::new(listener, acceptor, state.shutdown.clone())?.tap_io(|_| {});
                axum::serve(listener, app).with_graceful_shutdown(graceful).await
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
        result = server => result?,
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
