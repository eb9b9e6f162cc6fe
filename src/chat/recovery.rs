//! Subscribing with `since`: every publication after the client's position, exactly once and in
//! order, or `"recovered": false` when that is no longer possible (the history window passed, the
//! epoch changed, or more is missing than one recovery sends). The socket follows the channel
//! before the store is read, so what is published meanwhile is held back and delivered after the
//! recovered ones, without a gap or a repeat.

use super::endpoint::unavailable;
use crate::app::AppState;
use crate::broker::View;
use crate::channels::protocol::{self, ErrorCode, Refusal, Since};
use crate::store::{Position, Publication, Range, StoreError};

/// The most publications one `subscribe` recovers; beyond, `"recovered": false`.
pub(super) const MAX_RECOVERED: i64 = 5000;
/// The most bytes of publication data one recovery (or gap fill) reads and sends: 5,000
/// publications of about 400 bytes, or 32 of the largest. Beyond, `"recovered": false`.
pub(super) const MAX_RECOVERED_BYTES: usize = 2 * 1024 * 1024;
/// Publications read per query: what is held beyond the byte bound is at most one page.
const PAGE: i64 = 100;

/// What a subscribe answers: recovered publications' frames, then where the channel stands.
pub(super) struct Recovery {
    pub(super) frames: Vec<String>,
    pub(super) position: Option<Position>,
    /// `None` without `since`.
    pub(super) recovered: Option<bool>,
}

/// Where `channel` stands now.
pub(super) async fn position(state: &AppState, channel: &str) -> Result<Option<Position>, Refusal> {
    let now = crate::clock::now_ms();
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
    let read = read_after(state, channel, since.offset, None, MAX_RECOVERED).await.map_err(unavailable)?;
    let Read { publications, position, whole } = read;
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
            same_epoch && contiguous && whole
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

/// What [`read_after`] read.
pub(super) struct Read {
    pub(super) publications: Vec<Publication>,
    /// Where the channel stood at the last page read.
    pub(super) position: Option<Position>,
    /// Every publication asked for was read: none over the bounds, no gap between pages, one
    /// epoch throughout.
    pub(super) whole: bool,
}

/// `channel`'s publications after `after` (up to `upto` included, or to the channel's end), page
/// by page, stopping short (`whole: false`) past `max` of them or [`MAX_RECOVERED_BYTES`] of
/// data.
pub(super) async fn read_after(
    state: &AppState,
    channel: &str,
    after: i64,
    upto: Option<i64>,
    max: i64,
) -> Result<Read, StoreError> {
    let now = crate::clock::now_ms();
    let mut read = Read { publications: Vec::new(), position: None, whole: true };
    let (mut cursor, mut bytes) = (after, 0);
    loop {
        let want = upto.map_or(PAGE, |upto| (upto - cursor).min(PAGE));
        if want <= 0 {
            return Ok(read);
        }
        let (page, position) = state.store.publications(channel, Range::After(cursor), want, now).await?;
        let epoch_changed = matches!((&read.position, &position), (Some(a), Some(b)) if a.epoch != b.epoch);
        let gap = cursor != after && page.first().is_some_and(|first| first.offset != cursor + 1);
        read.position = position;
        if epoch_changed || gap {
            read.whole = false;
            return Ok(read);
        }
        let ended = (page.len() as i64) < want;
        for publication in page {
            bytes += publication.data.len();
            cursor = publication.offset;
            read.publications.push(publication);
            if read.publications.len() as i64 > max || bytes > MAX_RECOVERED_BYTES {
                read.whole = false;
                return Ok(read);
            }
        }
        if ended {
            return Ok(read);
        }
    }
}
