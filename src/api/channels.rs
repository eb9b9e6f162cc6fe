//! The server API's channel reads: which channels have sockets in them, across every node, and
//! who is in one. Scope `read`.

use super::caller::{ApiCaller, NeedsRead};
use super::error::CallError;
use super::params::{ApiPath, ChannelPath};
use crate::app::AppState;
use crate::http::error::ErrorBody;
use axum::extract::State;
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

/// One channel and how many sockets are subscribed to it on every node together.
#[derive(Serialize, ToSchema)]
pub(crate) struct ChannelSubscribers {
    channel: String,
    subscribers: u64,
}

/// Channels with at least one subscribed socket, by name.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"channels": [{"channel": "general", "subscribers": 3}, {"channel": "ops", "subscribers": 1}]}))]
pub(crate) struct ChannelList {
    channels: Vec<ChannelSubscribers>,
}

/// The users with at least one socket in the channel, on any node, sorted.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"users": ["janedoe", "johndoe"]}))]
pub(crate) struct ChannelPresence {
    users: Vec<String>,
}

/// Channels and their subscribers
///
/// Every channel with a subscribed socket on any node of the cluster, and the number of such
/// sockets (a user with two tabs counts twice).
#[utoipa::path(get, path = "/api/channels", tag = super::TAG,
    responses((status = 200, body = ChannelList, description = "Channels by name")))]
pub(super) async fn list(
    _: ApiCaller<NeedsRead>,
    State(state): State<AppState>,
) -> Result<Json<ChannelList>, CallError> {
    let counts = state.engine.channels().await?;
    let channels = counts
        .into_iter()
        .map(|(channel, subscribers)| ChannelSubscribers { channel, subscribers })
        .collect();
    Ok(Json(ChannelList { channels }))
}

/// Who is in a channel
///
/// The users with at least one socket subscribed to the channel, on any node.
#[utoipa::path(get, path = "/api/channels/{channel}/presence", tag = super::TAG,
    params(ChannelPath),
    responses(
        (status = 200, body = ChannelPresence, description = "Users by name"),
        (status = 422, body = ErrorBody, description = "Not a channel name, an unknown namespace, or a namespace without presence",
            example = json!({"detail": "presence is off in namespace \"news\""})),
    ))]
pub(super) async fn presence(
    _: ApiCaller<NeedsRead>,
    State(state): State<AppState>,
    ApiPath(ChannelPath { channel }): ApiPath<ChannelPath>,
) -> Result<Json<ChannelPresence>, CallError> {
    let users = state.engine.presence(&channel).await?.into_iter().collect();
    Ok(Json(ChannelPresence { users }))
}
