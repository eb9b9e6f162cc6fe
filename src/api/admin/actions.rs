//! The console's actions on channels and users: publish, disconnect a user, revoke a user's
//! tokens. Each is checked, then audited, then done: a refused request leaves no entry, an
//! action that could not be audited is not done.

use super::caller::Admin;
use crate::api::body::ApiBody;
use crate::api::params::{ApiPath, NotAUsername, UserPath};
use crate::api::publish::PublishRefusal;
use crate::api::CallError;
use crate::app::AppState;
use crate::auth::logins;
use crate::channels::Publisher;
use crate::http::error::ErrorBody;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"channel": "general", "data": {"text": "Maintenance at 18:00"}}))]
pub(crate) struct AdminPublish {
    /// `namespace:name`, or a room of the default namespace.
    channel: String,
    /// Any JSON value, delivered as it is (a room's chat message: `{"text": …}`).
    data: Value,
}

#[derive(Serialize, ToSchema)]
#[schema(example = json!({"offset": 18}))]
pub(crate) struct AdminPublished {
    /// The publication's offset in its channel; `null` in a namespace without history.
    offset: Option<i64>,
}

/// Publish to a channel
///
/// As `POST /api/publish` does (subscribers receive it with `"from": null`), audited.
#[utoipa::path(post, path = "/api/admin/publish", tag = super::TAG, request_body = AdminPublish,
    responses(
        (status = 200, body = AdminPublished, description = "Audited, stored (when the namespace keeps history) and sent"),
        (status = 415, body = ErrorBody, description = "Not JSON"),
        PublishRefusal,
    ))]
pub(super) async fn publish(
    Admin(actor): Admin,
    State(state): State<AppState>,
    ApiBody(request): ApiBody<AdminPublish>,
) -> Result<Json<AdminPublished>, CallError> {
    state.engine.check_publish(Publisher::Api, &request.channel, &request.data)?;
    let size = request.data.to_string().len();
    actor.record(&state, "publish", &request.channel, format!("{size} bytes of data")).await?;
    let offset =
        state.engine.publish(Publisher::Api, &request.channel, &request.data).await?.map(|at| at.offset);
    Ok(Json(AdminPublished { offset }))
}

/// Disconnect a user
///
/// As `POST /api/users/{username}/disconnect` does (their sockets close with 4003 on every node,
/// nothing is revoked), audited.
#[utoipa::path(post, path = "/api/admin/users/{username}/disconnect", tag = super::TAG,
    params(UserPath),
    responses(
        (status = 204, description = "Audited; the user's sockets are closing on every node"),
        NotAUsername,
    ))]
pub(super) async fn disconnect(
    Admin(actor): Admin,
    State(state): State<AppState>,
    ApiPath(user): ApiPath<UserPath>,
) -> Result<StatusCode, CallError> {
    let name = user.checked()?;
    actor.record(&state, "disconnect", name, String::new()).await?;
    logins::disconnect_user(state.store.as_ref(), &state.auth, name).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Revoke a user's tokens
///
/// As `POST /api/users/{username}/revoke` does (every token of the user issued until now refused,
/// their logins ended, their sockets closed on every node), audited.
#[utoipa::path(post, path = "/api/admin/users/{username}/revoke", tag = super::TAG,
    params(UserPath),
    responses(
        (status = 204, description = "Audited and revoked; the user's sockets are closing on every node"),
        NotAUsername,
    ))]
pub(super) async fn revoke(
    Admin(actor): Admin,
    State(state): State<AppState>,
    ApiPath(user): ApiPath<UserPath>,
) -> Result<StatusCode, CallError> {
    let name = user.checked()?;
    actor.record(&state, "revoke", name, String::new()).await?;
    logins::revoke_user(state.store.as_ref(), &state.auth, name).await?;
    Ok(StatusCode::NO_CONTENT)
}
