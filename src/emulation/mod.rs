//! Connections for networks that refuse WebSockets: the server's half is one long HTTP response
//! (HTTP streaming, or server-sent events), the client's half separate `POST /emulation` requests
//! that any node takes. A request names its session and the node holding it, and the broker
//! carries it there (`broker::sessions`): no sticky sessions.
//!
//! The session runs wsguard's socket loop on a [`StreamWire`] in place of a WebSocket, so its
//! rules (limits, token expiry and refresh, revocation, slow readers) are the WebSocket's. The
//! protocols spoken this way open their streams themselves (`centrifugo::client`).

mod wire;

pub(crate) use wire::{Framing, StreamWire};

use crate::app::AppState;
use crate::http::origin;
use axum::body::{to_bytes, Body};
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

pub(crate) fn routes() -> Router<AppState> {
    Router::new().route("/emulation", post(emulation))
}

/// The longest session or node name a request may carry: both are wsguard's, 32 and 36 long.
const MAX_NAME: usize = 64;
/// Room in a request's body for what wraps the client's commands.
const ENVELOPE_BYTES: usize = 1024;

/// `POST /emulation`: `{"session", "node", "data"}`, `data` being the client's commands as one
/// JSON string, as a WebSocket frame would hold them.
#[derive(Deserialize)]
struct EmulationRequest {
    session: String,
    node: String,
    data: String,
}

/// Hands the commands to their session, on this node or through the broker: 204 once handed on
/// (the answers go down the session's stream; a session gone from a live node takes nothing,
/// and its stream has ended), 404 when no live node has that name (the client connects again),
/// 503 when the broker cannot carry it.
async fn emulation(State(state): State<AppState>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    // No credentials ride on it (the session id is the secret), but a page elsewhere has no
    // business sending it.
    if !origin::allowed(&parts.headers, &state.config.allowed_origins, None) {
        return refuse(&state, StatusCode::FORBIDDEN, "Origin not allowed");
    }
    let max = state.config.socket.max_message_bytes;
    let request = match read(body, max).await {
        Ok(request) => request,
        Err(refusal) => return refuse(&state, refusal.0, refusal.1),
    };
    if request.data.len() > max {
        return refuse(&state, StatusCode::PAYLOAD_TOO_LARGE, "commands over --max-message-bytes");
    }
    match state.engine.emulate(&request.node, &request.session, &request.data).await {
        Ok(true) => {
            state.metrics.emulation_handed.inc();
            StatusCode::NO_CONTENT.into_response()
        }
        Ok(false) => {
            state.metrics.emulation_no_node.inc();
            let detail = json!({"detail": "No such node: connect again"});
            (StatusCode::NOT_FOUND, Json(detail)).into_response()
        }
        Err(err) => {
            tracing::warn!(error = %err, "emulation request not carried to its node");
            let detail = json!({"detail": "Broker unavailable, try again"});
            (StatusCode::SERVICE_UNAVAILABLE, Json(detail)).into_response()
        }
    }
}

async fn read(body: Body, max: usize) -> Result<EmulationRequest, (StatusCode, &'static str)> {
    let bytes = to_bytes(body, max + ENVELOPE_BYTES)
        .await
        .map_err(|_| (StatusCode::PAYLOAD_TOO_LARGE, "request over --max-message-bytes"))?;
    let request: EmulationRequest = serde_json::from_slice(&bytes).map_err(|_| {
        (StatusCode::BAD_REQUEST, "expected {\"session\", \"node\", \"data\"}, data a string")
    })?;
    let well_named = |name: &str| !name.is_empty() && name.len() <= MAX_NAME;
    if !well_named(&request.session) || !well_named(&request.node) {
        return Err((StatusCode::BAD_REQUEST, "session and node are 1 to 64 characters"));
    }
    Ok(request)
}

fn refuse(state: &AppState, status: StatusCode, detail: &str) -> Response {
    state.metrics.emulation_refused.inc();
    (status, Json(json!({ "detail": detail }))).into_response()
}
