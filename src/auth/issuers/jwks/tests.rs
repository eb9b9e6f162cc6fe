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
    let head =
        format!("HTTP/1.1 200 OK\r\n{headers}Content-Length: {}\r\nConnection: close\r\n\r\n", body.len());
    Some([head.as_bytes(), body].concat())
}

fn jwks_body(padding: usize) -> Vec<u8> {
    let n = base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, [0xc5u8; 256]);
    let key = serde_json::json!({"kty": "RSA", "kid": "k1", "n": n, "e": "AQAB", "pad": "x".repeat(padding)});
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
        took >= FETCH_TIMEOUT - Duration::from_millis(100) && took < FETCH_TIMEOUT + Duration::from_secs(2),
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
