//! The WebSocket layer: admission (`admission`), one socket's life bound to its token (`socket`),
//! the close codes (`close`), refusals counted and logged (`refusals`), and the source documents'
//! echo endpoints. Other
//! endpoints (the chat) plug an [`socket::Endpoint`] into the same admission and loop.

pub(crate) mod admission;
pub(crate) mod close;
pub(crate) mod echo;
mod gate;
pub(crate) mod refusals;
pub(crate) mod socket;

use crate::app::AppState;
use crate::auth::Mode;
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
