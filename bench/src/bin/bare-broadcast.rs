//! bare-broadcast: the fan-out ceiling. A WebSocket server on tokio-tungstenite with the very
//! settings of bare-echo (`ceiling::config`), no authentication, no store, no limits: the
//! URL path names a channel, and every text frame a socket sends goes to every socket on that
//! channel, the sender included. Once a socket follows its channel it is sent
//! `{"type":"subscribed","channel":"<path>"}`, so a client knows when broadcasts reach it.
//!
//! A frame is shared, not copied: the received text (reference-counted bytes) goes through a
//! `tokio::sync::broadcast` channel to each socket's task, which writes it to its socket.

mod ceiling;

use futures_util::{SinkExt, StreamExt};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::net::TcpStream;
use tokio::sync::broadcast;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

/// Frames a socket may fall behind its channel before it misses some (it is then told nothing:
/// the generator counts what is lost).
const BACKLOG: usize = 1024;

/// Each channel's sender, by name; a channel goes when its last socket does.
#[derive(Default)]
struct Channels(Mutex<HashMap<String, broadcast::Sender<Utf8Bytes>>>);

impl Channels {
    fn join(&self, name: &str) -> (broadcast::Sender<Utf8Bytes>, broadcast::Receiver<Utf8Bytes>) {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let sender = map.entry(name.to_owned()).or_insert_with(|| broadcast::channel(BACKLOG).0).clone();
        let receiver = sender.subscribe();
        (sender, receiver)
    }

    fn leave(&self, name: &str) {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if map.get(name).is_some_and(|s| s.receiver_count() == 0) {
            map.remove(name);
        }
    }
}

async fn serve(
    stream: TcpStream,
    channels: Arc<Channels>,
) -> Result<(), tokio_tungstenite::tungstenite::Error> {
    stream.set_nodelay(true)?;
    let mut path = String::new();
    // The handshake callback's error type is tungstenite's, not ours.
    #[allow(clippy::result_large_err)]
    let read_path = |request: &Request, response: Response| {
        path = request.uri().path().trim_start_matches('/').to_owned();
        Ok(response)
    };
    let mut ws =
        tokio_tungstenite::accept_hdr_async_with_config(stream, read_path, Some(ceiling::config())).await?;
    let (sender, mut receiver) = channels.join(&path);
    let result = async {
        ws.send(Message::text(format!(r#"{{"type":"subscribed","channel":"{path}"}}"#))).await?;
        loop {
            tokio::select! {
                frame = receiver.recv() => match frame {
                    Ok(text) => ws.send(Message::Text(text)).await?,
                    Err(broadcast::error::RecvError::Lagged(_)) => {}
                    Err(broadcast::error::RecvError::Closed) => break,
                },
                message = ws.next() => match message {
                    Some(Ok(Message::Text(text))) => {
                        let _ = sender.send(text);
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
    drop(receiver);
    channels.leave(&path);
    result
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
