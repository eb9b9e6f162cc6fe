//! Channels as the console shows them: every channel with subscribers across the cluster, and one
//! channel at a time with its presence and recent history.

use super::caller::Admin;
use crate::api::history;
use crate::api::params::{self, ApiPath, ApiQuery, ChannelPath};
use crate::api::CallError;
use crate::app::AppState;
use crate::http::error::ErrorBody;
use crate::store::Range;
use axum::extract::State;
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

const DEFAULT_HISTORY: i64 = 20;
const MAX_HISTORY: i64 = 100;

/// A channel with subscribed sockets.
#[derive(Serialize, ToSchema)]
pub(crate) struct ChannelRow {
    channel: String,
    /// Subscribed sockets on every node.
    subscribers: u64,
    /// Whether its namespace tracks presence (who is in it).
    presence: bool,
}

#[derive(Serialize, ToSchema)]
#[schema(example = json!({"channels": [{"channel": "general", "subscribers": 3, "presence": true}]}))]
pub(crate) struct ChannelRows {
    channels: Vec<ChannelRow>,
}

/// Channels
///
/// Every channel with a subscribed socket on any node, by name, with its subscribers.
#[utoipa::path(get, path = "/api/admin/channels", tag = super::TAG,
    responses((status = 200, body = ChannelRows, description = "Channels by name")))]
pub(super) async fn list(_: Admin, State(state): State<AppState>) -> Result<Json<ChannelRows>, CallError> {
    let engine = &state.engine;
    let channels = engine
        .channels()
        .await?
        .into_iter()
        .map(|(channel, subscribers)| {
            let presence = engine.tracks_presence(&channel);
            ChannelRow { channel, subscribers, presence }
        })
        .collect();
    Ok(Json(ChannelRows { channels }))
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct ChannelQuery {
    /// Newest publications shown, 1-100 (default 20).
    #[param(minimum = 1, maximum = 100)]
    limit: Option<i64>,
}

/// One channel now.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"channel": "general", "subscribers": 2, "presence": ["janedoe", "johndoe"],
    "epoch": "8c1f00aa4b2e9d11", "publications": [{"type": "publication", "channel": "general", "offset": 7,
    "data": {"text": "hi"}, "from": "johndoe", "ts": "2026-11-30T05:00:00.120Z"}]}))]
pub(crate) struct ChannelDetail {
    channel: String,
    /// Subscribed sockets on every node.
    subscribers: u64,
    /// Users with a socket in it on any node, sorted; `null` in a namespace without presence.
    presence: Option<Vec<String>>,
    /// `""` for a channel that never published or keeps no history.
    epoch: String,
    /// The newest, oldest first, as `publication` frames.
    publications: Vec<Value>,
}

/// One channel
///
/// Its subscribers and presence on every node, and its newest publications.
#[utoipa::path(get, path = "/api/admin/channels/{channel}", tag = super::TAG,
    params(ChannelPath, ChannelQuery),
    responses(
        (status = 200, body = ChannelDetail, description = "The channel now"),
        (status = 422, body = ErrorBody, description = "Not a channel name, an unknown namespace, or a bad limit",
            example = json!({"detail": "unknown namespace \"nope\""})),
    ))]
pub(super) async fn detail(
    _: Admin,
    State(state): State<AppState>,
    ApiPath(ChannelPath { channel }): ApiPath<ChannelPath>,
    ApiQuery(query): ApiQuery<ChannelQuery>,
) -> Result<Json<ChannelDetail>, CallError> {
    let engine = &state.engine;
    engine.resolve(&channel)?;
    let limit = params::limit(query.limit, DEFAULT_HISTORY, MAX_HISTORY)?;
    let subscribers = engine.channels().await?.get(&channel).copied().unwrap_or(0);
    let presence = match engine.tracks_presence(&channel) {
        true => Some(engine.presence(&channel).await?.into_iter().collect()),
        false => None,
    };
    let (stored, position) = engine.history(&channel, Range::Before(i64::MAX), limit).await?;
    let publications = history::frames(&stored);
    let epoch = position.map(|p| p.epoch).unwrap_or_default();
    Ok(Json(ChannelDetail { channel, subscribers, presence, epoch, publications }))
}
