//! What the hub hands a socket, put in order per channel before it is sent: a numbered
//! publication the socket already has is dropped, one that arrives ahead of a missing one (another
//! node's publication still on its way, or a fan-out that failed) makes the socket fetch the
//! missing ones from the store first. Every stored publication is committed before it is fanned
//! out, so what a later one's arrival says is missing is always there to fetch.

use super::endpoint::{ChannelSocket, Following};
use crate::broker::{Delivery, View};
use crate::channels::{self, protocol};
use crate::store::{Position, Range};
use std::sync::Arc;

/// The most missing publications a socket fetches at once; a larger gap closes the socket (1013)
/// so that its client resubscribes with `since`.
const MAX_FILL: i64 = 1000;

/// How far a socket has delivered a numbered channel: the last offset, in which epoch (`""`:
/// none yet).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Cursor {
    pub(super) offset: i64,
    pub(super) epoch: String,
}

impl From<Option<Position>> for Cursor {
    fn from(position: Option<Position>) -> Cursor {
        position.map_or_else(Cursor::default, |p| Cursor { offset: p.offset, epoch: p.epoch })
    }
}

/// Why a delivery could not be put in order.
pub(super) struct Gap;

impl ChannelSocket {
    /// The frames to send for `delivery`, in order: none for one already delivered or for a
    /// channel no longer followed.
    pub(super) async fn sequence(&mut self, delivery: Delivery) -> Result<Vec<Arc<str>>, Gap> {
        let Some(Following { view, cursor, .. }) = self.following.get_mut(delivery.channel.as_ref()) else {
            return Ok(Vec::new());
        };
        let (Some(numbered), Some(cursor)) = (&delivery.numbered, cursor.as_mut()) else {
            return Ok(vec![delivery.frame]);
        };
        if cursor.epoch != numbered.epoch.as_ref() {
            // A new epoch (or the first publication seen): its numbering starts over.
            if !cursor.epoch.is_empty() {
                cursor.offset = 0;
            }
            cursor.epoch = numbered.epoch.to_string();
        }
        if numbered.offset <= cursor.offset {
            return Ok(Vec::new());
        }
        let (view, after) = (*view, cursor.offset);
        let mut frames = Vec::new();
        if numbered.offset > after + 1 {
            frames = self.fill(&delivery.channel, view, after, numbered.offset, &numbered.epoch).await?;
        }
        frames.push(delivery.frame);
        if let Some(Following { cursor: Some(cursor), .. }) =
            self.following.get_mut(delivery.channel.as_ref())
        {
            cursor.offset = numbered.offset;
        }
        Ok(frames)
    }

    /// The stored publications of `channel` after `after` and before `before`, in `view`'s frames.
    async fn fill(
        &self,
        channel: &str,
        view: View,
        after: i64,
        before: i64,
        epoch: &str,
    ) -> Result<Vec<Arc<str>>, Gap> {
        let missing = before - after - 1;
        if missing > MAX_FILL {
            return Err(Gap);
        }
        let now = channels::now_ms();
        let read = self.state.store.publications(channel, Range::After(after), missing, now).await;
        let (publications, _) = read.map_err(|err| {
            tracing::warn!(error = %err, channel, "cannot fetch missed publications");
            Gap
        })?;
        // A publication that expired in between cannot be delivered: the client must recover.
        if publications.len() as i64 != missing || publications.first().is_some_and(|p| p.offset != after + 1)
        {
            return Err(Gap);
        }
        Ok(publications
            .iter()
            .filter_map(|p| {
                let data = serde_json::from_str(&p.data).ok()?;
                protocol::publication(p, &data, epoch).for_view(view).cloned()
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_starts_where_the_channel_stands() {
        assert_eq!(Cursor::from(None), Cursor { offset: 0, epoch: String::new() });
        let position = Position { offset: 7, epoch: "e1".into() };
        assert_eq!(Cursor::from(Some(position)), Cursor { offset: 7, epoch: "e1".into() });
    }
}
