//! The shared state every handler and socket reaches: built once from the configuration. The
//! server's life (listening, following the revocation log, shutting down) is `server.rs`.

use crate::auth::api_keys::{ApiKeys, Budgets};
use crate::auth::issuers::TrustedIssuers;
use crate::auth::keyring::{self, KeyRing};
use crate::auth::password::Hasher;
use crate::auth::secret::HmacSecret;
use crate::auth::throttle::{Shared, Throttle};
use crate::auth::tokens::{Signer, Tokens};
use crate::auth::Authenticator;
use crate::channels::{self, Engine};
use crate::config::{self, Config};
use crate::metrics::Metrics;
use crate::proxy::Proxy;
use crate::shutdown::Shutdown;
use crate::store::{self, DynStore};
use crate::webhooks::Webhooks;
use std::ops::Deref;
use std::sync::Arc;
use tokio::sync::Semaphore;

pub(crate) struct Inner {
    pub(crate) config: Config,
    pub(crate) store: DynStore,
    pub(crate) auth: Arc<Authenticator>,
    pub(crate) hasher: Hasher,
    /// Every channel operation: namespaces, subscribers, publications, fan-out across nodes.
    pub(crate) engine: Arc<Engine>,
    /// Shared with the connection caps (`connections`), which count before any request exists.
    pub(crate) metrics: Arc<Metrics>,
    /// Cancelled on SIGTERM/SIGINT: sockets close with 1001.
    pub(crate) shutdown: Shutdown,
    /// Places for sockets without a token (`--max-anonymous-sockets`).
    pub(crate) anonymous_sockets: Arc<Semaphore>,
    /// Failed-login counters, checked before any hashing: in Redis with a broker, else in memory.
    pub(crate) throttle: Throttle,
    /// The server API's keys, reread from the store every second.
    pub(crate) api_keys: Arc<ApiKeys>,
    /// Each server-API key's requests per second on this node.
    pub(crate) api_budgets: Budgets,
    /// The application's endpoints (`[proxy]`), if it has any.
    pub(crate) proxy: Option<Arc<Proxy>>,
    /// `[webhooks]`, if configured.
    pub(crate) webhooks: Option<Webhooks>,
    /// When each kind of refused handshake was last logged.
    pub(crate) refusals: crate::ws::refusals::Refusals,
}

#[derive(Clone)]
pub(crate) struct AppState(Arc<Inner>);

impl Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl AppState {
    /// Opens the store and the signing keys and starts the channel engine (connecting its broker).
    pub(crate) async fn new(config: Config) -> anyhow::Result<AppState> {
        let data_dir = &config.store.data_dir;
        config::ensure_data_dir(data_dir)?;
        let store = store::connect(&config.store.database_url()).await?;
        let alg = config.signing.alg();
        let signer: Signer = if keyring::is_asymmetric(alg) {
            KeyRing::open(&config.signing.keys_dir(data_dir), alg, config.tokens.refresh_ttl)?.into()
        } else {
            HmacSecret::load(config.signing.jwt_secret_file.as_deref(), data_dir)?.into()
        };
        let settings = &config.tokens;
        let tokens = Tokens::new(
            signer,
            settings.issuer.clone(),
            settings.audience.clone(),
            settings.access_ttl,
            settings.refresh_ttl,
        );
        let issuers = TrustedIssuers::load(&config.sections.trusted_issuers)?;
        let shutdown = Shutdown::default();
        let metrics = Arc::<Metrics>::default();
        let sections = &config.sections;
        let proxy = Proxy::new(sections.proxy.as_ref(), &sections.namespaces, metrics.clone())?.map(Arc::new);
        let auth = Arc::new(Authenticator::new(tokens, issuers, store.clone(), config.tokens.refresh_grace));
        let single_node = config.store.database_url().starts_with("sqlite:");
        let (webhooks, watcher) = match &sections.webhooks {
            Some(settings) => {
                let (webhooks, watcher) =
                    Webhooks::new(settings, store.clone(), metrics.clone(), single_node)?;
                (Some(webhooks), Some(watcher))
            }
            None => (None, None),
        };
        let settings = channels::Settings {
            namespaces: &config.sections.namespaces,
            broker_url: config.broker_url.as_deref(),
            cluster: &config.cluster,
            bytes_per_user_per_day: config.chat_bytes_per_user_per_day,
            proxy: proxy.clone(),
            auth: auth.clone(),
            watcher,
        };
        let engine = Engine::start(settings, store.clone(), metrics.clone(), shutdown.token()).await?;
        if let Some(webhooks) = &webhooks {
            webhooks.start(engine.clone());
        }
        // With Redis, the login throttle's counters are the cluster's, not this node's.
        let throttle = match &config.broker_url {
            Some(url) => Throttle::shared(config.login_limits, Shared::connect(url, &config.cluster).await?),
            None => Throttle::new(config.login_limits),
        };
        Ok(AppState(Arc::new(Inner {
            engine,
            auth,
            hasher: Hasher::new(config.hash_concurrency(), config.hash_queue),
            store,
            metrics,
            shutdown,
            throttle,
            api_keys: Arc::default(),
            api_budgets: Budgets::new(config.api.api_requests_per_sec, config.api.api_burst),
            anonymous_sockets: Arc::new(Semaphore::new(config.max_anonymous_sockets)),
            proxy,
            webhooks,
            refusals: Default::default(),
            config,
        })))
    }
}
