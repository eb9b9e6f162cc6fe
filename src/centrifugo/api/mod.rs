//! Centrifugo's server API over HTTP, `POST /centrifugo/api/<method>` with a JSON object, so that
//! Centrifugo's API clients (`cent`, gocent, phpcent…) work against wsguard unchanged, pointed at
//! `<wsguard>/centrifugo/api`.
//!
//! The key is a wsguard API key (`wsguard apikey add`) in `X-API-Key: <key>` or `Authorization:
//! apikey <key>`, checked, limited and logged as `/api/*` checks them (`crate::api::admit`); each
//! method needs the scope wsguard's own server API needs for the same thing ([`Method::scope`]).
//! Every method runs on the channel engine, as wsguard's own server API does.
//!
//! Answers are Centrifugo's: HTTP 200 with `{"result": …}` or `{"error": {"code", "message"}}`;
//! `batch` answers `{"replies": […]}`. Refused before any method runs: 401 (no key, not a key of
//! this server), 404 (no such method), 400 (a body that is not a JSON object, a batch whose
//! commands cannot all be decoded), 413, 429 and 503, each with an `{"error": …}` body.

mod batch;
mod channels;
mod history;
mod openapi;
mod params;
mod publish;
mod reply;
mod users;

pub(crate) use openapi::CentrifugoApiDoc;

use super::codes::{self, Error};
use crate::api::{admit, check_declared_length, read_body, record, CallError};
use crate::app::AppState;
use crate::auth::api_keys::{Scope, Scopes};
use crate::auth::transport;
use axum::extract::{Path, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{Map, Value};

pub(crate) fn routes() -> Router<AppState> {
    Router::new().route("/centrifugo/api/{method}", post(call)).layer(axum::middleware::from_fn(record))
}

/// The methods of Centrifugo's server API that wsguard answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, utoipa::ToSchema)]
#[schema(as = CentrifugoMethod, rename_all = "snake_case")]
pub(super) enum Method {
    Publish,
    Broadcast,
    Subscribe,
    Unsubscribe,
    Disconnect,
    Refresh,
    Presence,
    PresenceStats,
    History,
    HistoryRemove,
    Channels,
    Info,
    Batch,
    InvalidateUserTokens,
}

impl Method {
    const ALL: [Method; 14] = [
        Method::Publish,
        Method::Broadcast,
        Method::Subscribe,
        Method::Unsubscribe,
        Method::Disconnect,
        Method::Refresh,
        Method::Presence,
        Method::PresenceStats,
        Method::History,
        Method::HistoryRemove,
        Method::Channels,
        Method::Info,
        Method::Batch,
        Method::InvalidateUserTokens,
    ];

    /// Its name in the path and in a batch's commands.
    pub(super) fn name(self) -> &'static str {
        match self {
            Method::Publish => "publish",
            Method::Broadcast => "broadcast",
            Method::Subscribe => "subscribe",
            Method::Unsubscribe => "unsubscribe",
            Method::Disconnect => "disconnect",
            Method::Refresh => "refresh",
            Method::Presence => "presence",
            Method::PresenceStats => "presence_stats",
            Method::History => "history",
            Method::HistoryRemove => "history_remove",
            Method::Channels => "channels",
            Method::Info => "info",
            Method::Batch => "batch",
            Method::InvalidateUserTokens => "invalidate_user_tokens",
        }
    }

    pub(super) fn parse(name: &str) -> Option<Method> {
        Method::ALL.into_iter().find(|method| method.name() == name)
    }

    /// The scope the method needs; a batch's commands each need their own.
    fn scope(self) -> Option<Scope> {
        match self {
            // Deleting history changes what a channel holds, as publishing does.
            Method::Publish | Method::Broadcast | Method::HistoryRemove => Some(Scope::Publish),
            Method::Subscribe
            | Method::Unsubscribe
            | Method::Disconnect
            | Method::Refresh
            | Method::InvalidateUserTokens => Some(Scope::Disconnect),
            Method::Presence | Method::PresenceStats | Method::History | Method::Channels | Method::Info => {
                Some(Scope::Read)
            }
            Method::Batch => None,
        }
    }
}

/// One admitted request: the state, and the key's name (for logs) and scopes.
pub(super) struct Call<'a> {
    state: &'a AppState,
    key: &'a str,
    scopes: Scopes,
}

