//! The chat: rooms, presence and history over `/chat/ws`. `protocol` is the wire format,
//! `commands` what one socket's commands do, `route` the endpoint. Rooms are channels of the
//! broker; the socket's life is the WebSocket layer's.

mod commands;
pub mod protocol;
mod route;

use crate::app::AppState;
use axum::routing::get;
use axum::Router;

pub(crate) fn routes() -> Router<AppState> {
    Router::new().route("/chat/ws", get(route::connect))
}
