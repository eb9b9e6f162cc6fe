//! The JSON sockets, `/chat/ws` and `/connect` (one handler), in wsguard's own protocol
//! (`channels::protocol`): rooms with presence and history, and channels to subscribe and publish
//! to. `socket` is one socket's session (its subscriber, and what the socket layer asks of it),
//! `commands` one file per command, `route` the endpoint. Every channel rule is the engine's
//! (`channels`); the socket's life (authentication, expiry, limits) is the WebSocket layer's.

mod commands;
pub(crate) mod route;
pub(crate) mod socket;

use crate::app::AppState;
use axum::routing::{get, post};
use axum::Router;

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/chat/ws", get(route::connect))
        .route("/connect", get(route::connect))
        .route("/chat/ws/stream", post(route::stream))
        .route("/connect/stream", post(route::stream))
}
