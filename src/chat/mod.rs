//! The JSON sockets, `/chat/ws` and `/connect` (one handler): rooms with presence and history,
//! and channels to subscribe and publish to. `endpoint` is one socket's state and its channel
//! commands, `rooms` the chat's commands, `batch` commands that arrived together, `delivery` what
//! reaches the socket put in order, `recovery` subscribing with `since`, `route` the endpoint. The wire format is
//! `channels::protocol`; the socket's life is the WebSocket layer's.

mod batch;
mod delivery;
pub(crate) mod endpoint;
mod recovery;
mod rooms;
pub(crate) mod route;

use crate::app::AppState;
use axum::routing::get;
use axum::Router;

pub(crate) fn routes() -> Router<AppState> {
    Router::new().route("/chat/ws", get(route::connect)).route("/connect", get(route::connect))
}
