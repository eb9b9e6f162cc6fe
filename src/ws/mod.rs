//! The WebSocket layer: admission (`admission`), one socket's life bound to its token (`socket`),
//! the close codes (`close`), and the source documents' echo endpoints. Other
//! endpoints (the chat) plug an [`socket::Endpoint`] into the same admission and loop.

pub(crate) mod admission;
pub(crate) mod close;
pub(crate) mod echo;
mod gate;
pub(crate) mod socket;

use crate::app::AppState;
use crate::auth::Mode;
use axum::extract::ws::WebSocketUpgrade;
use axum::routing::get;
use axum::Router;

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/secured-ws", get(echo::secured))
        .route("/ws", get(echo::query(Mode::Required)))
        .route("/ws/optional", get(echo::query(Mode::Optional)))
        .route("/ws/refresh", get(echo::query(Mode::Refresh)))
        .route("/ws/fresh", get(echo::query(Mode::Fresh)))
}

/// What a socket's read buffer starts at. tungstenite allocates (and zeroes) it up front, so every
/// idle socket holds it; a frame's header reserves room for the whole frame, so a larger one only
/// takes more reads of this size. Clients send commands of a few hundred bytes.
pub(crate) const READ_BUFFER_BYTES: usize = 512;

/// Bytes of frames a socket collects before writing them, when several are queued.
const WRITE_BATCH_BYTES: usize = 4 * 1024;

/// Applies the configured limits to an upgrade.
pub(crate) fn configure(upgrade: WebSocketUpgrade, state: &AppState) -> WebSocketUpgrade {
    let max = state.config.socket.max_message_bytes;
    // Small buffers: an idle socket should cost little; they grow while a large message is read.
    // Frames fed while several are queued collect up to WRITE_BATCH_BYTES before a write, so a
    // socket catching up writes many in one syscall (a lone frame is flushed at once).
    upgrade
        .max_message_size(max)
        .max_frame_size(max)
        .read_buffer_size(READ_BUFFER_BYTES)
        .write_buffer_size(WRITE_BATCH_BYTES)
        .max_write_buffer_size(max.max(64 * 1024) * 4)
}
