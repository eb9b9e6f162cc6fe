//! The user's own resources.

use super::error::{ApiError, ErrorBody};
use super::extract::{ApiJson, CurrentUser, FreshUser};
use crate::app::AppState;
use crate::auth::credentials::check_password;
use crate::auth::logins::Logins;
use crate::store::UserRecord;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A user as the API shows it: never the password hash.
#[derive(Serialize, ToSchema)]
pub(crate) struct PublicUser {
    username: String,
    email: Option<String>,
    full_name: Option<String>,
    disabled: bool,
}

impl From<&UserRecord> for PublicUser {
    fn from(user: &UserRecord) -> Self {
        PublicUser {
            username: user.username.clone(),
            email: user.email.clone(),
            full_name: user.full_name.clone(),
            disabled: user.disabled,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub(crate) struct Item {
    item_id: &'static str,
    owner: String,
}

#[derive(Deserialize, ToSchema)]
pub(crate) struct NewPassword {
    new_password: String,
}

/// The current user
///
/// For a trusted issuer's token, the username it names and nothing else (`email` and `full_name`
/// null, `disabled` false): such a token never reads a database row.
#[utoipa::path(get, path = "/users/me", tag = "users",
    responses(
        (status = 200, body = PublicUser),
        (status = 401, body = ErrorBody, description = "Not authenticated or invalid token"),
    ),
    security(("bearer" = [])))]
pub(crate) async fn me(CurrentUser(identity): CurrentUser) -> Json<PublicUser> {
    Json(identity.user.as_ref().into())
}

/// The current user's items
#[utoipa::path(get, path = "/items/", tag = "users",
    responses(
        (status = 200, body = [Item]),
        (status = 401, body = ErrorBody, description = "Not authenticated"),
    ),
    security(("bearer" = [])))]
pub(crate) async fn items(CurrentUser(identity): CurrentUser) -> Json<Vec<Item>> {
    Json(vec![Item { item_id: "Foo", owner: identity.user.username.clone() }])
}

/// Change the password
///
/// Needs a fresh access token (from a password login, not a refresh). Every existing login of the
/// user is revoked, this one included, and their sockets are closed.
#[utoipa::path(put, path = "/users/me/password", tag = "users", request_body = NewPassword,
    responses(
        (status = 204, description = "Password changed; log in again"),
        (status = 401, body = ErrorBody, description = "Not authenticated, the token is not fresh, or a trusted issuer's token"),
        (status = 413, body = ErrorBody, description = "Body too large"),
        (status = 415, body = ErrorBody, description = "Not JSON"),
        (status = 422, body = ErrorBody, description = "Unacceptable password or malformed body"),
        (status = 503, body = ErrorBody, description = "Too many password hashes in progress"),
    ),
    security(("bearer" = [])))]
pub(crate) async fn change_password(
    State(state): State<AppState>,
    FreshUser(identity): FreshUser,
    ApiJson(body): ApiJson<NewPassword>,
) -> Result<StatusCode, ApiError> {
    check_password(&body.new_password).map_err(ApiError::unprocessable)?;
    let hash = state.hasher.hash(body.new_password).await?;
    Logins::new(state.store.as_ref(), &state.auth).change_password(&identity.user.username, &hash).await?;
    Ok(StatusCode::NO_CONTENT)
}
