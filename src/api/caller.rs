//! [`ApiCaller`]: the extractor every server-API endpoint starts with. It finds the key in
//! `Authorization: Bearer <key>`, checks it against the key table, takes one request from the key's
//! budget and checks the scope the endpoint names in its type: `ApiCaller<NeedsRead>`. It runs
//! before any body is read, so a caller without the key or the scope learns nothing about a body.

use super::calls::CallSlot;
use super::error::CallError;
use crate::app::AppState;
use crate::auth::api_keys::{Caller, Scope};
use crate::auth::transport;
use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;
use std::marker::PhantomData;
use std::sync::Arc;

/// The scope an endpoint needs, named by a marker type.
pub(crate) trait NeedsScope {
    const SCOPE: Scope;
}

/// `publish`: publish and broadcast.
pub(crate) struct NeedsPublish;
/// `disconnect`: disconnect users, revoke their tokens.
pub(crate) struct NeedsDisconnect;
/// `read`: channels, presence, history.
pub(crate) struct NeedsRead;
/// `admin`: the admin API.
pub(crate) struct NeedsAdmin;

impl NeedsScope for NeedsPublish {
    const SCOPE: Scope = Scope::Publish;
}
impl NeedsScope for NeedsDisconnect {
    const SCOPE: Scope = Scope::Disconnect;
}
impl NeedsScope for NeedsRead {
    const SCOPE: Scope = Scope::Read;
}
impl NeedsScope for NeedsAdmin {
    const SCOPE: Scope = Scope::Admin;
}

/// An authenticated caller of the server API holding scope `S`: the key's name (for logs and
/// metrics; never the key).
pub(crate) struct ApiCaller<S> {
    pub(crate) name: Arc<str>,
    needs: PhantomData<fn() -> S>,
}

impl<S: NeedsScope> FromRequestParts<AppState> for ApiCaller<S> {
    type Rejection = CallError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, CallError> {
        // Keys come in the `Authorization` header only: never in a URL (logged by proxies) or a
        // cookie.
        let presented = transport::bearer_header(&parts.headers).map_err(|_| CallError::NotBearer);
        let caller = admit(parts, state, presented).await?;
        if !caller.scopes.contains(S::SCOPE) {
            return Err(CallError::Scope(S::SCOPE));
        }
        check_declared_length(parts, state)?;
        Ok(ApiCaller { name: caller.name, needs: PhantomData })
    }
}

/// The caller whose key was `presented` (`Ok(None)`: no key), with one request taken from the
/// key's budget; every server API, wsguard's and Centrifugo's, admits its callers here. The call
/// is logged and counted under the key's name from then on.
pub(crate) async fn admit(
    parts: &Parts,
    state: &AppState,
    presented: Result<Option<&str>, CallError>,
) -> Result<Caller, CallError> {
    let slot = parts.extensions.get::<CallSlot>().cloned().unwrap_or_default();
    slot.count_in(state.metrics.clone());
    let caller = identify(state, presented).await?;
    slot.name(caller.name.clone());
    if let Err(wait) = state.api_budgets.take(&caller.name) {
        return Err(CallError::RateLimited { retry_after_secs: wait.as_secs_f64().ceil() as u64 });
    }
    Ok(caller)
}

/// No endpoint takes a body over the limit: one declared as such is refused whatever the
/// endpoint (the body readers also stop reading one that turns out longer than declared).
pub(crate) fn check_declared_length(parts: &Parts, state: &AppState) -> Result<(), CallError> {
    let limit = state.config.api.api_max_body_bytes;
    if declared_length(parts).is_some_and(|length| length > limit as u64) {
        return Err(CallError::too_large(limit));
    }
    Ok(())
}

fn declared_length(parts: &Parts) -> Option<u64> {
    parts.headers.get(header::CONTENT_LENGTH)?.to_str().ok()?.trim().parse().ok()
}

/// The key's caller. Every presented key is hashed and compared with every stored one in constant
/// time, and an unknown key gets the same answer whatever it resembles: a refusal tells neither
/// whether a name exists nor how close a guess came.
/// A key added a moment ago (the CLI, on any node) is found too: a miss rereads the table.
async fn identify(state: &AppState, presented: Result<Option<&str>, CallError>) -> Result<Caller, CallError> {
    let presented = presented?.ok_or(CallError::NoKey)?;
    let found = state.api_keys.find_fresh(presented, state.store.as_ref()).await;
    found.map_err(|_| CallError::KeysUnavailable)?.ok_or(CallError::BadKey)
}