/// Call a Centrifugo server API method
///
/// The body is the method's parameters, a JSON object (any Content-Type). Methods answer HTTP 200
/// with `{"result": …}` or, refused, `{"error": {"code", "message"}}`; `batch` answers
/// `{"replies": […]}`. `subscribe`, `unsubscribe` and `refresh`, and options wsguard cannot
/// honour, answer error 108 (not available).
#[utoipa::path(post, path = "/centrifugo/api/{method}", tag = openapi::TAG, operation_id = "centrifugo_api",
    params(("method" = Method, Path, description = "The method")),
    request_body(content = Object, description = "The method's parameters",
        example = json!({"channel": "news:eu", "data": {"headline": "…"}})),
    security(("centrifugoApiKey" = [])),
    responses(
        (status = 200, body = openapi::CentrifugoAnswer, description = "The method's outcome",
            example = json!({"result": {"offset": 7, "epoch": "8c1f00aa4b2e9d11"}})),
        (status = 400, body = openapi::CentrifugoRefusal, description = "A body that is not a JSON object, or a batch whose commands cannot all be decoded: nothing ran"),
        (status = 401, body = openapi::CentrifugoRefusal, description = "No key, or not a key of this server"),
        (status = 404, body = openapi::CentrifugoRefusal, description = "No such method"),
        (status = 413, body = openapi::CentrifugoRefusal, description = "A body over `--api-max-body-bytes`"),
        (status = 429, body = openapi::CentrifugoRefusal, description = "The key's request budget is spent",
            headers(("Retry-After" = u64, description = "Seconds until the key may call again"))),
        (status = 503, body = openapi::CentrifugoRefusal, description = "The key table could not be reread lately",
            headers(("Retry-After" = u64, description = "1"))),
    ))]
async fn call(State(state): State<AppState>, Path(name): Path<String>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let presented = transport::api_key(&parts.headers).map_err(|_| CallError::NotBearer);
    let caller = match admit(&parts, &state, presented).await.and_then(|caller| {
        check_declared_length(&parts, &state)?;
        Ok(caller)
    }) {
        Ok(caller) => caller,
        Err(err) => return reply::call_refused(err),
    };
    let Some(method) = Method::parse(&name) else {
        let error = codes::METHOD_NOT_FOUND.because(format!("method not found: {name:?}"));
        return reply::refused(StatusCode::NOT_FOUND, error);
    };
    // A key without the scope learns nothing about its body.
    if let Some(scope) = method.scope().filter(|scope| !caller.scopes.contains(*scope)) {
        return reply::outcome(Err(reply::lacks(scope)));
    }
    let limit = state.config.api.api_max_body_bytes;
    let params = match read_body(Request::from_parts(parts, body), limit).await {
        Ok(body) => match object(&body) {
            Ok(params) => params,
            Err(error) => return reply::refused(StatusCode::BAD_REQUEST, error),
        },
        Err(err) => return reply::call_refused(err),
    };
    let call = Call { state: &state, key: &caller.name, scopes: caller.scopes };
    if method == Method::Batch {
        return match batch::batch(&call, params).await {
            Ok(replies) => Json(replies).into_response(),
            Err(error) => reply::refused(StatusCode::BAD_REQUEST, error),
        };
    }
    reply::outcome(run(&call, method, params).await)
}

/// The body as a JSON object; an empty body is `{}` (as `info` may be sent). Any Content-Type:
/// Centrifugo reads the body as JSON whatever it is labelled.
fn object(body: &[u8]) -> Result<Value, Error> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Value::Object(Map::new()));
    }
    match serde_json::from_slice(body) {
        Ok(object @ Value::Object(_)) => Ok(object),
        Ok(_) => Err(reply::bad_request("bad request: the body must be a JSON object")),
        Err(e) => Err(reply::bad_request(format!("bad request: invalid JSON: {e}"))),
    }
}

/// Runs one method that is not a batch, once its scope is checked.
pub(super) async fn run(call: &Call<'_>, method: Method, params: Value) -> Result<Value, Error> {
    if let Some(scope) = method.scope().filter(|scope| !call.scopes.contains(*scope)) {
        return Err(reply::lacks(scope));
    }
    match method {
        Method::Publish => publish::publish(call, params).await,
        Method::Broadcast => publish::broadcast(call, params).await,
        Method::Subscribe => users::subscribe(call, params).await,
        Method::Unsubscribe => users::unsubscribe(call, params).await,
        Method::Disconnect => users::disconnect(call, params).await,
        Method::Refresh => users::refresh(call, params).await,
        Method::InvalidateUserTokens => users::invalidate_user_tokens(call, params).await,
        Method::Presence => channels::presence(call, params).await,
        Method::PresenceStats => channels::presence_stats(call, params).await,
        Method::Channels => channels::channels(call, params).await,
        Method::Info => channels::info(call, params).await,
        Method::History => history::history(call, params).await,
        Method::HistoryRemove => history::history_remove(call, params).await,
        Method::Batch => Err(codes::METHOD_NOT_FOUND.because("method not found: a batch holds no batch")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_method_has_one_name_and_a_scope_but_batch() {
        for method in Method::ALL {
            assert_eq!(Method::parse(method.name()), Some(method));
            assert_eq!(method.scope().is_none(), method == Method::Batch, "{method:?}");
        }
        assert_eq!(Method::parse("Publish"), None, "names are exact");
        assert_eq!(Method::parse("connections"), None, "Centrifugo PRO's are not here");
    }

    #[test]
    fn bodies_must_be_json_objects() {
        assert_eq!(object(b"").unwrap(), serde_json::json!({}));
        assert_eq!(object(b" {\"a\":1} ").unwrap(), serde_json::json!({"a": 1}));
        for bad in [&b"[]"[..], b"5", b"{", b"null", b"\xff"] {
            assert_eq!(object(bad).unwrap_err().code, 107, "{bad:?}");
        }
    }
}
