//! An emulated connection's wire: frames to the client go down one HTTP response, as lines
//! (HTTP streaming) or server-sent events; the client's frames come from the session's queue,
//! which `POST /emulation` fills on whichever node receives it.

use crate::app::AppState;
use crate::broker::sessions::Registration;
use crate::broker::Utf8Bytes;
use crate::metrics::Metrics;
use crate::proxy::Via;
use crate::ws::close::Close;
use crate::ws::socket::Wire;
use axum::body::{Body, Bytes};
use axum::extract::ws::Message;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::Response;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// Chunks a stream may have waiting for its client to read them. Past that, writing waits, and
/// the session's own queue of deliveries fills up behind it: a client too slow is disconnected
/// as on a WebSocket.
const WAITING_CHUNKS: usize = 8;
/// How long one write may wait for the client to read: a stream that stalls longer is closed,
/// and its client reconnects and recovers what it missed.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// Bytes collected before they are written as one chunk while frames are queued.
const CHUNK_BYTES: usize = 16 * 1024;

/// How frames are laid out in the response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Framing {
    /// `POST /connection/http_stream`: one frame per line.
    Lines,
    /// `GET /connection/sse`: one frame per event, its lines as `data:` lines.
    Events,
}

impl Framing {
    pub(crate) fn via(self) -> Via {
        match self {
            Framing::Lines => Via::HttpStream,
            Framing::Events => Via::Sse,
        }
    }

    fn content_type(self) -> &'static str {
        match self {
            Framing::Lines => "application/x-ndjson",
            Framing::Events => "text/event-stream; charset=utf-8",
        }
    }

    fn write(self, frame: &str, out: &mut Vec<u8>) {
        match self {
            Framing::Lines => {
                out.extend_from_slice(frame.as_bytes());
                out.push(b'\n');
            }
            Framing::Events => {
                for line in frame.split('\n') {
                    out.extend_from_slice(b"data: ");
                    out.extend_from_slice(line.as_bytes());
                    out.push(b'\n');
                }
                out.push(b'\n');
            }
        }
    }
}

/// How a protocol tells its client that the server ends the connection: the last frame of the
/// stream (a WebSocket would send a close frame).
pub(crate) type Farewell = fn(&Close) -> String;

pub(crate) struct StreamWire {
    /// The session's place among the node's: its id, and its queue of commands while it lives.
    registration: Registration,
    commands: mpsc::Receiver<Utf8Bytes>,
    body: mpsc::Sender<Bytes>,
    framing: Framing,
    farewell: Farewell,
    /// Frames fed and not yet written: empty, holding no memory, while the stream is idle.
    pending: Vec<u8>,
    /// The size of the last chunk written, reserved at once for the next: a chunk is not grown
    /// from nothing frame by frame.
    last_chunk: usize,
    _open: OpenStream,
}

impl StreamWire {
    /// Opens a session on this node and the response that streams to its client.
    pub(crate) fn open(state: &AppState, framing: Framing, farewell: Farewell) -> (StreamWire, Response) {
        let (registration, commands) = state.engine.open_session();
        let (body, chunks) = mpsc::channel(WAITING_CHUNKS);
        let wire = StreamWire {
            registration,
            commands,
            body,
            framing,
            farewell,
            pending: Vec::new(),
            last_chunk: 0,
            _open: OpenStream::new(state.metrics.clone(), framing),
        };
        (wire, response(framing, chunks))
    }

    /// A complete response holding `frame` alone: a connection refused before it had a session.
    pub(crate) fn once(framing: Framing, frame: &str) -> Response {
        let mut chunk = Vec::new();
        framing.write(frame, &mut chunk);
        let (body, chunks) = mpsc::channel(1);
        // Room for one chunk: sent without waiting, and the stream ends with the sender.
        let _ = body.try_send(Bytes::from(chunk));
        response(framing, chunks)
    }

    /// The session's id, for its client's `POST /emulation`.
    pub(crate) fn session(&self) -> &str {
        self.registration.id()
    }

