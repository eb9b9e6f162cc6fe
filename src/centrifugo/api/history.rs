//! `history` and `history_remove`: a channel's stored publications, in the same numbering as
//! wsguard's own history and sockets. `history` needs scope `read`; `history_remove` deletes
//! what a channel holds, and needs `publish`.

use super::super::codes::{self, Error};
use super::params::{channel_param, channel_refusal, channel_with, decode, Feature};
use super::reply::bad_request;
use super::Call;
use crate::store::{Position, Publication, Range};
use serde::Deserialize;
use serde_json::{json, Map, Value};

/// Most publications one call answers; a larger `limit`, or `-1` (all), gets this many.
const MAX_LIMIT: i64 = 1000;

#[derive(Deserialize)]
struct HistoryParams {
    channel: String,
    /// Absent or 0: where the channel stands, no publications (as Centrifugo answers).
    limit: Option<i64>,
    since: Option<StreamPosition>,
    #[serde(default)]
    reverse: bool,
}

/// A position a client has seen, as Centrifugo's SDKs send it.
#[derive(Deserialize)]
struct StreamPosition {
    #[serde(default)]
    offset: i64,
    #[serde(default)]
    epoch: String,
}

/// How many publications to read: `None` for none.
fn limit(limit: Option<i64>) -> Result<Option<i64>, Error> {
    match limit.unwrap_or(0) {
        0 => Ok(None),
        -1 => Ok(Some(MAX_LIMIT)),
        n if n < 0 => Err(bad_request("bad request: limit must be -1 (all), 0 or more")),
        n => Ok(Some(n.min(MAX_LIMIT))),
    }
}

/// Which publications to read: from the oldest kept, or after `since`; `reverse`, from the newest,
/// or before `since`.
fn range(since: Option<&StreamPosition>, reverse: bool) -> Range {
    match (since, reverse) {
        (None, false) => Range::After(0),
        (None, true) => Range::Before(i64::MAX),
        (Some(since), false) => Range::After(since.offset),
        (Some(since), true) => Range::Before(since.offset),
    }
}

/// Whether a client at `since` and the channel now at `position` count in the same epoch: a
/// channel that never published (or lost its history) is in none, which only the start matches.
fn same_epoch(since: &StreamPosition, position: Option<&Position>) -> bool {
    match position {
        Some(position) => since.epoch == position.epoch,
        None => since.epoch.is_empty() && since.offset == 0,
    }
}

/// A stored publication as Centrifugo's: its data and offset, and for one a user published from
/// a socket, `info` naming the user (see `channels` for why `client` is the user too).
fn publication(publication: &Publication) -> Option<Value> {
    let data: Value = serde_json::from_str(&publication.data).ok()?;
    let mut item = json!({ "data": data, "offset": publication.offset });
    if let Some(user) = &publication.sender {
        item["info"] = json!({ "client": user, "user": user });
    }
    Some(item)
}

pub(super) async fn history(call: &Call<'_>, params: Value) -> Result<Value, Error> {
    let request: HistoryParams = decode("history", params)?;
    let name = request.channel.as_str();
    channel_with(&call.state.engine, name, Feature::History)?;
    let limit = limit(request.limit)?;
    if request.since.as_ref().is_some_and(|since| since.offset < 0) {
        return Err(bad_request("bad request: since.offset must not be negative"));
    }
    let engine = &call.state.engine;
    let refused = |refused| channel_refusal(engine, name, refused);
    let (mut publications, position) = match limit {
        Some(limit) => engine
            .history(name, range(request.since.as_ref(), request.reverse), limit)
            .await
            .map_err(refused)?,
        None => (Vec::new(), engine.position(name).await.map_err(refused)?),
    };
    if let Some(since) = &request.since {
        if !same_epoch(since, position.as_ref()) {
            return Err(codes::UNRECOVERABLE_POSITION.because(
                "unrecoverable position: the channel's epoch is not since.epoch; read from the start",
            ));
        }
    }
    // The store answers oldest first.
    if request.reverse {
        publications.reverse();
    }
    let publications: Vec<Value> = publications.iter().filter_map(publication).collect();
    let (offset, epoch) = position.map_or((0, String::new()), |p| (p.offset, p.epoch));
    Ok(json!({ "publications": publications, "offset": offset, "epoch": epoch }))
}

/// Deletes the channel's stored publications; where it stands (offset, epoch) is kept, so its
/// subscribers are not told its numbering started over.
pub(super) async fn history_remove(call: &Call<'_>, params: Value) -> Result<Value, Error> {
    let engine = &call.state.engine;
    let name = channel_param(engine, "history_remove", params, Feature::History)?;
    let removed =
        engine.remove_history(&name).await.map_err(|refused| channel_refusal(engine, &name, refused))?;
    tracing::info!(key = call.key, channel = name, removed, "history removed through the centrifugo API");
    Ok(Value::Object(Map::new()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_follow_centrifugo_within_wsguards_bound() {
        assert_eq!(limit(None).unwrap(), None, "position only");
        assert_eq!(limit(Some(0)).unwrap(), None);
        assert_eq!(limit(Some(5)).unwrap(), Some(5));
        assert_eq!(limit(Some(-1)).unwrap(), Some(MAX_LIMIT));
        assert_eq!(limit(Some(MAX_LIMIT + 1)).unwrap(), Some(MAX_LIMIT));
        assert_eq!(limit(Some(-2)).unwrap_err().code, 107);
    }

    #[test]
    fn ranges_and_epochs() {
        let since = |offset: i64, epoch: &str| StreamPosition { offset, epoch: epoch.into() };
        assert_eq!(range(None, false), Range::After(0));
        assert_eq!(range(None, true), Range::Before(i64::MAX));
        assert_eq!(range(Some(&since(4, "e")), false), Range::After(4));
        assert_eq!(range(Some(&since(4, "e")), true), Range::Before(4));
        let at = Position { offset: 9, epoch: "e".into() };
        assert!(same_epoch(&since(4, "e"), Some(&at)));
        assert!(!same_epoch(&since(4, "x"), Some(&at)));
        assert!(!same_epoch(&since(0, ""), Some(&at)), "Centrifugo compares epochs, offset 0 too");
        assert!(same_epoch(&since(0, ""), None), "nothing published, nothing seen");
        assert!(!same_epoch(&since(3, "e"), None), "history gone");
    }
}
