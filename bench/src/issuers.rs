//! Workload `issuer-handshake`: authenticated handshakes on `/secured-ws` (as `handshake`) with
//! three tokens in the same run: wsguard's own, a trusted issuer's HS256 token, and a JWKS
//! issuer's RS256 token (its keys cached by then). The three take turns of `--duration` seconds,
//! `--rounds` times, each round starting with the next one, so that drift in the machine's load
//! falls on all of them alike; each figure sums its turns.
//!
//! The server must trust both issuers, as `scripts/bench.sh` configures it:
//!
//! ```toml
//! [[trusted_issuers]]
//! issuer = "https://bench-hs256.example/"   # --hs256-issuer
//! secret_file = "…"                         # --hs256-secret-file
//! [[trusted_issuers]]
//! issuer = "https://bench-rs256.example/"   # --rs256-issuer
//! jwks_url = "http://127.0.0.1:8400/jwks.json"   # served here, on --jwks-addr
//! ```
//!
//! This generator makes a fresh 2048-bit RSA key, serves its JWKS on `--jwks-addr` for the whole
//! run, and measures only once the server admits an RS256 token (it fetches the keys on the first
//! unknown `kid`).
//!
//! The turns present one token again and again, as a client reconnecting does: wsguard checks an
//! RS256 signature once per token and remembers it (`auth/issuers/verified.rs`), as it caches a
//! login's state for its own tokens. Last, `--distinct` RS256 tokens, each presented once, measure
//! the first presentation, signature check included (`rs256_first_use_*`).

use crate::common::{round1, Target};
use crate::handshake::{cycles, Cycles, HandshakeProtocol, Tokens};
use anyhow::{bail, Context};
use base64::Engine;
use clap::Args;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

#[derive(Args, Debug)]
pub struct IssuersArgs {
    #[command(flatten)]
    pub target: Target,
    /// WebSocket path
    #[arg(long, default_value = "/secured-ws")]
    pub path: String,
    /// Concurrent connecting loops
    #[arg(long, default_value_t = 20)]
    pub workers: usize,
    /// Seconds of each turn
    #[arg(long, default_value_t = 5.0)]
    pub duration: f64,
    /// Turns of each token
    #[arg(long, default_value_t = 2)]
    pub rounds: usize,
    /// The HS256 issuer's `iss`
    #[arg(long, default_value = "https://bench-hs256.example/")]
    pub hs256_issuer: String,
    /// The HS256 issuer's secret, the file the server's `secret_file` names
    #[arg(long)]
    pub hs256_secret_file: PathBuf,
    /// The RS256 issuer's `iss`
    #[arg(long, default_value = "https://bench-rs256.example/")]
    pub rs256_issuer: String,
    /// RS256 tokens presented once each, last (signed beforehand); 0 skips that measurement
    #[arg(long, default_value_t = 2000)]
    pub distinct: usize,
    /// Where to serve the RS256 issuer's JWKS (any path answers it)
    #[arg(long, default_value = "127.0.0.1:8400")]
    pub jwks_addr: SocketAddr,
}

fn now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

fn claims(iss: &str, user: &str) -> Value {
    json!({"iss": iss, "sub": user, "iat": now(), "exp": now() + 3600})
}

