//! The WebSocket endpoints. Each one checks the Origin, finds and verifies the token through the
//! shared `auth` path, then hands the socket to [`session::run`], which keeps it bound to its token.

mod chat;
mod echo;
pub mod origin;
pub mod registry;
pub mod session;

use crate::app::AppState;
use crate::auth::transport::{self, CookieKind, CookieRule, Presented, Sources, Transport};
use crate::auth::{AuthError, Identity, Mode};
use crate::http::error::ApiError;
use axum::extract::ws::{WebSocket, WebSocketUpgrade};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;
use session::{Bound, Close};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/secured-ws", get(echo::secured))
        .route("/ws", get(echo::query(Mode::Required)))
        .route("/ws/optional", get(echo::query(Mode::Optional)))
        .route("/ws/refresh", get(echo::query(Mode::Refresh)))
        .route("/ws/fresh", get(echo::query(Mode::Fresh)))
        .route("/chat/ws", get(chat::connect))
}

/// Applies the configured limits to an upgrade.
fn configure(ws: WebSocketUpgrade, state: &AppState) -> WebSocketUpgrade {
    let max = state.limits.max_message_bytes;
    // Small buffers: an idle socket should cost little; they grow while a large message is read.
    ws.max_message_size(max)
        .max_frame_size(max)
        .read_buffer_size(4 * 1024)
        .write_buffer_size(0)
        .max_write_buffer_size(max.max(64 * 1024) * 4)
}

/// A refusal before the upgrade, as a plain HTTP response.
fn refuse(status: StatusCode, detail: &str) -> Response {
    (status, Json(json!({ "detail": detail }))).into_response()
}

/// Maps an authentication failure before the upgrade: 401 for a missing or bad token (with the
/// bearer challenge), 403 for a credential that is not a bearer token or an inactive user.
fn refuse_auth(err: AuthError) -> Response {
    match err {
        AuthError::NotBearer | AuthError::Inactive => refuse(StatusCode::FORBIDDEN, &err.to_string()),
        other => ApiError::Auth(other).into_response(),
    }
}

fn refuse_origin(state: &AppState) -> Response {
    state.metrics.socket_rejections.inc();
    refuse(StatusCode::FORBIDDEN, "Origin not allowed")
}

/// Finds the token under `sources` and checks the Origin: a cookie transport needs a matching
/// Origin, any transport is refused for a foreign one.
#[allow(clippy::result_large_err)] // the error is the handler's early response
fn find_token(
    parts: &Parts,
    state: &AppState,
    sources: Sources,
    mode: Mode,
) -> Result<Result<Option<Presented>, AuthError>, Response> {
    let kind = if mode == Mode::Refresh { CookieKind::Refresh } else { CookieKind::Access };
    let found = transport::find(parts, sources, kind);
    let cookie = matches!(&found, Ok(Some(p)) if p.transport == Transport::Cookie);
    if !origin::allowed(&parts.headers, &state.config.allowed_origins, cookie) {
        return Err(refuse_origin(state));
    }
    Ok(found)
}

/// Puts an authenticated socket in the registry, under the per-user cap.
fn bind(state: &AppState, identity: Identity) -> Result<Bound, Close> {
    let claims = &identity.claims;
    let registration = state
        .sockets
        .register(&identity.user.username, &claims.jti, &claims.fam, state.config.max_sockets_per_user)
        .map_err(|_| Close::new(session::RATE_LIMITED, "too many sockets for this user"))?;
    Ok(Bound { identity, registration })
}

/// Closes a socket that failed authentication after the upgrade.
async fn close_unauthenticated(socket: WebSocket, state: &AppState, reason: &str) {
    state.metrics.socket_rejections.inc();
    session::close(socket, Close::new(session::POLICY, reason)).await;
}

/// A WebSocket upgrade and the request it came with (taken apart, not copied: the handshake is
/// a hot path). A plain HTTP request gets a JSON 426.
pub struct UpgradeRequest(pub WebSocketUpgrade, pub Parts);

impl<S: Send + Sync> FromRequest<S> for UpgradeRequest {
    type Rejection = Response;

    async fn from_request(request: Request, state: &S) -> Result<Self, Response> {
        let (mut parts, _) = request.into_parts();
        match WebSocketUpgrade::from_request_parts(&mut parts, state).await {
            Ok(ws) => Ok(UpgradeRequest(ws, parts)),
            Err(_) => Err(refuse(StatusCode::UPGRADE_REQUIRED, "Expected a WebSocket upgrade")),
        }
    }
}

/// The sources `/ws` and its mode variants read: the query string, or the cookie with
/// `?csrf_token=`.
const QUERY_OR_COOKIE: Sources =
    Sources { header: false, subprotocol: false, query: true, cookie: CookieRule::CsrfQuery };
