//! A trusted issuer publishing RS256, ES256 and EdDSA keys as a JWKS, served by a real HTTP server
//! in the test: keys fetched and kept, a rotation picked up on the new `kid`, a withdrawn key's
//! tokens refused, made-up `kid`s costing at most one fetch per interval, the endpoint going down
//! leaving the keys in use and the issuer shown stale.

use super::{admitted_on_ws, now, refused_on_ws, ConfigFile};
use crate::helpers::{close_code, eventually, next_text, spawn, Server};
use axum::routing::get;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const ISSUER: &str = "https://id.example/";
/// wsguard refetches for an unknown `kid` at most this often.
const REFETCH_INTERVAL: Duration = Duration::from_secs(5);

/// A signing key of the issuer and its public JWK.
struct IssuerKey {
    kid: String,
    alg: Algorithm,
    encoding: EncodingKey,
    jwk: Value,
    public_pem: String,
}

fn b64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

impl IssuerKey {
    fn rsa(kid: &str) -> IssuerKey {
        use rsa::pkcs8::{EncodePrivateKey, EncodePublicKey};
        use rsa::traits::PublicKeyParts;
        let key = rsa::RsaPrivateKey::new(&mut rand::rngs::OsRng, 2048).unwrap();
        let pem = key.to_pkcs8_pem(Default::default()).unwrap();
        let (n, e) = (b64(&key.n().to_bytes_be()), b64(&key.e().to_bytes_be()));
        IssuerKey {
            kid: kid.into(),
            alg: Algorithm::RS256,
            encoding: EncodingKey::from_rsa_pem(pem.as_bytes()).unwrap(),
            // No `alg`: wsguard takes RS256 from `kty`.
            jwk: json!({"kty": "RSA", "kid": kid, "use": "sig", "n": n, "e": e}),
            public_pem: key.to_public_key().to_public_key_pem(Default::default()).unwrap(),
        }
    }

    fn es256(kid: &str) -> IssuerKey {
        use p256::elliptic_curve::sec1::ToEncodedPoint;
        use p256::pkcs8::EncodePrivateKey;
        let key = p256::SecretKey::random(&mut rand::rngs::OsRng);
        let point = key.public_key().to_encoded_point(false);
        let pem = key.to_pkcs8_pem(Default::default()).unwrap();
        IssuerKey {
            kid: kid.into(),
            alg: Algorithm::ES256,
            encoding: EncodingKey::from_ec_pem(pem.as_bytes()).unwrap(),
            jwk: json!({"kty": "EC", "crv": "P-256", "kid": kid, "alg": "ES256",
                "x": b64(point.x().unwrap()), "y": b64(point.y().unwrap())}),
            public_pem: String::new(),
        }
    }

    fn eddsa(kid: &str) -> IssuerKey {
        use ed25519_dalek::pkcs8::EncodePrivateKey;
        let key = ed25519_dalek::SigningKey::from_bytes(&rand::random::<[u8; 32]>());
        let pem = key.to_pkcs8_pem(Default::default()).unwrap();
        IssuerKey {
            kid: kid.into(),
            alg: Algorithm::EdDSA,
            encoding: EncodingKey::from_ed_pem(pem.as_bytes()).unwrap(),
            jwk: json!({"kty": "OKP", "crv": "Ed25519", "kid": kid, "x": b64(key.verifying_key().as_bytes())}),
            public_pem: String::new(),
        }
    }

    /// A token of `user` signed with this key, naming `kid`.
    fn token(&self, user: &str, kid: &str) -> String {
        let mut header = Header::new(self.alg);
        header.kid = Some(kid.into());
        let claims = json!({"iss": ISSUER, "sub": user, "iat": now(), "exp": now() + 600});
        jsonwebtoken::encode(&header, &claims, &self.encoding).unwrap()
    }

    fn signed(&self, user: &str) -> String {
        self.token(user, &self.kid)
    }
}

