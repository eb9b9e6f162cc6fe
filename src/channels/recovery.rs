//! A channel's stored publications: where it stands, its history, and recovery. Subscribing with
//! `since` sends every publication after the client's position, exactly once and in order, or
//! says `"recovered": false` when that is no longer possible (the history window passed, the
//! epoch changed, or more is missing than one recovery sends). The socket follows the channel
//! before the store is read, so what is published meanwhile is held back and delivered after the
//! recovered ones, without a gap or a repeat.

use super::protocol::{self, ErrorCode, Refusal, Since};
use super::{unavailable, Engine};
use crate::broker::View;
use crate::store::{Position, Publication, Range, StoreError};

/// The most publications one `subscribe` recovers; beyond, `"recovered": false`.
const MAX_RECOVERED: i64 = 5000;
/// The most bytes of publication data one recovery (or gap fill) reads and sends: 5,000
/// publications of about 400 bytes, or 32 of the largest. Beyond, `"recovered": false`.
pub(super) const MAX_RECOVERED_BYTES: usize = 2 * 1024 * 1024;
/// Publications read per query: what is held beyond the byte bound is at most one page.
const PAGE: i64 = 100;

/// What a subscribe answers: recovered publications' frames, then where the channel stands.
pub(crate) struct Recovery {
    pub(crate) frames: Vec<String>,
    pub(crate) position: Option<Position>,
    /// `None` without `since`.
    pub(crate) recovered: Option<bool>,
}

impl Engine {
    /// Where `channel` stands now.
    pub(crate) async fn position(&self, channel: &str) -> Result<Option<Position>, Refusal> {
        let now = crate::clock::now_ms();
        let read = self.store.publications(channel, Range::After(i64::MAX), 0, now).await;
        Ok(read.map_err(unavailable)?.1)
    }

    /// The publications of `channel` after `since`, in `view`'s frames, if every one of them can
    /// be sent (else `recovered: false` and none).
    pub(crate) async fn recover(
        &self,
        channel: &str,
        since: &Since,
        view: View,
    ) -> Result<Recovery, Refusal> {
        if since.offset < 0 {
            return Err(Refusal::new(ErrorCode::BadRequest, "since.offset must not be negative"));
        }
        let read = self.read_after(channel, since.offset, None, MAX_RECOVERED).await.map_err(unavailable)?;
        let Read { publications, position, whole } = read;
        let first = publications.first().map(|p| p.offset);
        if !recovered(since, position.as_ref(), first, whole) {
            return Ok(Recovery { frames: Vec::new(), position, recovered: Some(false) });
        }
        let epoch = position.as_ref().map_or("", |p| p.epoch.as_str());
        let frames = publications
            .iter()
            .filter_map(|p| {
                let data = serde_json::from_str(&p.data).ok()?;
                Some(protocol::publication_frame(view, p, &data, &protocol::json(&data), epoch).to_string())
            })
            .collect();
        Ok(Recovery { frames, position, recovered: Some(true) })
    }

    /// Up to `limit` of `name`'s publications in `range` (oldest first), and where the channel
    /// stands; none in a namespace without history.
    pub(crate) async fn history(
        &self,
        name: &str,
        range: Range,
        limit: i64,
    ) -> Result<(Vec<Publication>, Option<Position>), Refusal> {
        let channel = self.resolve(name)?;
        if channel.namespace.history.is_none() {
            return Ok((Vec::new(), None));
        }
        let now = crate::clock::now_ms();
        self.store.publications(channel.name, range, limit, now).await.map_err(unavailable)
    }

    /// Deletes what `name` keeps of its history; where it stands stays, so its subscribers are
    /// not told the numbering started over. How many publications went.
    pub(crate) async fn remove_history(&self, name: &str) -> Result<u64, Refusal> {
        let channel = self.resolve(name)?;
        if channel.namespace.history.is_none() {
            return Ok(0);
        }
        self.store.remove_history(channel.name).await.map_err(unavailable)
    }

    /// `channel`'s publications after `after` (up to `upto` included, or to the channel's end), page
    /// by page, stopping short (`whole: false`) past `max` of them or [`MAX_RECOVERED_BYTES`] of
    /// data.
    pub(super) async fn read_after(
        &self,
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
            let (page, position) = self.store.publications(channel, Range::After(cursor), want, now).await?;
            let epoch_changed =
                matches!((&read.position, &position), (Some(a), Some(b)) if a.epoch != b.epoch);
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
}

/// What [`Engine::read_after`] read.
pub(super) struct Read {
    pub(super) publications: Vec<Publication>,
    /// Where the channel stood at the last page read.
    pub(super) position: Option<Position>,
    /// Every publication asked for was read: none over the bounds, no gap between pages, one
    /// epoch throughout.
    pub(super) whole: bool,
}

/// Whether a client at `since` gets every publication it missed: the channel's `position`, the
/// offset of the `first` publication read after `since`, and whether the read was `whole`.
fn recovered(since: &Since, position: Option<&Position>, first: Option<i64>, whole: bool) -> bool {
    match position {
        // Never published (or forgotten): only a client that has seen nothing is up to date.
        None => since.offset == 0,
        Some(position) => {
            // Offset 0 has seen nothing, in whatever epoch: everything from 1 is what it misses.
            let same_epoch = position.epoch == since.epoch || since.offset == 0;
            let contiguous = match first {
                Some(first) => first == since.offset + 1,
                None => position.offset == since.offset,
            };
            same_epoch && contiguous && whole
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_recovery_is_whole_only_from_an_unbroken_run_in_the_same_epoch() {
        let since = |offset: i64, epoch: &str| Since { offset, epoch: epoch.into() };
        let at = |offset: i64, epoch: &str| Some(Position { offset, epoch: epoch.into() });
        #[rustfmt::skip]
        let cases = [
            // (since, channel's position, first offset read, whole read, recovered, why)
            (since(0, ""), None, None, true, true, "nothing published, nothing seen"),
            (since(3, "e1"), None, None, true, false, "history forgotten"),
            (since(3, "e1"), at(3, "e1"), None, true, true, "up to date"),
            (since(3, "e1"), at(7, "e1"), Some(4), true, true, "4-7 missed, all read"),
            (since(3, "e1"), at(7, "e1"), Some(5), true, false, "4 expired"),
            (since(3, "e1"), at(7, "e1"), None, true, false, "4-7 expired"),
            (since(3, "e0"), at(7, "e1"), Some(4), true, false, "another epoch"),
            (since(0, "e0"), at(7, "e1"), Some(1), true, true, "seen nothing: any epoch"),
            (since(0, ""), at(7, "e1"), Some(2), true, false, "1 expired"),
            (since(3, "e1"), at(9000, "e1"), Some(4), false, false, "over the bounds"),
            (since(9, "e1"), at(7, "e1"), None, true, false, "ahead of the channel"),
        ];
        for (since, position, first, whole, expected, why) in cases {
            assert_eq!(recovered(&since, position.as_ref(), first, whole), expected, "{why}");
        }
    }
}
