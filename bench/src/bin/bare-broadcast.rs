//! bare-broadcast: the fan-out ceiling, as strong as we know how to make it. A WebSocket server on
//! tokio-tungstenite (the version axum uses), no authentication, no store, no limits: the URL path
//! names a channel, and every text frame a socket sends goes to every socket on that channel, the
//! sender included. Once a socket follows its channel it is sent
//! `{"type":"subscribed","channel":"<path>"}`, so a client knows when broadcasts reach it.
//!
//! Publications also arrive over HTTP/1.1 (keep-alive, hyper): `POST /publish/<channel>` with the
//! frame's text as the body is answered `200 {"delivered":N}` once the frame is queued for the
//! channel's N sockets. Both are served on the one port: a connection whose first bytes are
//! `POST ` is HTTP, any other a WebSocket handshake.
//!
//! The fan-out path:
//! - one frame per publication, shared: the received text (or the HTTP body) is reference-counted
//!   bytes, each socket's queue gets a clone of the handle, never of the bytes;
//! - a channel's subscribers are a list only joins and leaves write; a publisher reads it (an
//!   uncontended read lock: each socket publishes to its own channel, found when it joined) and
//!   pushes into each subscriber's own bounded queue (lock-free `tokio::sync::mpsc`, its blocks
//!   reused): no lock shared by the sockets being delivered to;
//! - each socket's task takes everything queued at once (`recv_many` into a buffer it keeps),
//!   feeds it to tungstenite's write buffer and flushes once: one write syscall for a burst;
//! - `TCP_NODELAY`.

mod ceiling;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::handshake::server::{Request as WsRequest, Response as WsResponse};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

/// Frames a socket may have queued before it misses some (it is then told nothing: the
/// generator counts what is lost).
const BACKLOG: usize = 1024;

/// The most queued frames written before one flush.
const BATCH: usize = 256;

/// Bytes of frames collected in tungstenite's write buffer before it writes on its own; a batch
/// usually stays below it and goes out in the one write of its flush.
const WRITE_BUFFER: usize = 64 * 1024;

/// bare-echo's settings (4 KiB read buffer, the same message limits), except that frames fed
/// together are written together.
fn config() -> WebSocketConfig {
    ceiling::config()
        .write_buffer_size(WRITE_BUFFER)
        .max_write_buffer_size(WRITE_BUFFER + ceiling::MAX_MESSAGE * 4)
}

struct Subscriber {
    id: u64,
    queue: mpsc::Sender<Utf8Bytes>,
}

/// One channel's sockets.
#[derive(Default)]
struct Channel {
    subscribers: RwLock<Vec<Subscriber>>,
}

impl Channel {
    /// Queues `frame` for every socket of the channel; returns how many took it.
    fn publish(&self, frame: &Utf8Bytes) -> usize {
        let subscribers = self.subscribers.read().unwrap_or_else(|e| e.into_inner());
        subscribers.iter().filter(|s| s.queue.try_send(frame.clone()).is_ok()).count()
    }
}

/// Every channel with sockets, by name; a channel goes when its last socket does.
#[derive(Default)]
struct Channels {
    by_name: RwLock<HashMap<Box<str>, Arc<Channel>>>,
    next_id: AtomicU64,
}

impl Channels {
    fn join(&self, name: &str) -> (Arc<Channel>, u64, mpsc::Receiver<Utf8Bytes>) {
        let (queue, receiver) = mpsc::channel(BACKLOG);
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        // Joins and leaves hold the map's write lock, so a channel found empty and removed cannot
        // gain a subscriber meanwhile.
        let mut by_name = self.by_name.write().unwrap_or_else(|e| e.into_inner());
        let channel = by_name.entry(name.into()).or_default().clone();
        channel.subscribers.write().unwrap_or_else(|e| e.into_inner()).push(Subscriber { id, queue });
        (channel, id, receiver)
    }

    fn leave(&self, name: &str, channel: &Channel, id: u64) {
        let mut by_name = self.by_name.write().unwrap_or_else(|e| e.into_inner());
        let mut subscribers = channel.subscribers.write().unwrap_or_else(|e| e.into_inner());
        subscribers.retain(|s| s.id != id);
        if subscribers.is_empty() {
            by_name.remove(name);
        }
    }

    fn find(&self, name: &str) -> Option<Arc<Channel>> {
        self.by_name.read().unwrap_or_else(|e| e.into_inner()).get(name).cloned()
    }
}

