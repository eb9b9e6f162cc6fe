//! The server API's user actions, on every node: close a user's sockets, or revoke the user (their
//! tokens issued until now, from every issuer, and their wsguard logins). Scope `disconnect`.

use super::caller::{ApiCaller, NeedsDisconnect};
use super::error::CallError;
use super::params::{ApiPath, NotAUsername, UserPath};
use crate::app::AppState;
use crate::auth::logins;
use axum::extract::State;
use axum::http::StatusCode;

/// Disconnect a user
///
/// Closes every socket of the user on every node with 4003, within a second. Nothing is revoked:
/// the client may reconnect with its token.
#[utoipa::path(post, path = "/api/users/{username}/disconnect", tag = super::TAG,
    params(UserPath),
    responses(
        (status = 204, description = "The user's sockets are closing on every node"),
        NotAUsername,
    ))]
pub(super) async fn disconnect(
    caller: ApiCaller<NeedsDisconnect>,
    State(state): State<AppState>,
    ApiPath(user): ApiPath<UserPath>,
) -> Result<StatusCode, CallError> {
    let name = user.checked()?;
    logins::disconnect_user(state.store.as_ref(), &state.auth, name).await?;
    tracing::info!(key = %caller.name, username = name, "user disconnected through the server API");
    Ok(StatusCode::NO_CONTENT)
}

/// Revoke a user
///
/// Refuses every token of the user issued until now, wsguard's own and trusted issuers' (tokens
/// without `iat` until the revocation expires), ends the user's wsguard logins, and closes their
/// sockets on every node with 4003, within a second. Tokens issued afterwards are admitted.
#[utoipa::path(post, path = "/api/users/{username}/revoke", tag = super::TAG,
    params(UserPath),
    responses(
        (status = 204, description = "Revoked; the user's sockets are closing on every node"),
        NotAUsername,
    ))]
pub(super) async fn revoke(
    caller: ApiCaller<NeedsDisconnect>,
    State(state): State<AppState>,
    ApiPath(user): ApiPath<UserPath>,
) -> Result<StatusCode, CallError> {
    let name = user.checked()?;
    let revoked = logins::revoke_user(state.store.as_ref(), &state.auth, name).await?;
    tracing::info!(key = %caller.name, username = name, logins = revoked.logins, "user revoked through the server API");
    Ok(StatusCode::NO_CONTENT)
}