/// The issuer's JWKS endpoint: the keys it publishes now, and how often it was fetched.
struct JwksServer {
    url: String,
    keys: Arc<Mutex<Vec<Value>>>,
    fetches: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl JwksServer {
    async fn start(keys: &[&IssuerKey]) -> JwksServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/.well-known/jwks.json", listener.local_addr().unwrap());
        let keys = Arc::new(Mutex::new(keys.iter().map(|k| k.jwk.clone()).collect::<Vec<_>>()));
        let fetches = Arc::new(AtomicUsize::new(0));
        let task = serve(listener, keys.clone(), fetches.clone());
        JwksServer { url, keys, fetches, task }
    }

    /// Serves again, at the same address, after [`Self::stop`].
    async fn restart(&self) -> tokio::task::JoinHandle<()> {
        let addr = self.url.split('/').nth(2).unwrap();
        let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
        serve(listener, self.keys.clone(), self.fetches.clone())
    }

    fn publish(&self, key: &IssuerKey) {
        self.keys.lock().unwrap().push(key.jwk.clone());
    }

    fn withdraw(&self, kid: &str) {
        self.keys.lock().unwrap().retain(|key| key["kid"] != kid);
    }

    fn fetches(&self) -> usize {
        self.fetches.load(Ordering::SeqCst)
    }

    fn stop(&self) {
        self.task.abort();
    }
}

