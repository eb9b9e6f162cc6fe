//! Centrifugo's public protocols over wsguard's channel engine, so that every Centrifugo SDK and
//! API client works with wsguard unchanged: the client protocol v2 with the JSON codec
//! (`/connection/websocket`) and the server API (`POST /centrifugo/api/<method>`). Channels,
//! namespaces, history, offsets, epochs and presence are the engine's; tokens, revocation and
//! limits are wsguard's. The codes both speak are in `codes`.

pub(crate) mod api;
mod client;
pub(crate) mod codes;

use crate::app::AppState;
use axum::Router;

pub(crate) fn routes() -> Router<AppState> {
    use axum::routing::{get, post};
    Router::new()
        .route("/connection/websocket", get(client::websocket))
        .route("/connection/http_stream", post(client::http_stream))
        .route("/connection/sse", get(client::sse))
        .merge(api::routes())
}
