//! The application's proxies, what they cost: subscribes decided by the subscribe proxy beside
//! subscribes under a static rule, and `/connect` handshakes admitted by the connect proxy (a
//! session cookie) beside handshakes with a token. The application is served by this generator
//! on `--app-addr` (hyper, keep-alive, an answer without work), on the same machine: what is
//! measured is wsguard's side of a call, as fast as an application can make it.
//!
//! The server must be configured as `scripts/bench.sh` configures it:
//!
//! ```toml
//! [proxy]
//! connect = "http://127.0.0.1:8450/rt/connect"
//! forward_headers = ["Cookie"]
//!
//! [[namespaces]]
//! name = "bench-proxied"            # and bench-live: subscribe = "any", history_size = 0
//! subscribe = "proxy"
//! subscribe_proxy = "http://127.0.0.1:8450/rt/subscribe"
//! history_size = 0
//! ```
//!
//! Each case runs `--duration` seconds, the two of a kind alternating twice.

use crate::common::{next_text, round1, secs, Latency, Target, Ws};
use anyhow::{bail, Context};
use bytes::Bytes;
use clap::Args;
use futures_util::{SinkExt, StreamExt};
use http_body_util::Full;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Barrier;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Message;

#[derive(Args, Debug)]
pub struct ProxyArgs {
    #[command(flatten)]
    pub target: Target,
    /// Where to serve the application's proxy endpoints
    #[arg(long, default_value = "127.0.0.1:8450")]
    pub app_addr: SocketAddr,
    /// Concurrent loops
    #[arg(long, default_value_t = 20)]
    pub workers: usize,
    /// Seconds of each case (each runs twice, alternating)
    #[arg(long, default_value_t = 5.0)]
    pub duration: f64,
}

/// How many calls the application answered, by endpoint.
#[derive(Default)]
struct Calls {
    connect: AtomicU64,
    subscribe: AtomicU64,
}

pub async fn run(args: ProxyArgs) -> anyhow::Result<Value> {
    let listener =
        TcpListener::bind(args.app_addr).await.with_context(|| format!("binding {}", args.app_addr))?;
    let calls = Arc::new(Calls::default());
    tokio::spawn(serve_application(listener, calls.clone()));
    let token = args.target.token().await?.context("the proxy workload logs in")?;

    let (mut open, mut proxied) = (Loops::default(), Loops::default());
    let (mut with_token, mut with_cookie) = (Loops::default(), Loops::default());
    for _ in 0..2 {
        open.add(subscribes(&args, &token, "bench-live").await?);
        proxied.add(subscribes(&args, &token, "bench-proxied").await?);
        with_token.add(handshakes(&args, Credential::Token(&token)).await?);
        with_cookie.add(handshakes(&args, Credential::Cookie).await?);
    }
    for (name, loops) in
        [("static", &open), ("proxy", &proxied), ("token", &with_token), ("cookie", &with_cookie)]
    {
        if loops.done == 0 {
            bail!("no {name} cycle succeeded ({} errors)", loops.errors);
        }
    }
    let subscribe_calls = calls.subscribe.load(Ordering::Relaxed);
    if subscribe_calls < proxied.done {
        bail!("{} proxied subscribes, but the application was asked {subscribe_calls} times", proxied.done);
    }
    Ok(json!({
        "workers": args.workers,
        "duration_s": round1(open.seconds + proxied.seconds + with_token.seconds + with_cookie.seconds),
        "subscribes_per_s_static": round1(open.per_second()),
        "subscribes_per_s_proxy": round1(proxied.per_second()),
        "subscribe_p50_ms_static": open.latency.p50_ms(),
        "subscribe_p99_ms_static": open.latency.p99_ms(),
        "subscribe_p50_ms_proxy": proxied.latency.p50_ms(),
        "subscribe_p99_ms_proxy": proxied.latency.p99_ms(),
        "connects_per_s_token": round1(with_token.per_second()),
        "connects_per_s_proxy": round1(with_cookie.per_second()),
        "connect_p50_ms_token": with_token.latency.p50_ms(),
        "connect_p99_ms_token": with_token.latency.p99_ms(),
        "connect_p50_ms_proxy": with_cookie.latency.p50_ms(),
        "connect_p99_ms_proxy": with_cookie.latency.p99_ms(),
        "application_calls": subscribe_calls + calls.connect.load(Ordering::Relaxed),
        "errors": open.errors + proxied.errors + with_token.errors + with_cookie.errors,
    }))
}

/// What some seconds of cycles gave.
#[derive(Default)]
struct Loops {
    done: u64,
    errors: u64,
    latency: Latency,
    seconds: f64,
}

impl Loops {
    fn add(&mut self, other: Loops) {
        self.done += other.done;
        self.errors += other.errors;
        self.latency.merge(&other.latency);
        self.seconds += other.seconds;
    }

    fn per_second(&self) -> f64 {
        if self.seconds > 0.0 {
            self.done as f64 / self.seconds
        } else {
            0.0
        }
    }
}

