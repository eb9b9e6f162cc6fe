//! `/chat/ws` and `/connect`: every transport (header, subprotocol, query, cookie with CSRF, or a first
//! `{"type":"auth"}` frame within 5 seconds), then the chat protocol. `POST /connect/stream` and
//! `POST /chat/ws/stream` are the same on an emulated connection (HTTP streaming, one frame per
//! line), for clients behind proxies that refuse WebSockets: its first line names the session and
//! its node, which the client's `POST /emulation` requests carry; its last says why it ended, as a
//! close frame would.

use super::socket::Session;
use crate::app::AppState;
use crate::auth::transport::{CookieRule, Sources};
use crate::auth::{Identity, Mode};
use crate::emulation::{Framing, StreamWire};
use crate::ws::admission::{bound_task, upgrade, Admission, Policy, UpgradeRequest};
use crate::ws::close::Close;
use crate::ws::socket::Wire;
use axum::extract::ws::Message;
use axum::extract::{Request, State};
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

pub(super) async fn stream(State(state): State<AppState>, request: Request) -> Response {
    let (parts, _) = request.into_parts();
    let admission = match Admission::check(&state, &parts, CHAT).await {
        Ok(admission) => admission,
        Err(refusal) => return refusal,
    };
    let (mut wire, response) = StreamWire::open(&state, Framing::Lines, farewell);
    let session = json!({"type": "session", "session": wire.session(), "node": state.engine.node_id()});
    tokio::spawn(async move {
        if wire.send(Message::Text(session.to_string().into())).await.is_ok() {
            socket_task(admission, state, wire).await;
        }
    });
    response
}

/// The stream's last line: what a WebSocket's close frame says.
fn farewell(close: &Close) -> String {
    json!({"type": "close", "code": close.code, "reason": close.reason}).to_string()
}

/// One chat socket's task, from the upgrade to the close.
pub(crate) fn socket_task<W: Wire>(
    admission: Admission,
    state: AppState,
    socket: W,
) -> impl Future<Output = ()> {
    let via = socket.via();
    bound_task(admission, state, socket, move |state, bound| {
        let identity = &bound.identity;
        let subscriber = state.engine.subscriber(&identity.user.username, client_id(identity), via);
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
