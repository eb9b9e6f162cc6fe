//! A trusted issuer's published keys, fetched and kept. Fetched at start without holding the start
//! up, refreshed periodically (`Cache-Control: max-age` within bounds), and at once when a token
//! names an unknown `kid`, at most once per [`MISS_REFETCH_INTERVAL`] and one fetch at a time: a
//! handshake waits for it at most [`MISS_WAIT`]. A `kid` is known to be absent once a fetch made
//! while its token waited succeeded without it, or when an earlier fetch held it and a later one
//! no longer does (withdrawn); until then (the endpoint down, a fetch spaced out, none succeeded
//! yet) the keys are unavailable, which the client is told to retry, not that its token is
//! forged. While the endpoint is down, the keys of the last good fetch stay
//! in use, the issuer is reported stale (`/readyz`, `/metrics`), and fetches are retried with
//! backoff from a second up to [`RETRY_MAX`].

use super::keyset::{KeySet, SetKey};
use super::verified::VerifiedTokens;
use crate::metrics::Counter;
use anyhow::Context;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Largest JWK Set accepted; a bigger answer is a failed fetch.
pub(crate) const MAX_JWKS_BYTES: usize = 256 * 1024;
/// A whole fetch, connecting included.
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Fetches for unknown `kid`s happen at most this often, so made-up `kid`s cost the issuer nothing.
pub(crate) const MISS_REFETCH_INTERVAL: Duration = Duration::from_secs(5);
/// How long a handshake waits for a fetch its unknown `kid` started or found running.
const MISS_WAIT: Duration = Duration::from_secs(2);
/// Periodic refresh: every `max-age` of the last answer within these bounds, this without one.
const REFRESH_DEFAULT: Duration = Duration::from_secs(300);
const REFRESH_MIN: Duration = Duration::from_secs(60);
const REFRESH_MAX: Duration = Duration::from_secs(3600);
/// After a failed fetch, the next periodic one comes after a second, doubling up to this.
const RETRY_FIRST: Duration = Duration::from_secs(1);
const RETRY_MAX: Duration = Duration::from_secs(30);

/// Why a token's key was not found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Miss {
    /// The issuer's keys, fetched while the token waited, do not have it.
    Unknown,
    /// Not known yet: no fetch could tell (the endpoint is down, or a fetch was too recent to
    /// start another). The client may try again in this many seconds.
    Unavailable { retry_after_secs: u64 },
}

/// The keys published at one URL.
pub(crate) struct JwksKeys {
    pub(crate) url: String,
    client: reqwest::Client,
    keys: RwLock<Arc<KeySet>>,
    fetching: Mutex<Fetching>,
    /// Bumped at the end of every fetch, good or bad: what waiting handshakes wake on.
    finished: watch::Sender<u64>,
    /// The last fetch failed, or none has succeeded yet.
    stale: AtomicBool,
    /// Tokens verified with these keys; those of a key no longer published are forgotten with
    /// every new set.
    pub(crate) verified: VerifiedTokens,
    pub(crate) fetched: Counter,
    pub(crate) failed: Counter,
}

#[derive(Default)]
struct Fetching {
    in_flight: bool,
    last_started: Option<Instant>,
}

