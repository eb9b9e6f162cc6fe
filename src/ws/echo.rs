//! The source documents' endpoints: `/secured-ws` (bearer header, refused before the upgrade)
//! and `/ws` (query or cookie, checked after accept), in each check mode.

use super::admission::{admitted, bound_task, upgrade, Admission, Admitted, Policy, UpgradeRequest};
use super::close::Close;
use super::socket::{Endpoint, Socket};
use crate::app::AppState;
use crate::auth::transport::{CookieRule, Sources};
use crate::auth::{Identity, Mode};
use axum::extract::ws::WebSocket;
use axum::extract::State;
use axum::response::Response;
use futures_util::future::{BoxFuture, FutureExt};
use std::future::Future;

/// Answers every text frame with `You wrote: {text}`.
pub(crate) struct Echo;

impl Endpoint for Echo {
    async fn on_text(&mut self, text: &str, _: Option<&Identity>) -> Result<Vec<String>, Close> {
        Ok(vec![format!("You wrote: {text}")])
    }
}

/// `/secured-ws`: `Authorization: Bearer` on the handshake; refused before the upgrade with 401
/// (missing or invalid) or 403 (not a bearer scheme).
const SECURED: Policy = Policy {
    sources: Sources { header: true, subprotocol: false, query: false, cookie: CookieRule::Off },
    mode: Mode::Required,
    auth_frame: false,
    explain_refusal: false,
};

/// `/ws` in one mode: the query string, or the cookie with `?csrf_token=`; refusals are sent as
/// text, then the socket closes with 1008.
const fn query_policy(mode: Mode) -> Policy {
    Policy {
        sources: Sources { header: false, subprotocol: false, query: true, cookie: CookieRule::CsrfQuery },
        mode,
        auth_frame: false,
        explain_refusal: true,
    }
}

pub(crate) async fn secured(State(state): State<AppState>, request: UpgradeRequest) -> Response {
    upgrade(state, request, SECURED, secured_task).await
}

/// One `/secured-ws` socket's task, from the upgrade to the close.
pub(crate) fn secured_task(
    admission: Admission,
    state: AppState,
    socket: WebSocket,
) -> impl Future<Output = ()> {
    bound_task(admission, state, socket, |_, bound| {
        (format!("Welcome {}!", bound.identity.user.username), Echo)
    })
}

/// `/ws` and its mode variants, as a handler for the router.
pub(crate) fn query(
    mode: Mode,
) -> impl Fn(State<AppState>, UpgradeRequest) -> BoxFuture<'static, Response> + Clone {
    move |State(state), request| {
        Box::pin(upgrade(state, request, query_policy(mode), move |admission, state, socket| {
            query_task(admission, state, mode, socket)
        }))
    }
}

/// One `/ws` socket's task: sends `Successfully Login!` and the decoded claims (or `Anonymous
/// connection` and `null`), then echoes. An anonymous socket keeps its place until its loop ends.
pub(crate) fn query_task(
    admission: Admission,
    state: AppState,
    mode: Mode,
    socket: WebSocket,
) -> impl Future<Output = ()> {
    admitted(admission, socket, move |socket, who| {
        let (bound, place) = match who {
            Admitted::Anonymous(place) => (None, Some(place)),
            Admitted::Bound(bound) => (Some(bound), None),
        };
        let greeting = match &bound {
            Some(bound) => {
                vec![
                    "Successfully Login!".to_owned(),
                    serde_json::to_string(&bound.identity.claims).unwrap_or_default(),
                ]
            }
            None => vec!["Anonymous connection".to_owned(), "null".to_owned()],
        };
        Some(Socket::new(socket, state, bound, mode, Echo).run(greeting).map(move |()| drop(place)))
    })
}