type WsError = tokio_tungstenite::tungstenite::Error;

async fn serve_socket(stream: TcpStream, channels: Arc<Channels>) -> Result<(), WsError> {
    let mut path = String::new();
    // The handshake callback's error type is tungstenite's, not ours.
    #[allow(clippy::result_large_err)]
    let read_path = |request: &WsRequest, response: WsResponse| {
        path = request.uri().path().trim_start_matches('/').to_owned();
        Ok(response)
    };
    let mut ws = tokio_tungstenite::accept_hdr_async_with_config(stream, read_path, Some(config())).await?;
    let (channel, id, mut queue) = channels.join(&path);
    let result = async {
        ws.send(Message::text(format!(r#"{{"type":"subscribed","channel":"{path}"}}"#))).await?;
        let mut batch = Vec::with_capacity(BATCH);
        loop {
            tokio::select! {
                taken = queue.recv_many(&mut batch, BATCH) => {
                    if taken == 0 {
                        break;
                    }
                    for frame in batch.drain(..) {
                        ws.feed(Message::Text(frame)).await?;
                    }
                    ws.flush().await?;
                }
                message = ws.next() => match message {
                    Some(Ok(Message::Text(text))) => {
                        channel.publish(&text);
                    }
                    Some(Ok(Message::Close(_))) | None => break,
                    Some(Err(e)) => return Err(e),
                    // Pings are answered by tungstenite itself; binary frames are not broadcast.
                    Some(Ok(_)) => {}
                },
            }
        }
        Ok(())
    }
    .await;
    channels.leave(&path, &channel, id);
    result
}

/// `POST /publish/<channel>`: the body, as one shared frame, to every socket of the channel.
async fn publish(
    request: Request<Incoming>,
    channels: Arc<Channels>,
) -> Result<Response<Full<Bytes>>, hyper::Error> {
    let answer = |status: StatusCode, body: String| {
        let mut response = Response::new(Full::new(Bytes::from(body)));
        *response.status_mut() = status;
        Ok(response)
    };
    let Some(name) = request.uri().path().strip_prefix("/publish/").map(str::to_owned) else {
        return answer(StatusCode::NOT_FOUND, r#"{"detail":"POST /publish/<channel>"}"#.to_owned());
    };
    if request.method() != Method::POST {
        return answer(StatusCode::METHOD_NOT_ALLOWED, r#"{"detail":"POST only"}"#.to_owned());
    }
    let body = request.into_body().collect().await?.to_bytes();
    let Ok(frame) = Utf8Bytes::try_from(body) else {
        return answer(StatusCode::UNPROCESSABLE_ENTITY, r#"{"detail":"the body is not UTF-8"}"#.to_owned());
    };
    let delivered = channels.find(&name).map_or(0, |channel| channel.publish(&frame));
    answer(StatusCode::OK, format!(r#"{{"delivered":{delivered}}}"#))
}

async fn serve_http(stream: TcpStream, channels: Arc<Channels>) -> Result<(), hyper::Error> {
    let service = hyper::service::service_fn(move |request| publish(request, channels.clone()));
    hyper::server::conn::http1::Builder::new()
        .keep_alive(true)
        .serve_connection(TokioIo::new(stream), service)
        .await
}

/// Whether the connection's first bytes are `POST ` (HTTP publish) rather than a handshake's GET.
async fn is_post(stream: &TcpStream) -> std::io::Result<bool> {
    let mut head = [0u8; 5];
    // A request line comes in one segment; a few peeks cover a client that splits it.
    for _ in 0..64 {
        let n = stream.peek(&mut head).await?;
        if n == 0 || head[..n] != b"POST "[..n] {
            return Ok(false);
        }
        if n == head.len() {
            return Ok(true);
        }
        tokio::task::yield_now().await;
    }
    Ok(false)
}

async fn serve(stream: TcpStream, channels: Arc<Channels>) -> anyhow::Result<()> {
    stream.set_nodelay(true)?;
    if is_post(&stream).await? {
        serve_http(stream, channels).await?;
    } else {
        serve_socket(stream, channels).await?;
    }
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let listener = ceiling::listen("bare-broadcast", "127.0.0.1:8250").await?;
    let channels = Arc::new(Channels::default());
    loop {
        let (stream, _) = listener.accept().await?;
        let channels = channels.clone();
        tokio::spawn(async move {
            let _ = serve(stream, channels).await;
        });
    }
}
