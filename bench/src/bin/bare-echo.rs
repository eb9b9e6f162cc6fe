//! bare-echo: the ceiling. A WebSocket echo server on tokio-tungstenite (the tungstenite version
//! axum uses) with no authentication, no limits and no bookkeeping: it sends `Welcome!` on accept
//! (so a handshake costs what wsguard's does on the wire) and answers each text frame with
//! `You wrote: {text}`, like wsguard's `/secured-ws`. Any path is accepted.

use futures_util::{SinkExt, StreamExt};
use std::net::SocketAddr;
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;

/// The largest message, as wsguard's `--max-message-bytes 65536` in the benchmark.
const MAX_MESSAGE: usize = 64 * 1024;

/// The socket settings wsguard gives axum (src/ws/mod.rs `configure`): small buffers, so the
/// two servers pay the same per-socket memory for the library and the comparison shows the rest.
fn config() -> WebSocketConfig {
    WebSocketConfig::default()
        .max_message_size(Some(MAX_MESSAGE))
        .max_frame_size(Some(MAX_MESSAGE))
        .read_buffer_size(4 * 1024)
        .write_buffer_size(0)
        .max_write_buffer_size(MAX_MESSAGE * 4)
}

async fn serve(stream: TcpStream) -> Result<(), tokio_tungstenite::tungstenite::Error> {
    stream.set_nodelay(true)?;
    let mut ws = tokio_tungstenite::accept_async_with_config(stream, Some(config())).await?;
    ws.send(Message::text("Welcome!")).await?;
    while let Some(message) = ws.next().await {
        match message? {
            Message::Text(text) => ws.send(Message::text(format!("You wrote: {text}"))).await?,
            Message::Binary(data) => ws.send(Message::Binary(data)).await?,
            Message::Close(_) => break,
            // Pings are answered by tungstenite itself.
            _ => {}
        }
    }
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    let bind: SocketAddr = match std::env::args().skip_while(|a| a != "--bind").nth(1) {
        Some(addr) => addr.parse()?,
        None => "127.0.0.1:8200".parse()?,
    };
    let listener = TcpListener::bind(bind).await?;
    // Like wsguard: the first stdout line is the address.
    println!("bare-echo listening on http://{}", listener.local_addr()?);
    loop {
        let (stream, _) = listener.accept().await?;
        tokio::spawn(async move {
            let _ = serve(stream).await;
        });
    }
}