/// Serves `published` at `/.well-known/jwks.json`, counting the fetches.
fn serve(
    listener: tokio::net::TcpListener,
    published: Arc<Mutex<Vec<Value>>>,
    counted: Arc<AtomicUsize>,
) -> tokio::task::JoinHandle<()> {
    let app = axum::Router::new().route(
        "/.well-known/jwks.json",
        get(move || async move {
            counted.fetch_add(1, Ordering::SeqCst);
            let body = json!({"keys": published.lock().unwrap().clone()});
            // No keep-alive: once the server stops, nothing is served any more.
            ([("connection", "close"), ("cache-control", "public, max-age=600")], axum::Json(body))
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() })
}

/// What a token whose key the issuer's keys cannot vouch for yet is answered.
const KEYS_UNAVAILABLE: &str = "keys of issuer https://id.example/ unavailable, try again shortly";

/// `/ws?token=` when the issuer's keys are unavailable: the refusal's text, then 1013 (try again).
async fn unavailable_on_ws(server: &Server, token: &str) -> String {
    let mut ws = server.ws(&format!("/ws?token={token}"), &[]).await.unwrap();
    let text = next_text(&mut ws).await;
    assert_eq!(close_code(&mut ws, Duration::from_secs(5)).await, (1013, text.clone()));
    text
}

async fn server_for(jwks: &JwksServer) -> (Server, ConfigFile) {
    let config = ConfigFile::new(&format!(
        "[[trusted_issuers]]\nissuer = \"{ISSUER}\"\njwks_url = \"{}\"\n",
        jwks.url
    ));
    (spawn(&[&config.arg()]).await, config)
}

async fn get_json(server: &Server, path: &str) -> (u16, Value) {
    let response = server.http.get(server.url(path)).send().await.unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

async fn metrics(server: &Server) -> String {
    server.http.get(server.url("/metrics")).send().await.unwrap().text().await.unwrap()
}

/// Waits until `REFETCH_INTERVAL` has passed since `since`. Time must pass: the interval is what
/// holds fetches back, nothing shows it ending.
async fn past_interval(since: Instant) {
    let wait =
        (since + REFETCH_INTERVAL + Duration::from_millis(200)).saturating_duration_since(Instant::now());
    tokio::time::sleep(wait).await;
}

#[tokio::test]
async fn published_keys_verify_by_kid_and_their_own_algorithm_only() {
    let (rsa, es, ed) = (IssuerKey::rsa("rsa-1"), IssuerKey::es256("ec-1"), IssuerKey::eddsa("ed-1"));
    let jwks = JwksServer::start(&[&rsa, &es, &ed]).await;
    let (server, _config) = server_for(&jwks).await;
    for key in [&rsa, &es, &ed] {
        let claims = admitted_on_ws(&server, &key.signed("bob")).await;
        assert_eq!((claims["sub"].as_str(), claims["iss"].as_str()), (Some("bob"), Some(ISSUER)));
    }
    let bearer = format!("Bearer {}", rsa.signed("bob"));
    let mut ws = server.ws("/secured-ws", &[("authorization", &bearer)]).await.unwrap();
    assert_eq!(next_text(&mut ws).await, "Welcome bob!");

    // A key signing under another key's kid, or the RSA public key used as an HS256 secret (the
    // classic confusion): the kid's key decides, and refuses.
    assert_eq!(refused_on_ws(&server, &es.token("bob", "rsa-1")).await, "invalid signature");
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some("rsa-1".into());
    let claims = json!({"iss": ISSUER, "sub": "bob", "exp": now() + 600});
    for secret in [rsa.public_pem.as_bytes(), rsa.jwk["n"].as_str().unwrap().as_bytes()] {
        let confused = jsonwebtoken::encode(&header, &claims, &EncodingKey::from_secret(secret)).unwrap();
        assert_eq!(refused_on_ws(&server, &confused).await, "invalid signature");
    }
    // `exp` is required.
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some("rsa-1".into());
    let no_exp = jsonwebtoken::encode(&header, &json!({"iss": ISSUER, "sub": "bob"}), &rsa.encoding).unwrap();
    assert_eq!(refused_on_ws(&server, &no_exp).await, "malformed token");

    let (status, ready) = get_json(&server, "/readyz").await;
    assert_eq!(status, 200);
    assert_eq!(ready["issuers"], json!({ jwks.url.clone(): "ok" }));
}

#[tokio::test]
async fn keys_rotate_unknown_kids_cost_one_fetch_per_interval_and_a_down_endpoint_keeps_them() {
    let first = IssuerKey::rsa("key-1");
    let jwks = JwksServer::start(&[&first]).await;
    let (server, _config) = server_for(&jwks).await;
    let old = first.signed("bob");
    admitted_on_ws(&server, &old).await;
    let started = Instant::now();
    assert_eq!(jwks.fetches(), 1, "fetched at start, kept since");

    // Rotation: a new kid appears; the first token naming it refetches, and concurrent handshakes
    // with it wait for that one fetch.
    let second = IssuerKey::eddsa("key-2");
    jwks.publish(&second);
    past_interval(started).await;
    let rotated_at = Instant::now();
    let handshakes = (0..8).map(|_| {
        let (server, token) = (&server, second.signed("bob"));
        async move { admitted_on_ws(server, &token).await }
    });
    futures_util::future::join_all(handshakes).await;
    assert_eq!(jwks.fetches(), 2, "one fetch for the new kid");

    // Made-up kids: refused at once, no fetch within the interval, at most one per interval.
    // Until a fetch made for it says a kid is not there, it may be a rotation not fetched yet:
    // unavailable (1013, retry), not a forged signature.
    let spam_started = Instant::now();
    for i in 0..30 {
        let asked = Instant::now();
        assert_eq!(
            unavailable_on_ws(&server, &first.token("bob", &format!("made-up-{i}"))).await,
            KEYS_UNAVAILABLE
        );
        assert!(asked.elapsed() < Duration::from_secs(1), "a refused kid waited {:?}", asked.elapsed());
    }
    assert!(spam_started.elapsed() < REFETCH_INTERVAL);
    assert_eq!(jwks.fetches(), 2, "no fetch within the interval");
    // The issuer withdraws the first key: once the set is fetched again, its tokens are refused,
    // even those verified before.
    jwks.withdraw("key-1");
    past_interval(rotated_at).await;
    let fetched_for = first.token("bob", "later-0");
    assert_eq!(refused_on_ws(&server, &fetched_for).await, "invalid signature", "fetched: no such key");
    for i in 1..10 {
        unavailable_on_ws(&server, &first.token("bob", &format!("later-{i}"))).await;
    }
    assert_eq!(jwks.fetches(), 3, "one fetch for the next interval's made-up kids");
    // The fetch showed the key withdrawn: refused at once, no further fetch needed.
    assert_eq!(refused_on_ws(&server, &old).await, "invalid signature", "a withdrawn key");
    let after_spam = Instant::now();

    // The endpoint goes down: the next fetch fails, the keys fetched before stay in use, and a
    // new kid is unavailable, not forged.
    jwks.stop();
    past_interval(after_spam).await;
    let asked = Instant::now();
    assert_eq!(unavailable_on_ws(&server, &first.token("bob", "key-3")).await, KEYS_UNAVAILABLE);
    assert!(asked.elapsed() < Duration::from_secs(4), "waited {:?}", asked.elapsed());
    admitted_on_ws(&server, &second.signed("bob")).await;
    let (status, ready) = get_json(&server, "/readyz").await;
    assert_eq!(status, 200, "stale keys do not make the node unready: {ready}");
    assert_eq!(ready["issuers"], json!({ jwks.url.clone(): "stale" }));
    let text = metrics(&server).await;
    let labels = format!("issuer=\"{ISSUER}\",jwks_url=\"{}\"", jwks.url);
    assert!(text.contains(&format!("wsguard_issuer_keys_stale{{{labels}}} 1")), "{text}");
    assert!(
        text.contains(&format!("wsguard_issuer_key_fetches_total{{{labels},result=\"ok\"}} 3")),
        "{text}"
    );
    assert!(
        text.contains(&format!("wsguard_issuer_key_fetches_total{{{labels},result=\"failed\"}} 1")),
        "{text}"
    );
    assert!(server.log().contains("fetching a trusted issuer's keys failed"));
}

#[tokio::test]
async fn a_down_endpoint_at_start_neither_stops_nor_holds_up_the_server_and_is_retried_within_seconds() {
    let key = IssuerKey::es256("key-1");
    let jwks = JwksServer::start(&[&key]).await;
    jwks.stop();
    let addr = jwks.url.split('/').nth(2).unwrap();
    eventually("the JWKS endpoint down", Duration::from_secs(5), async || {
        match tokio::net::TcpStream::connect(addr).await {
            Err(err) if err.kind() == std::io::ErrorKind::ConnectionRefused => Ok(()),
            other => Err(other.map(|_| "still accepting")),
        }
    })
    .await;
    let started = Instant::now();
    let (server, _config) = server_for(&jwks).await;
    assert!(started.elapsed() < Duration::from_secs(10));
    // The keys are not known yet: a valid token is neither admitted nor called forged.
    let token = key.signed("bob");
    assert_eq!(unavailable_on_ws(&server, &token).await, KEYS_UNAVAILABLE);
    let response = server.me(&token).await;
    assert_eq!(response.status(), 503);
    let retry_after: u64 = response.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=5).contains(&retry_after), "{retry_after}");
    assert_eq!(response.json::<Value>().await.unwrap()["detail"], KEYS_UNAVAILABLE);
    let bearer = format!("Bearer {token}");
    assert_eq!(server.ws_refused("/secured-ws", &[("authorization", &bearer)]).await, 503);
    let text = metrics(&server).await;
    assert!(text.contains("wsguard_token_rejections_total{reason=\"keys_unavailable\"} 3"), "{text}");
    assert!(!text.contains("reason=\"bad_signature\""), "not counted as forged: {text}");
    let (status, ready) = get_json(&server, "/readyz").await;
    assert_eq!((status, &ready["issuers"]), (200, &json!({ jwks.url.clone(): "stale" })));
    // Own tokens are not affected.
    let own = server.login("johndoe", "secret").await;
    assert_eq!(admitted_on_ws(&server, &own.access).await["sub"], "johndoe");

    // The endpoint comes back: fetched again within seconds (backing off from one), with no
    // token asking for it.
    let _back = jwks.restart().await;
    eventually("the keys fetched again", Duration::from_secs(20), async || {
        let (_, ready) = get_json(&server, "/readyz").await;
        if ready["issuers"][&jwks.url] == "ok" {
            Ok(())
        } else {
            Err(ready)
        }
    })
    .await;
    assert_eq!(admitted_on_ws(&server, &token).await["sub"], "bob");
}
