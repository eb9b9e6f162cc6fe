//! The source documents' endpoints: `/secured-ws` (bearer header, refused before the upgrade)
//! and `/ws` (query or cookie, checked after accept), in each check mode.

use super::session::{self, Close, Endpoint};
use super::UpgradeRequest;
use super::{bind, close_unauthenticated, configure, find_token, refuse, refuse_auth, QUERY_OR_COOKIE};
use crate::app::AppState;
use crate::auth::transport::{CookieRule, Sources};
use crate::auth::{AuthError, Identity, Mode};

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use futures_util::future::BoxFuture;

/// Answers every text frame with `You wrote: {text}`.
struct Echo;

impl Endpoint for Echo {
    async fn on_text(&mut self, text: &str, _: Option<&Identity>) -> Result<Vec<String>, Close> {
        Ok(vec![format!("You wrote: {text}")])
    }
}

const HEADER_ONLY: Sources =
    Sources { header: true, subprotocol: false, query: false, cookie: CookieRule::Off };

/// `/secured-ws`: `Authorization: Bearer` on the handshake; refused before the upgrade with 401
/// (missing or invalid) or 403 (not a bearer scheme).
pub async fn secured(State(state): State<AppState>, UpgradeRequest(ws, parts): UpgradeRequest) -> Response {
    let found = match find_token(&parts, &state, HEADER_ONLY, Mode::Required) {
        Ok(found) => found,
        Err(response) => return response,
    };
    let identity = match found {
        Ok(presented) => state.auth.authenticate(presented.as_ref(), Mode::Required).await,
        Err(err) => Err(err),
    };
    let identity = match identity {
        Ok(Some(identity)) => identity,
        Ok(None) => return refuse_auth(AuthError::Missing),
        Err(err) => {
            state.metrics.socket_rejections.inc();
            return refuse_auth(err);
        }
    };
    let bound = match bind(&state, identity) {
        Ok(bound) => bound,
        Err(close) => return refuse(StatusCode::TOO_MANY_REQUESTS, &close.reason),
    };
    configure(ws, &state).on_upgrade(move |socket| async move {
        let welcome = format!("Welcome {}!", bound.identity.user.username);
        session::run(socket, state, Some(bound), Mode::Required, vec![welcome], Echo).await;
    })
}

/// `/ws` and its mode variants, as a handler for the router.
pub fn query(mode: Mode) -> impl Fn(State<AppState>, UpgradeRequest) -> BoxFuture<'static, Response> + Clone {
    move |State(state), upgrade| Box::pin(query_socket(state, upgrade, mode))
}

/// `/ws` in one mode: accept, then `Successfully Login!` and the decoded claims, or the error
/// text and close 1008.
async fn query_socket(state: AppState, UpgradeRequest(ws, parts): UpgradeRequest, mode: Mode) -> Response {
    let found = match find_token(&parts, &state, QUERY_OR_COOKIE, mode) {
        Ok(found) => found,
        Err(response) => return response,
    };
    let identity = match found {
        Ok(presented) => state.auth.authenticate(presented.as_ref(), mode).await,
        Err(err) => Err(err),
    };
    configure(ws, &state).on_upgrade(move |mut socket| async move {
        let identity = match identity {
            Ok(identity) => identity,
            Err(err) => {
                let reason = err.to_string();
                if session::send_text(&mut socket, reason.clone()).await {
                    close_unauthenticated(socket, &state, &reason).await;
                }
                return;
            }
        };
        let Some(identity) = identity else {
            let greeting = vec!["Anonymous connection".to_owned(), "null".to_owned()];
            return session::run(socket, state, None, mode, greeting, Echo).await;
        };
        let claims = serde_json::to_string(&identity.claims).unwrap_or_default();
        match bind(&state, identity) {
            Ok(bound) => {
                let greeting = vec!["Successfully Login!".to_owned(), claims];
                session::run(socket, state, Some(bound), mode, greeting, Echo).await;
            }
            Err(close) => {
                if session::send_text(&mut socket, close.reason.clone()).await {
                    session::close(socket, close).await;
                }
            }
        }
    })
}