    async fn write(&mut self, chunk: Vec<u8>) -> Result<(), axum::Error> {
        match tokio::time::timeout(WRITE_TIMEOUT, self.body.send(Bytes::from(chunk))).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(gone("the client closed the stream")),
            Err(_) => Err(gone("the client stopped reading the stream")),
        }
    }
}

impl Wire for StreamWire {
    async fn recv(&mut self) -> Option<Result<Message, axum::Error>> {
        tokio::select! {
            command = self.commands.recv() => command.map(|data| Ok(Message::Text(data))),
            // The client went away: hyper dropped the response body.
            () = self.body.closed() => None,
        }
    }

    async fn feed(&mut self, message: Message) -> Result<(), axum::Error> {
        // Text only: a stream has no pings (protocols ping with text frames) and no close frame.
        if let Message::Text(text) = message {
            if self.pending.capacity() == 0 {
                self.pending.reserve(self.last_chunk);
            }
            self.framing.write(text.as_str(), &mut self.pending);
        }
        if self.pending.len() >= CHUNK_BYTES {
            return self.flush().await;
        }
        Ok(())
    }

    async fn flush(&mut self) -> Result<(), axum::Error> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let chunk = std::mem::take(&mut self.pending);
        self.last_chunk = chunk.len().min(CHUNK_BYTES);
        self.write(chunk).await
    }

    async fn send(&mut self, message: Message) -> Result<(), axum::Error> {
        self.feed(message).await?;
        self.flush().await
    }

    fn via(&self) -> Via {
        self.framing.via()
    }

    /// Writes the protocol's farewell after what is pending, then ends the response.
    async fn close(mut self, close: Close) {
        let farewell = (self.farewell)(&close);
        self.framing.write(&farewell, &mut self.pending);
        let _ = self.flush().await;
    }
}

fn gone(why: &str) -> axum::Error {
    axum::Error::new(std::io::Error::new(std::io::ErrorKind::BrokenPipe, why.to_owned()))
}

/// The streaming response: no caching, no buffering by proxies (`X-Accel-Buffering: no` for
/// nginx), the chunks as the session writes them.
fn response(framing: Framing, mut chunks: mpsc::Receiver<Bytes>) -> Response {
    let stream =
        futures_util::stream::poll_fn(move |cx| chunks.poll_recv(cx).map(|c| c.map(Ok::<_, std::io::Error>)));
    let mut response = Response::new(Body::from_stream(stream));
    *response.status_mut() = StatusCode::OK;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(framing.content_type()));
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, no-cache, no-store, must-revalidate, max-age=0"),
    );
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    response
}

/// Counts an open stream in its transport's gauge while it lives.
struct OpenStream(Arc<Metrics>, Framing);

impl OpenStream {
    fn new(metrics: Arc<Metrics>, framing: Framing) -> OpenStream {
        gauge(&metrics, framing).inc();
        OpenStream(metrics, framing)
    }
}

impl Drop for OpenStream {
    fn drop(&mut self) {
        gauge(&self.0, self.1).dec();
    }
}

fn gauge(metrics: &Metrics, framing: Framing) -> &crate::metrics::Gauge {
    match framing {
        Framing::Lines => &metrics.http_streams_open,
        Framing::Events => &metrics.sse_streams_open,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_lines_or_events() {
        let mut out = Vec::new();
        Framing::Lines.write("{\"a\":1}\n{\"b\":2}", &mut out);
        assert_eq!(out, b"{\"a\":1}\n{\"b\":2}\n");
        out.clear();
        Framing::Events.write("{\"a\":1}\n{\"b\":2}", &mut out);
        assert_eq!(out, b"data: {\"a\":1}\ndata: {\"b\":2}\n\n", "an event's lines join back with newlines");
        out.clear();
        Framing::Events.write("{}", &mut out);
        assert_eq!(out, b"data: {}\n\n");
    }
}