/// Runs `cycle` in `workers` loops for `duration` seconds, each loop with state of its own.
async fn looped<S, F>(args: &ProxyArgs, states: Vec<S>, cycle: F) -> anyhow::Result<Loops>
where
    S: Send + 'static,
    F: Fn(&mut S) -> futures_util::future::BoxFuture<'_, anyhow::Result<()>> + Send + Sync + Copy + 'static,
{
    let gate = Arc::new(Barrier::new(states.len() + 1));
    let duration = secs(args.duration);
    let tasks: Vec<_> = states
        .into_iter()
        .map(|mut state| {
            let gate = gate.clone();
            tokio::spawn(async move {
                gate.wait().await;
                let deadline = Instant::now() + duration;
                let mut loops = Loops::default();
                while Instant::now() < deadline {
                    let started = Instant::now();
                    match cycle(&mut state).await {
                        Ok(()) => {
                            loops.latency.record(started.elapsed());
                            loops.done += 1;
                        }
                        Err(_) => {
                            loops.errors += 1;
                            tokio::time::sleep(Duration::from_millis(10)).await;
                        }
                    }
                }
                loops
            })
        })
        .collect();
    gate.wait().await;
    let started = Instant::now();
    let mut total = Loops::default();
    for task in tasks {
        total.add(task.await?);
    }
    total.seconds = started.elapsed().as_secs_f64();
    Ok(total)
}

/// Each loop on a `/connect` socket of its own: subscribe to `<namespace>:w<i>` (timed to its
/// `subscribed`), then unsubscribe, again and again.
async fn subscribes(args: &ProxyArgs, token: &str, namespace: &str) -> anyhow::Result<Loops> {
    let mut states = Vec::with_capacity(args.workers);
    for i in 0..args.workers {
        let ws = args.target.ws_welcomed("/connect", Some(token)).await?;
        let subscribe = json!({"type": "subscribe", "channel": format!("{namespace}:w{i}")}).to_string();
        let unsubscribe = json!({"type": "unsubscribe", "channel": format!("{namespace}:w{i}")}).to_string();
        states.push((ws, subscribe, unsubscribe));
    }
    looped(args, states, |(ws, subscribe, unsubscribe): &mut (Ws, String, String)| {
        Box::pin(async move {
            ws.send(Message::Text(subscribe.clone().into())).await?;
            let answer = next_text(ws, Duration::from_secs(10)).await?;
            if !answer.contains("\"subscribed\"") {
                bail!("refused: {answer}");
            }
            ws.send(Message::Text(unsubscribe.clone().into())).await?;
            Ok(())
        })
    })
    .await
}

#[derive(Clone, Copy)]
enum Credential<'a> {
    Token(&'a str),
    /// No token: a session cookie, for the connect proxy.
    Cookie,
}

/// Each loop opens `/connect` (its welcome timed), then closes it.
async fn handshakes(args: &ProxyArgs, credential: Credential<'_>) -> anyhow::Result<Loops> {
    let mut request = format!("ws://{}/connect", args.target.addr).into_client_request()?;
    match credential {
        Credential::Token(token) => {
            request.headers_mut().insert("authorization", HeaderValue::from_str(&format!("Bearer {token}"))?);
        }
        Credential::Cookie => {
            request.headers_mut().insert("cookie", HeaderValue::from_static("session=bench"));
        }
    }
    let states = vec![request; args.workers];
    looped(args, states, |request: &mut tokio_tungstenite::tungstenite::handshake::client::Request| {
        Box::pin(async move {
            let (mut ws, _) =
                tokio_tungstenite::connect_async_with_config(request.clone(), None, true).await?;
            let welcome = next_text(&mut ws, Duration::from_secs(10)).await?;
            if !welcome.contains("\"welcome\"") {
                bail!("not admitted: {welcome}");
            }
            let _ = ws.close(None).await;
            let drain = async { while ws.next().await.is_some_and(|r| r.is_ok()) {} };
            let _ = tokio::time::timeout(Duration::from_secs(2), drain).await;
            Ok(())
        })
    })
    .await
}

/// The application: admits every session cookie as johndoe, allows every subscribe.
async fn serve_application(listener: TcpListener, calls: Arc<Calls>) {
    while let Ok((stream, _)) = listener.accept().await {
        let calls = calls.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request: Request<hyper::body::Incoming>| {
                let calls = calls.clone();
                async move {
                    let path = request.uri().path().to_owned();
                    // The body is read and dropped: an application reads what it is sent.
                    let _ = http_body_util::BodyExt::collect(request.into_body()).await;
                    let body = if path.ends_with("/connect") {
                        calls.connect.fetch_add(1, Ordering::Relaxed);
                        r#"{"result":{"user":"johndoe"}}"#
                    } else {
                        calls.subscribe.fetch_add(1, Ordering::Relaxed);
                        r#"{"result":{}}"#
                    };
                    Response::builder()
                        .header("content-type", "application/json")
                        .body(Full::new(Bytes::from_static(body.as_bytes())))
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
