//! The server API's publications: to one channel, or the same data to several. Scope `publish`.
//! A publication is acknowledged once stored (in namespaces with history), as a client's is.

use super::body::ApiBody;
use super::caller::{ApiCaller, NeedsPublish};
use super::error::CallError;
use crate::app::AppState;
use crate::channels::Publisher;
use crate::http::error::ErrorBody;
use axum::extract::State;
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use utoipa::ToSchema;

/// Most channels one broadcast reaches.
const MAX_BROADCAST_CHANNELS: usize = 100;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"channel": "user:johndoe", "data": {"text": "Your order shipped"}}))]
pub(crate) struct PublishRequest {
    /// `namespace:name`, or a room of the default namespace.
    channel: String,
    /// Any JSON value, delivered as it is.
    data: Value,
}

#[derive(Serialize, ToSchema)]
#[schema(example = json!({"offset": 18}))]
pub(crate) struct Published {
    /// The publication's offset in its channel; `null` in a namespace without history.
    offset: Option<i64>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"channels": ["news:eu", "news:us"], "data": {"headline": "…"}}))]
pub(crate) struct BroadcastRequest {
    /// 1-100 distinct channels.
    channels: Vec<String>,
    data: Value,
}

#[derive(Serialize, ToSchema)]
#[schema(example = json!({"offsets": {"news:eu": 7, "news:us": 12}}))]
pub(crate) struct Broadcast {
    offsets: BTreeMap<String, Option<i64>>,
}

/// What a publication to one channel answers when the engine refuses it, through the server API
/// or the admin API. Never built.
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)]
pub(crate) enum PublishRefusal {
    #[response(status = 422,
        description = "A malformed body, channel name or unknown namespace, or a room's chat message with an empty text or one over 4096 characters",
        example = json!({"detail": "unknown namespace \"nope\""}))]
    Invalid(ErrorBody),
}

/// Publish to a channel
///
/// Stored first where the channel's namespace keeps history, then delivered to its subscribers on
/// every node. `from` is `null` in what they receive.
#[utoipa::path(post, path = "/api/publish", tag = super::TAG, request_body = PublishRequest,
    responses(
        (status = 200, body = Published, description = "Stored (when the namespace keeps history) and sent"),
        PublishRefusal,
    ))]
pub(super) async fn publish(
    caller: ApiCaller<NeedsPublish>,
    State(state): State<AppState>,
    ApiBody(request): ApiBody<PublishRequest>,
) -> Result<Json<Published>, CallError> {
    let offset =
        state.engine.publish(Publisher::Api, &request.channel, &request.data).await?.map(|at| at.offset);
    tracing::debug!(key = %caller.name, channel = request.channel, ?offset, "published");
    Ok(Json(Published { offset }))
}

/// Publish to several channels
///
/// The same data to each channel, in the order given, stored together. Every name is checked
/// before anything is published: one bad name publishes nothing. Should the database fail, the
/// answer is 503; a channel whose publication was stored keeps it.
#[utoipa::path(post, path = "/api/broadcast", tag = super::TAG, request_body = BroadcastRequest,
    responses(
        (status = 200, body = Broadcast, description = "Each channel's offset (`null` without history)"),
        (status = 422, body = ErrorBody, description = "A malformed body, a bad or repeated channel, none or over 100",
            example = json!({"detail": "channels must hold 1-100 distinct names"})),
    ))]
pub(super) async fn broadcast(
    caller: ApiCaller<NeedsPublish>,
    State(state): State<AppState>,
    ApiBody(request): ApiBody<BroadcastRequest>,
) -> Result<Json<Broadcast>, CallError> {
    let distinct: BTreeSet<&str> = request.channels.iter().map(String::as_str).collect();
    let count = request.channels.len();
    if count == 0 || count > MAX_BROADCAST_CHANNELS || distinct.len() != count {
        return Err(CallError::invalid(format!(
            "channels must hold 1-{MAX_BROADCAST_CHANNELS} distinct names"
        )));
    }
    for name in &request.channels {
        state.engine.check_publish(Publisher::Api, name, &request.data)?;
    }
    let batch: Vec<(&str, &Value)> =
        request.channels.iter().map(|name| (name.as_str(), &request.data)).collect();
    let published = state.engine.publish_all(Publisher::Api, &batch).await;
    let mut offsets = BTreeMap::new();
    for (name, offset) in request.channels.iter().zip(published) {
        offsets.insert(name.clone(), offset?.map(|at| at.offset));
    }
    tracing::debug!(key = %caller.name, channels = count, "broadcast");
    Ok(Json(Broadcast { offsets }))
}
