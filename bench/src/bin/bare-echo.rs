//! bare-echo: the ceiling. A WebSocket echo server on tokio-tungstenite (the tungstenite version
//! axum uses) with no authentication, no limits and no bookkeeping: it sends `Welcome!` on accept
//! (so a handshake costs what wsguard's does on the wire) and answers each text frame with
//! `You wrote: {text}`, like wsguard's `/secured-ws`. Any path is accepted.

mod ceiling;

use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

async fn serve(stream: TcpStream) -> Result<(), tokio_tungstenite::tungstenite::Error> {
    stream.set_nodelay(true)?;
    let mut ws = tokio_tungstenite::accept_async_with_config(stream, Some(ceiling::config())).await?;
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
    let listener = ceiling::listen("bare-echo", "127.0.0.1:8200").await?;
    loop {
        let (stream, _) = listener.accept().await?;
        tokio::spawn(async move {
            let _ = serve(stream).await;
        });
    }
}