impl JwksKeys {
    pub(crate) fn new(url: &str) -> anyhow::Result<JwksKeys> {
        let client = reqwest::Client::builder()
            .timeout(FETCH_TIMEOUT)
            .connect_timeout(CONNECT_TIMEOUT)
            // The configured URL is the one trusted: no redirect elsewhere (or to plain http).
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("wsguard/", env!("CARGO_PKG_VERSION")))
            .build()
            .context("building the HTTP client for JWKS")?;
        Ok(JwksKeys {
            url: url.to_owned(),
            client,
            keys: RwLock::default(),
            fetching: Mutex::default(),
            finished: watch::Sender::new(0),
            stale: AtomicBool::new(true),
            verified: VerifiedTokens::default(),
            fetched: Counter::default(),
            failed: Counter::default(),
        })
    }

    /// One fetch of the keys at `url`, kept nowhere (`wsguard doctor`): how many of them are
    /// usable.
    pub(crate) async fn probe(url: &str) -> anyhow::Result<usize> {
        let (set, _) = JwksKeys::new(url)?.fetch().await?;
        Ok(set.len())
    }

    /// Puts `set` in place as if a fetch had just brought it.
    #[cfg(test)]
    pub(crate) fn install(&self, set: KeySet) {
        *self.keys.write().expect("jwks lock") = Arc::new(set);
        self.stale.store(false, Ordering::Relaxed);
    }

    pub(crate) fn is_stale(&self) -> bool {
        self.stale.load(Ordering::Relaxed)
    }

    fn keys(&self) -> Arc<KeySet> {
        self.keys.read().expect("jwks lock").clone()
    }

    /// The key for a token's `kid`. An unknown one refetches the set (see the module
    /// documentation) and waits a little for it.
    pub(crate) async fn find(self: &Arc<Self>, kid: Option<&str>) -> Result<Arc<SetKey>, Miss> {
        if let Some(key) = self.keys().get(kid) {
            return Ok(key);
        }
        if self.keys().withdrew(kid) {
            return Err(Miss::Unknown);
        }
        let mut finished = self.finished.subscribe();
        let mut fetched = false;
        if self.start_fetch(Some(MISS_REFETCH_INTERVAL)) || self.fetching().in_flight {
            fetched = matches!(tokio::time::timeout(MISS_WAIT, finished.changed()).await, Ok(Ok(())));
        }
        // A fetch may also have finished just before: look again either way.
        if let Some(key) = self.keys().get(kid) {
            return Ok(key);
        }
        if fetched && !self.is_stale() {
            return Err(Miss::Unknown);
        }
        Err(Miss::Unavailable { retry_after_secs: self.retry_after_secs() })
    }

    /// Seconds until a token naming an unknown `kid` may start the next fetch (at least 1).
    fn retry_after_secs(&self) -> u64 {
        let fetching = self.fetching();
        let wait = match fetching.last_started {
            Some(last) if !fetching.in_flight => MISS_REFETCH_INTERVAL.saturating_sub(last.elapsed()),
            _ => Duration::ZERO,
        };
        wait.as_secs_f64().ceil().max(1.0) as u64
    }

    fn fetching(&self) -> std::sync::MutexGuard<'_, Fetching> {
        self.fetching.lock().expect("jwks fetch lock")
    }

    /// Starts a fetch in the background unless one is running, or (with `spacing`) one started
    /// less than `spacing` ago. Returns whether it started one.
    fn start_fetch(self: &Arc<Self>, spacing: Option<Duration>) -> bool {
        {
            let mut fetching = self.fetching();
            let too_soon =
                spacing.zip(fetching.last_started).is_some_and(|(spacing, last)| last.elapsed() < spacing);
            if fetching.in_flight || too_soon {
                return false;
            }
            fetching.in_flight = true;
            fetching.last_started = Some(Instant::now());
        }
        let keys = self.clone();
        // Its own task: a handshake that stops waiting does not cancel the fetch.
        tokio::spawn(async move { keys.run_fetch().await });
        true
    }

    /// Fetches and, on success, puts the new set in force. The caller marked the fetch in flight.
    /// Returns the `max-age` the answer gave, `None` on failure.
    async fn run_fetch(&self) -> Option<Option<Duration>> {
        let outcome = self.fetch().await;
        let result = match outcome {
            Ok((set, max_age)) => {
                tracing::debug!(url = %self.url, keys = set.len(), "fetched a trusted issuer's keys");
                // Tokens of the keys still published stay verified: a fetch for a made-up `kid`
                // costs them nothing.
                self.verified.retain_keys(&set);
                let mut keys = self.keys.write().expect("jwks lock");
                *keys = Arc::new(set.after(&keys));
                self.stale.store(false, Ordering::Relaxed);
                self.fetched.inc();
                Some(max_age)
            }
            Err(err) => {
                let kept = self.keys().len();
                tracing::warn!(url = %self.url, error = %format!("{err:#}"), kept,
                    "fetching a trusted issuer's keys failed; the keys fetched before stay in use");
                self.stale.store(true, Ordering::Relaxed);
                self.failed.inc();
                None
            }
        };
        self.fetching().in_flight = false;
        self.finished.send_modify(|generation| *generation += 1);
        result
    }

    async fn fetch(&self) -> anyhow::Result<(KeySet, Option<Duration>)> {
        let mut response = self.client.get(&self.url).header("accept", "application/json").send().await?;
        anyhow::ensure!(response.status().is_success(), "answered {}", response.status());
        let max_age = max_age(response.headers());
        let too_big = || anyhow::anyhow!("larger than {MAX_JWKS_BYTES} bytes");
        if response.content_length().is_some_and(|length| length > MAX_JWKS_BYTES as u64) {
            return Err(too_big());
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await? {
            if body.len() + chunk.len() > MAX_JWKS_BYTES {
                return Err(too_big());
            }
            body.extend_from_slice(&chunk);
        }
        Ok((KeySet::parse(&body)?, max_age))
    }

    /// Fetches now, then again every `max-age` (within bounds) until shutdown; after a failure,
    /// again within seconds, backing off. A fetch already running (for an unknown `kid`) is
    /// waited for instead.
    pub(crate) fn follow(self: Arc<Self>, shutdown: CancellationToken) {
        tokio::spawn(async move {
            let mut retry = RETRY_FIRST;
            loop {
                let next = match self.fetch_now().await {
                    Some(max_age) => {
                        retry = RETRY_FIRST;
                        max_age.unwrap_or(REFRESH_DEFAULT).clamp(REFRESH_MIN, REFRESH_MAX)
                    }
                    None => {
                        let next = retry;
                        retry = (retry * 2).min(RETRY_MAX);
                        next
                    }
                };
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(next) => {}
                }
            }
        });
    }

    /// One fetch in this task, or the outcome of the one running: `Some(max-age)` on success.
    async fn fetch_now(&self) -> Option<Option<Duration>> {
        let mut finished = self.finished.subscribe();
        let running = {
            let mut fetching = self.fetching();
            let running = fetching.in_flight;
            if !running {
                fetching.in_flight = true;
                fetching.last_started = Some(Instant::now());
            }
            running
        };
        if !running {
            return self.run_fetch().await;
        }
        let _ = finished.changed().await;
        (!self.is_stale()).then_some(None)
    }
}

/// `Cache-Control: max-age=N` of an answer (`no-cache`/`no-store` count as 0).
fn max_age(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let value = headers.get(reqwest::header::CACHE_CONTROL)?.to_str().ok()?;
    value.split(',').map(str::trim).find_map(|directive| {
        let lower = directive.to_ascii_lowercase();
        if lower == "no-cache" || lower == "no-store" {
            return Some(Duration::ZERO);
        }
        let seconds = lower.strip_prefix("max-age=")?.trim_matches('"').parse::<u64>().ok()?;
        Some(Duration::from_secs(seconds))
    })
}

#[cfg(test)]
mod tests;
