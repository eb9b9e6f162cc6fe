//! A channel's history through the server API: the newest publications, or those after an
//! offset (what a backend, or a client it serves, missed). Scope `read`.

use super::caller::{ApiCaller, NeedsRead};
use super::error::CallError;
use super::params::{self, ApiPath, ApiQuery, ChannelPath};
use crate::app::AppState;
use crate::channels::protocol;
use crate::http::error::ErrorBody;
use crate::store::{Publication, Range};
use axum::extract::State;
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

const DEFAULT_LIMIT: i64 = 50;
const MAX_LIMIT: i64 = 1000;

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct HistoryQuery {
    /// Publications at most, 1-1000 (default 50).
    limit: Option<i64>,
    /// Only those with an offset above this, oldest first; without it, the newest.
    since: Option<i64>,
}

#[derive(Serialize, ToSchema)]
#[schema(example = json!({"publications": [{"type": "publication", "channel": "user:johndoe", "offset": 7,
    "data": {"text": "Your order shipped"}, "from": null, "ts": "2026-11-30T05:00:00.120Z"}], "epoch": "8c1f00aa4b2e9d11"}))]
pub(crate) struct History {
    /// Oldest first, as `publication` frames.
    publications: Vec<Value>,
    /// The channel's epoch; `""` for a channel that never published or keeps no history.
    epoch: String,
}

/// A channel's history
///
/// Without `since`, the newest `limit` publications; with it, up to `limit` of those after that
/// offset. Both oldest first. A channel that never published, or a namespace without history,
/// has none.
#[utoipa::path(get, path = "/api/channels/{channel}/history", tag = super::TAG,
    params(ChannelPath, HistoryQuery),
    responses(
        (status = 200, body = History, description = "Publications, oldest first"),
        (status = 422, body = ErrorBody, description = "Not a channel name, an unknown namespace, or a bad limit or since",
            example = json!({"detail": "limit must be 1-1000"})),
    ))]
pub(super) async fn history(
    _: ApiCaller<NeedsRead>,
    State(state): State<AppState>,
    ApiPath(ChannelPath { channel }): ApiPath<ChannelPath>,
    ApiQuery(query): ApiQuery<HistoryQuery>,
) -> Result<Json<History>, CallError> {
    state.engine.resolve(&channel)?;
    let limit = params::limit(query.limit, DEFAULT_LIMIT, MAX_LIMIT)?;
    let range = match query.since {
        Some(since) if since < 0 => return Err(CallError::invalid("since must not be negative")),
        Some(since) => Range::After(since),
        None => Range::Before(i64::MAX),
    };
    let (stored, position) = state.engine.history(&channel, range, limit).await?;
    let publications = frames(&stored);
    Ok(Json(History { publications, epoch: position.map(|p| p.epoch).unwrap_or_default() }))
}

/// Stored publications as `publication` frames, in their order; one whose data no longer parses
/// is left out.
pub(crate) fn frames(stored: &[Publication]) -> Vec<Value> {
    stored
        .iter()
        .filter_map(|p| Some(protocol::publication_value(p, &serde_json::from_str(&p.data).ok()?)))
        .collect()
}
