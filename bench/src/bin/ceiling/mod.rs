//! What the two ceiling servers (bare-echo, bare-broadcast) share: their WebSocket settings and
//! how they start listening.

use std::net::SocketAddr;
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

/// The largest message, as wsguard's `--max-message-bytes 65536` in the benchmark.
pub const MAX_MESSAGE: usize = 64 * 1024;

/// The ceiling's socket settings, kept as they were measured from the start: a 4 KiB read buffer
/// and every frame written at once. wsguard now reads into 512 bytes and collects queued frames
/// up to 4 KiB per write (src/ws/admission.rs `configure`); the ceiling stays put so runs compare.
pub fn config() -> WebSocketConfig {
    WebSocketConfig::default()
        .max_message_size(Some(MAX_MESSAGE))
        .max_frame_size(Some(MAX_MESSAGE))
        .read_buffer_size(4 * 1024)
        .write_buffer_size(0)
        .max_write_buffer_size(MAX_MESSAGE * 4)
}

/// Binds `--bind ADDR` (or `default`) with the file limit raised, and prints the address as the
/// first stdout line, like wsguard.
pub async fn listen(name: &str, default: &str) -> anyhow::Result<TcpListener> {
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    let bind: SocketAddr = match std::env::args().skip_while(|a| a != "--bind").nth(1) {
        Some(addr) => addr.parse()?,
        None => default.parse()?,
    };
    let listener = TcpListener::bind(bind).await?;
    println!("{name} listening on http://{}", listener.local_addr()?);
    Ok(listener)
}
