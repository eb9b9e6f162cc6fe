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
mod tests {
    use super::*;
    use reqwest::header::{HeaderMap, HeaderValue, CACHE_CONTROL};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// An HTTP server answering every request with `response` (`None`: never answering).
    async fn answering(response: Option<Vec<u8>>) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/jwks.json", listener.local_addr().unwrap());
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let response = response.clone();
                tokio::spawn(async move {
                    let mut request = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                        match stream.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => request.extend_from_slice(&buf[..n]),
                        }
                    }
                    match response {
                        Some(response) => drop(stream.write_all(&response).await),
                        None => tokio::time::sleep(Duration::from_secs(60)).await,
                    }
                });
            }
        });
        url
    }

    fn ok(headers: &str, body: &[u8]) -> Option<Vec<u8>> {
        let head = format!(
            "HTTP/1.1 200 OK\r\n{headers}Content-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        Some([head.as_bytes(), body].concat())
    }

    fn jwks_body(padding: usize) -> Vec<u8> {
        let n = base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, [0xc5u8; 256]);
        let key =
            serde_json::json!({"kty": "RSA", "kid": "k1", "n": n, "e": "AQAB", "pad": "x".repeat(padding)});
        serde_json::json!({"keys": [key]}).to_string().into_bytes()
    }

    async fn fetch(url: &str) -> anyhow::Result<(KeySet, Option<Duration>)> {
        JwksKeys::new(url).unwrap().fetch().await
    }

    #[tokio::test]
    async fn a_fetch_reads_the_keys_and_their_max_age() {
        let url = answering(ok("Cache-Control: max-age=120\r\n", &jwks_body(0))).await;
        let (set, max_age) = fetch(&url).await.unwrap();
        assert_eq!((set.len(), max_age), (1, Some(Duration::from_secs(120))));
        // Just under the limit is fine.
        let body = jwks_body(0);
        let url = answering(ok("", &jwks_body(MAX_JWKS_BYTES - body.len() - 1))).await;
        assert!(fetch(&url).await.is_ok());
    }

    #[tokio::test]
    async fn answers_over_the_size_limit_redirects_and_errors_fail() {
        let big = jwks_body(MAX_JWKS_BYTES);
        let declared = answering(ok("", &big)).await;
        let err = fetch(&declared).await.err().expect("too big");
        assert!(format!("{err:#}").contains("larger than 262144 bytes"), "{err:#}");
        // Without a length: chunked, counted as it comes.
        let chunked = [
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n".to_vec(),
            format!("{:x}\r\n", big.len()).into_bytes(),
            big.clone(),
            b"\r\n0\r\n\r\n".to_vec(),
        ]
        .concat();
        let err = fetch(&answering(Some(chunked)).await).await.err().expect("too big");
        assert!(format!("{err:#}").contains("larger than"), "{err:#}");
        let good = answering(ok("", &jwks_body(0))).await;
        let redirect = format!("HTTP/1.1 302 Found\r\nLocation: {good}\r\nContent-Length: 0\r\n\r\n");
        let err = fetch(&answering(Some(redirect.into_bytes())).await).await.err().expect("not followed");
        assert!(format!("{err:#}").contains("302"), "{err:#}");
        let missing = b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n".to_vec();
        assert!(fetch(&answering(Some(missing)).await).await.is_err());
        assert!(fetch(&answering(ok("", b"<html>")).await).await.is_err());
    }

    #[tokio::test]
    async fn a_silent_endpoint_fails_within_the_timeout() {
        let url = answering(None).await;
        let started = std::time::Instant::now();
        assert!(fetch(&url).await.is_err());
        let took = started.elapsed();
        assert!(
            took >= FETCH_TIMEOUT - Duration::from_millis(100)
                && took < FETCH_TIMEOUT + Duration::from_secs(2),
            "{took:?}"
        );
    }

    #[tokio::test]
    async fn a_failed_fetch_keeps_the_keys_and_marks_them_stale() {
        let url = answering(ok("", &jwks_body(0))).await;
        let keys = Arc::new(JwksKeys::new(&url).unwrap());
        assert!(keys.is_stale(), "nothing fetched yet");
        assert!(keys.find(Some("k1")).await.is_ok(), "an unknown kid fetches");
        assert!(!keys.is_stale());
        // The same keys, now from an endpoint that fails.
        let broken = JwksKeys { url: answering(ok("", b"{}")).await, ..JwksKeys::new(&url).unwrap() };
        let broken = Arc::new(broken);
        *broken.keys.write().unwrap() = keys.keys();
        assert_eq!(broken.fetch_now().await, None);
        assert!(broken.is_stale());
        assert!(broken.find(Some("k1")).await.is_ok(), "kept in use");
        assert_eq!((broken.fetched.get(), broken.failed.get()), (0, 1));
    }

    #[tokio::test]
    async fn a_fetch_for_a_made_up_kid_keeps_the_tokens_verified_with_unchanged_keys() {
        let keys = Arc::new(JwksKeys::new(&answering(ok("", &jwks_body(0))).await).unwrap());
        let key = keys.find(Some("k1")).await.ok().unwrap();
        let claims = crate::auth::tokens::Claims::test("bob", 0);
        keys.verified.insert("a.b.c", &claims, key.fingerprint);
        keys.verified.insert("d.e.f", &claims, [0; 32]);
        keys.fetching().last_started = None; // as if the interval had passed
        assert_eq!(keys.find(Some("made-up")).await.err(), Some(Miss::Unknown));
        assert_eq!(keys.fetched.get(), 2, "the made-up kid fetched the set again");
        assert!(keys.verified.get("a.b.c", 0).is_some(), "verified with a key still published");
        assert!(keys.verified.get("d.e.f", 0).is_none(), "verified with a key no longer published");
    }

    #[tokio::test]
    async fn a_kid_is_unknown_only_once_a_fetch_made_for_it_succeeded_without_it() {
        let keys = Arc::new(JwksKeys::new(&answering(ok("", &jwks_body(0))).await).unwrap());
        assert_eq!(keys.find(Some("made-up")).await.err(), Some(Miss::Unknown), "fetched: not there");
        // Within the interval no fetch can tell: unavailable, retry when one may run.
        match keys.find(Some("made-up-2")).await {
            Err(Miss::Unavailable { retry_after_secs }) => {
                assert!((1..=MISS_REFETCH_INTERVAL.as_secs()).contains(&retry_after_secs))
            }
            other => panic!("{:?}", other.map(|_| ())),
        }
        // An endpoint that fails: unavailable, never a forged-looking refusal.
        let down = Arc::new(JwksKeys::new(&answering(ok("", b"{}")).await).unwrap());
        assert!(matches!(down.find(Some("k1")).await, Err(Miss::Unavailable { .. })));
        let silent = Arc::new(JwksKeys::new(&answering(None).await).unwrap());
        let asked = std::time::Instant::now();
        assert!(matches!(silent.find(Some("k1")).await, Err(Miss::Unavailable { retry_after_secs: 1 })));
        assert!(asked.elapsed() < MISS_WAIT + Duration::from_millis(500), "waited {:?}", asked.elapsed());
    }

    #[test]
    fn max_age_is_read_from_cache_control() {
        let age = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(CACHE_CONTROL, HeaderValue::from_str(value).unwrap());
            max_age(&headers)
        };
        assert_eq!(age("public, max-age=600"), Some(Duration::from_secs(600)));
        assert_eq!(age("Max-Age=\"30\", must-revalidate"), Some(Duration::from_secs(30)));
        assert_eq!(age("no-store"), Some(Duration::ZERO));
        assert_eq!(age("public"), None);
        assert_eq!(age("max-age=soon"), None);
        assert_eq!(max_age(&HeaderMap::new()), None);
    }
}