pub async fn run(args: IssuersArgs) -> anyhow::Result<Value> {
    let own = args.target.token().await?.context("the issuer workload needs wsguard's own token")?;
    let secret = std::fs::read(&args.hs256_secret_file)
        .with_context(|| format!("reading {}", args.hs256_secret_file.display()))?;
    let hs256 = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims(&args.hs256_issuer, &args.target.username),
        &EncodingKey::from_secret(secret.trim_ascii()),
    )?;
    // A kid of its own: a server still holding an earlier run's key under the same kid would not
    // fetch this one.
    let kid = format!("bench-rs256-{:08x}", rand::random::<u32>());
    let (rs256_key, jwks) = rsa_key(&kid)?;
    let listener =
        TcpListener::bind(args.jwks_addr).await.with_context(|| format!("binding {}", args.jwks_addr))?;
    tokio::spawn(serve_jwks(listener, Arc::new(jwks.to_string())));
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some(kid);
    let rs256 =
        jsonwebtoken::encode(&header, &claims(&args.rs256_issuer, &args.target.username), &rs256_key)?;

    let target = &args.target;
    target
        .ws_welcomed(&args.path, Some(&hs256))
        .await
        .context("the server refuses the HS256 issuer's token")?;
    admitted_within(target, &args.path, &rs256, Duration::from_secs(20)).await?;

    // Signed now, before any measurement: the generator's RSA signing would weigh on the server's.
    let user = args.target.username.clone();
    let rs256_claims = claims(&args.rs256_issuer, &user);
    let (distinct_key, distinct_header, count) = (rs256_key.clone(), header.clone(), args.distinct);
    let distinct = tokio::task::spawn_blocking(move || {
        (0..count)
            .map(|i| {
                let mut claims = rs256_claims.clone();
                claims["jti"] = json!(format!("distinct-{i}"));
                jsonwebtoken::encode(&distinct_header, &claims, &distinct_key)
            })
            .collect::<Result<Vec<_>, _>>()
    })
    .await??;

    let tokens = [("own", own), ("hs256", hs256), ("rs256", rs256)];
    let same: Vec<Arc<Tokens>> = tokens.iter().map(|(_, t)| Arc::new(Tokens::Same(t.clone()))).collect();
    let mut totals: Vec<Cycles> = tokens.iter().map(|_| Cycles::default()).collect();
    for round in 0..args.rounds.max(1) {
        // Each round starts with another token: none always follows the same one.
        for turn in 0..tokens.len() {
            let which = (round + turn) % tokens.len();
            let turn = cycles(
                target,
                &args.path,
                HandshakeProtocol::Bearer,
                same[which].clone(),
                args.workers,
                args.duration,
            )
            .await?;
            totals[which].add(&turn);
            tokio::time::sleep(Duration::from_millis(500)).await; // closed sockets go
        }
    }
    // The first presentations, then the own token again for as long: the ratio compares the two
    // under the same conditions. Thousands of handshakes leave the machine slower at opening
    // connections (the closed ones linger in TIME_WAIT), so a rate from the earlier turns would
    // flatter whichever runs first.
    let first_use = match distinct.is_empty() {
        true => None,
        false => {
            let first = cycles(
                target,
                &args.path,
                HandshakeProtocol::Bearer,
                Arc::new(Tokens::EachOnce(distinct)),
                args.workers,
                600.0,
            )
            .await?;
            tokio::time::sleep(Duration::from_millis(500)).await;
            let own_after = cycles(
                target,
                &args.path,
                HandshakeProtocol::Bearer,
                same[0].clone(),
                args.workers,
                first.seconds,
            )
            .await?;
            Some((first, own_after))
        }
    };
    let own_rate = totals[0].per_second();
    if own_rate == 0.0 {
        bail!("no handshake with wsguard's own token succeeded");
    }
    let mut line = json!({"workers": args.workers, "rounds": args.rounds, "turn_s": args.duration});
    for ((name, _), total) in tokens.iter().zip(&totals) {
        line[format!("{name}_handshakes_per_s")] = json!(round1(total.per_second()));
        line[format!("{name}_p50_ms")] = total.latency.p50_ms();
        line[format!("{name}_p99_ms")] = total.latency.p99_ms();
        line[format!("{name}_errors")] = json!(total.errors);
        if *name != "own" {
            line[format!("{name}_over_own")] = json!((total.per_second() / own_rate * 100.0).round() / 100.0);
        }
    }
    if let Some((first, own_after)) = first_use {
        line["rs256_first_use_handshakes"] = json!(first.handshakes);
        line["rs256_first_use_handshakes_per_s"] = json!(round1(first.per_second()));
        line["rs256_first_use_p99_ms"] = first.latency.p99_ms();
        line["own_after_first_use_handshakes_per_s"] = json!(round1(own_after.per_second()));
        let adjacent = own_after.per_second();
        line["rs256_first_use_over_own"] = json!((first.per_second() / adjacent * 100.0).round() / 100.0);
    }
    Ok(line)
}

/// Tries `token` until the server admits it (it fetches the JWKS on the first unknown `kid`).
async fn admitted_within(target: &Target, path: &str, token: &str, within: Duration) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match target.ws_welcomed(path, Some(token)).await {
            Ok(_) => return Ok(()),
            Err(err) if tokio::time::Instant::now() >= deadline => {
                return Err(err.context("the server does not admit the RS256 issuer's token (jwks_url?)"))
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    }
}

/// A fresh RSA key and the JWK Set publishing its public half.
fn rsa_key(kid: &str) -> anyhow::Result<(EncodingKey, Value)> {
    use rsa::pkcs8::EncodePrivateKey;
    use rsa::traits::PublicKeyParts;
    let key = rsa::RsaPrivateKey::new(&mut rand::rngs::OsRng, 2048)?;
    let pem = key.to_pkcs8_pem(Default::default())?;
    let b64 = |bytes: Vec<u8>| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    let jwk = json!({"kty": "RSA", "kid": kid, "alg": "RS256", "use": "sig",
        "n": b64(key.n().to_bytes_be()), "e": b64(key.e().to_bytes_be())});
    Ok((EncodingKey::from_rsa_pem(pem.as_bytes())?, json!({ "keys": [jwk] })))
}

/// Answers every request on `listener` with `body` (one request per connection).
async fn serve_jwks(listener: TcpListener, body: Arc<String>) {
    while let Ok((mut stream, _)) = listener.accept().await {
        let body = body.clone();
        tokio::spawn(async move {
            let mut request = Vec::new();
            let mut buf = [0u8; 1024];
            while !request.windows(4).any(|w| w == b"\r\n\r\n") && request.len() < 16 * 1024 {
                match stream.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => request.extend_from_slice(&buf[..n]),
                }
            }
            let response = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nCache-Control: max-age=300\r\n\
                 Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.write_all(response.as_bytes()).await;
        });
    }
}
