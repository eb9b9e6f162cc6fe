//! Subscribing with `since`: every publication after the client's position, exactly once and in
//! order, or `"recovered": false` when that is no longer possible (the history window passed, the
//! epoch changed). The socket follows the channel before the store is read, so what is published
//! meanwhile is held back and delivered after the recovered ones, without a gap or a repeat.

use super::endpoint::unavailable;
use crate::app::AppState;
use crate::broker::View;
use crate::channels::protocol::{self, ErrorCode, Refusal, Since};
use crate::channels::{self};
use crate::store::{Position, Range};

/// The most publications one `subscribe` recovers; beyond, `"recovered": false`.
pub(super) const MAX_RECOVERED: i64 = 5000;

/// What a subscribe answers: recovered publications' frames, then where the channel stands.
pub(super) struct Recovery {
    pub(super) frames: Vec<String>,
    pub(super) position: Option<Position>,
    /// `None` without `since`.
    pub(super) recovered: Option<bool>,
}

/// Where `channel` stands now.
pub(super) async fn position(state: &AppState, channel: &str) -> Result<Option<Position>, Refusal> {
    let now = channels::now_ms();
    let read = state.store.publications(channel, Range::After(i64::MAX), 0, now).await;
    Ok(read.map_err(unavailable)?.1)
}

/// The publications of `channel` after `since`, in `view`'s frames.
pub(super) async fn recover(
    state: &AppState,
    channel: &str,
    since: &Since,
    view: View,
) -> Result<Recovery, Refusal> {
    if since.offset < 0 {
        return Err(Refusal::new(ErrorCode::BadRequest, "since.offset must not be negative"));
    }
    let now = channels::now_ms();
    let read = state.store.publications(channel, Range::After(since.offset), MAX_RECOVERED + 1, now).await;
    let (publications, position) = read.map_err(unavailable)?;
    let recovered = match &position {
        // Never published (or forgotten): only a client that has seen nothing is up to date.
        None => since.offset == 0,
        Some(position) => {
            // Offset 0 has seen nothing, in whatever epoch: everything from 1 is what it misses.
            let same_epoch = position.epoch == since.epoch || since.offset == 0;
            let contiguous = match publications.first() {
                Some(first) => first.offset == since.offset + 1,
                None => position.offset == since.offset,
            };
            same_epoch && contiguous && publications.len() as i64 <= MAX_RECOVERED
        }
    };
    if !recovered {
        return Ok(Recovery { frames: Vec::new(), position, recovered: Some(false) });
    }
    let epoch = position.as_ref().map_or("", |p| p.epoch.as_str());
    let frames = publications
        .iter()
        .filter_map(|p| {
            let data = serde_json::from_str(&p.data).ok()?;
            protocol::publication(p, &data, epoch).for_view(view).map(|frame| frame.to_string())
        })
        .collect();
    Ok(Recovery { frames, position, recovered: Some(true) })
}
