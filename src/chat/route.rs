//! `/chat/ws` and `/connect`: every transport (header, subprotocol, query, cookie with CSRF, or a first
//! `{"type":"auth"}` frame within 5 seconds), then the chat protocol.

use super::endpoint::ChannelSocket;
use crate::app::AppState;
use crate::auth::transport::{CookieRule, Sources};
use crate::auth::Mode;
use crate::ws::admission::{Admission, Admitted, Policy, UpgradeRequest};
use crate::ws::socket::Socket;
use axum::extract::State;
use axum::response::Response;
use serde_json::json;

const CHAT: Policy = Policy {
    sources: Sources { header: true, subprotocol: true, query: true, cookie: CookieRule::CsrfQuery },
    mode: Mode::Required,
    auth_frame: true,
    explain_refusal: false,
};

pub(super) async fn connect(
    State(state): State<AppState>,
    UpgradeRequest(upgrade, parts): UpgradeRequest,
) -> Response {
    let admission = match Admission::check(&state, &parts, CHAT).await {
        Ok(admission) => admission,
        Err(refusal) => return refusal,
    };
    let upgrade = admission.negotiate(crate::ws::configure(upgrade, &state));
    upgrade.on_upgrade(move |socket| async move {
        let Some((socket, Admitted::Bound(bound))) = admission.settle(socket).await else { return };
        let identity = &bound.identity;
        let welcome = json!({"type": "welcome", "user": identity.user.username, "exp": identity.claims.exp});
        let chat = ChannelSocket::new(state.clone(), &identity.user.username);
        Socket::new(socket, state, Some(bound), Mode::Required, chat).run(vec![welcome.to_string()]).await;
    })
}
