//! `/chat/ws` and `/connect`: every transport (header, subprotocol, query, cookie with CSRF, or a first
//! `{"type":"auth"}` frame within 5 seconds), then the chat protocol.

use super::socket::Session;
use crate::app::AppState;
use crate::auth::transport::{CookieRule, Sources};
use crate::auth::{Identity, Mode};
use crate::ws::admission::{bound_task, upgrade, Admission, Policy, UpgradeRequest};
use axum::extract::ws::WebSocket;
use axum::extract::State;
use axum::response::Response;
use serde_json::json;
use std::future::Future;

const CHAT: Policy = Policy {
    sources: Sources { header: true, subprotocol: true, query: true, cookie: CookieRule::CsrfQuery },
    mode: Mode::Required,
    auth_frame: true,
    explain_refusal: false,
};

pub(super) async fn connect(State(state): State<AppState>, request: UpgradeRequest) -> Response {
    upgrade(state, request, CHAT, socket_task).await
}

/// One chat socket's task, from the upgrade to the close.
pub(crate) fn socket_task(
    admission: Admission,
    state: AppState,
    socket: WebSocket,
) -> impl Future<Output = ()> {
    bound_task(admission, state, socket, |state, bound| {
        let identity = &bound.identity;
        let subscriber = state.engine.subscriber(&identity.user.username, client_id(identity));
        (welcome(identity), Session::new(subscriber))
    })
}

/// The connection's id in the application's calls: the one the connect proxy was told, for a
/// connection it admitted; else a new one.
pub(crate) fn client_id(identity: &Identity) -> uuid::Uuid {
    match identity.issuer {
        crate::auth::Issuer::Proxy => {
            uuid::Uuid::parse_str(&identity.claims.jti).unwrap_or_else(|_| uuid::Uuid::new_v4())
        }
        _ => uuid::Uuid::new_v4(),
    }
}

fn welcome(identity: &Identity) -> String {
    json!({"type": "welcome", "user": identity.user.username, "exp": identity.claims.exp}).to_string()
}
