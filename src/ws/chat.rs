//! `/chat/ws`: every transport (header, subprotocol, query, cookie with CSRF, or a first
//! `{"type":"auth"}` frame within 5 seconds), then the chat protocol.

use super::session;
use super::UpgradeRequest;
use super::{bind, close_unauthenticated, configure, find_token, refuse_auth};
use crate::app::AppState;
use crate::auth::transport::{CookieRule, Presented, Sources, Transport, BEARER_PROTOCOL};
use crate::auth::{AuthError, Identity, Mode};
use crate::chat::session::ChatSession;
use axum::extract::ws::{Message, WebSocket};
use axum::extract::State;
use axum::response::Response;
use serde::Deserialize;
use serde_json::json;
use std::time::Duration;

/// How long a socket without a token on the handshake has to send `{"type":"auth"}`.
const AUTH_FRAME_TIMEOUT: Duration = Duration::from_secs(5);

const ALL_TRANSPORTS: Sources =
    Sources { header: true, subprotocol: true, query: true, cookie: CookieRule::CsrfQuery };

#[derive(Deserialize)]
struct AuthFrame {
    #[serde(rename = "type")]
    kind: String,
    token: String,
}

pub async fn connect(State(state): State<AppState>, UpgradeRequest(ws, parts): UpgradeRequest) -> Response {
    let found = match find_token(&parts, &state, ALL_TRANSPORTS, Mode::Required) {
        Ok(found) => found,
        Err(response) => return response,
    };
    let presented = match found {
        Ok(presented) => presented,
        Err(err) => {
            state.metrics.socket_rejections.inc();
            return refuse_auth(err);
        }
    };
    // A header token is checked before the upgrade, like /secured-ws; the others after it, so
    // that a browser sees the close reason.
    let early = match &presented {
        Some(p) if p.transport == Transport::Header => {
            match state.auth.authenticate(Some(p), Mode::Required).await {
                Ok(identity) => identity,
                Err(err) => {
                    state.metrics.socket_rejections.inc();
                    return refuse_auth(err);
                }
            }
        }
        _ => None,
    };
    let mut ws = configure(ws, &state);
    if presented.as_ref().is_some_and(|p| p.transport == Transport::Subprotocol) {
        ws = ws.protocols([BEARER_PROTOCOL]);
    }
    ws.on_upgrade(move |socket| async move {
        let (socket, identity) = match (early, presented) {
            (Some(identity), _) => (socket, Ok(identity)),
            (None, Some(presented)) => {
                let identity = state.auth.authenticate(Some(&presented), Mode::Required).await;
                (socket, identity.and_then(|i| i.ok_or(AuthError::Missing)))
            }
            (None, None) => first_frame(socket, &state).await,
        };
        let identity = match identity {
            Ok(identity) => identity,
            Err(err) => return close_unauthenticated(socket, &state, &err.to_string()).await,
        };
        let welcome = json!({"type": "welcome", "user": identity.user.username, "exp": identity.claims.exp})
            .to_string();
        match bind(&state, identity) {
            Ok(bound) => {
                let chat = ChatSession::new(state.clone(), &bound.identity.user.username);
                session::run(socket, state, Some(bound), Mode::Required, vec![welcome], chat).await
            }
            Err(close) => session::close(socket, close).await,
        }
    })
}

/// Waits for `{"type":"auth","token":...}` as the first frame and authenticates it.
async fn first_frame(mut socket: WebSocket, state: &AppState) -> (WebSocket, Result<Identity, AuthError>) {
    let frame = match tokio::time::timeout(AUTH_FRAME_TIMEOUT, socket.recv()).await {
        Ok(Some(Ok(Message::Text(text)))) => serde_json::from_str::<AuthFrame>(text.as_str()).ok(),
        _ => None,
    };
    let Some(frame) = frame.filter(|f| f.kind == "auth") else {
        return (socket, Err(AuthError::Missing));
    };
    let presented = Presented { token: frame.token, transport: Transport::Frame, csrf: None };
    let identity = state.auth.authenticate(Some(&presented), Mode::Required).await;
    (socket, identity.and_then(|i| i.ok_or(AuthError::Missing)))
}
