//! What the hub hands a socket, put in order per channel before it is sent: a numbered
//! publication the socket already has is dropped, one that arrives ahead of a missing one (another
//! node's publication still on its way, or a fan-out that failed) makes the socket fetch the
//! missing ones from the store first. Every stored publication is committed before it is fanned
//! out, so what a later one's arrival says is missing is always there to fetch.
//!
//! The common case, the next publication in order, is decided without waiting and sends the
//! event's shared frame as it is: nothing is allocated or copied per socket.

use super::endpoint::{ChannelSocket, Following};
use super::recovery::{self, Read};
use crate::app::AppState;
use crate::broker::{Delivery, Utf8Bytes, View};
use crate::channels::protocol;
use crate::store::Position;
use tokio_util::task::AbortOnDropHandle;

/// The most missing publications a socket fetches at once (and at most
/// [`recovery::MAX_RECOVERED_BYTES`] of them); a larger gap closes the socket (1013) so that its
/// client resubscribes with `since`.
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

/// What to do with a delivery, decided without waiting.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Next {
    /// Send this frame now.
    Send(Utf8Bytes),
    /// Nothing to send: delivered already, or a channel no longer followed.
    Skip,
    /// Publications before it are missing, those after `after` in `view`: fetch them first
    /// ([`ChannelSocket::fill_waiting`]).
    Fill { view: View, after: i64 },
}

/// Why a delivery could not be put in order.
#[derive(Debug)]
pub(super) struct Gap;

impl ChannelSocket {
    /// Puts `delivery` in order; moves the channel's cursor when it is sent now.
    pub(super) fn sequence(&mut self, delivery: &Delivery) -> Next {
        let Some(frame) = delivery.frame() else {
            return Next::Skip;
        };
        let Some(Following { cursor, view, .. }) = self.following.get_mut(delivery.channel()) else {
            return Next::Skip;
        };
        let (Some(numbered), Some(cursor)) = (delivery.numbered(), cursor.as_mut()) else {
            return Next::Send(frame.clone());
        };
        if cursor.epoch != numbered.epoch.as_ref() {
            // A new epoch (or the first publication seen): its numbering starts over.
            if !cursor.epoch.is_empty() {
                cursor.offset = 0;
            }
            cursor.epoch = numbered.epoch.to_string();
        }
        if numbered.offset <= cursor.offset {
            return Next::Skip;
        }
        if numbered.offset > cursor.offset + 1 {
            return Next::Fill { view: *view, after: cursor.offset };
        }
        cursor.offset = numbered.offset;
        Next::Send(frame.clone())
    }

    /// Works on the delivery kept waiting (`sequencing`): puts it in order again, since a command
    /// may have moved the cursor meanwhile, and if publications are still missing before it,
    /// awaits their fetch, then queues them and it in `pending`. Cancel-safe: the fetch runs as a
    /// task of its own, so a call dropped at its await (the socket loop drops `outgoing` whenever
    /// a frame comes in first) leaves the fetch going, and the next call awaits the same one.
    /// Started over on every frame, a fetch could never finish under a steady stream of commands.
    pub(super) async fn fill_waiting(&mut self) -> Result<(), Gap> {
        let Some(delivery) = self.sequencing.as_ref().map(|waiting| waiting.delivery.clone()) else {
            return Ok(());
        };
        let (view, after) = match self.sequence(&delivery) {
            Next::Send(frame) => {
                self.sequencing = None;
                self.pending.push_back(frame);
                return Ok(());
            }
            Next::Skip => {
                self.sequencing = None;
                return Ok(());
            }
            Next::Fill { view, after } => (view, after),
        };
        let channel = delivery.channel();
        let (Some(numbered), Some(frame)) = (delivery.numbered(), delivery.frame()) else {
            // `sequence` answers `Fill` only for a numbered publication with a frame.
            self.sequencing = None;
            return Ok(());
        };
        let started = self.sequencing.as_ref().and_then(|waiting| waiting.fetch.as_ref());
        if started.is_none_or(|fetch| fetch.after != after) {
            self.state.metrics.gap_fills.inc();
            let fill = fill(
                self.state.clone(),
                channel.to_owned(),
                view,
                after,
                numbered.offset,
                numbered.epoch.to_string(),
            );
            let fetch = Fetch { after, task: AbortOnDropHandle::new(tokio::spawn(fill)) };
            if let Some(waiting) = self.sequencing.as_mut() {
                waiting.fetch = Some(fetch);
            }
        }
        let Some(Sequencing { fetch: Some(fetch), .. }) = self.sequencing.as_deref_mut() else {
            return Ok(());
        };
        let frames = (&mut fetch.task).await.map_err(|_| Gap)??;
        self.sequencing = None;
        self.pending.extend(frames);
        self.pending.push_back(frame.clone());
        if let Some(Following { cursor: Some(cursor), .. }) = self.following.get_mut(channel) {
            cursor.offset = numbered.offset;
        }
        Ok(())
    }
}

/// A delivery that arrived ahead of publications still missing before it, kept while they are
/// fetched.
pub(super) struct Sequencing {
    pub(super) delivery: Delivery,
    fetch: Option<Fetch>,
}

impl Sequencing {
    pub(super) fn new(delivery: Delivery) -> Box<Sequencing> {
        Box::new(Sequencing { delivery, fetch: None })
    }
}

/// A fetch of missing publications, in a task of its own (aborted when dropped).
struct Fetch {
    /// The cursor it fetches after: a fetch for another cursor is not used.
    after: i64,
    task: AbortOnDropHandle<Result<Vec<Utf8Bytes>, Gap>>,
}

/// The stored publications of `channel` after `after` and before `before`, in `view`'s frames.
async fn fill(
    state: AppState,
    channel: String,
    view: View,
    after: i64,
    before: i64,
    epoch: String,
) -> Result<Vec<Utf8Bytes>, Gap> {
    let missing = before - after - 1;
    if missing > MAX_FILL {
        return Err(Gap);
    }
    let read = recovery::read_after(&state, &channel, after, Some(before - 1), MAX_FILL).await;
    let Read { publications, whole, .. } = read.map_err(|err| {
        tracing::warn!(error = %err, channel, "cannot fetch missed publications");
        Gap
    })?;
    // Too much to send at once, or a publication that expired in between: the client must
    // recover.
    if !whole
        || publications.len() as i64 != missing
        || publications.first().is_some_and(|p| p.offset != after + 1)
    {
        return Err(Gap);
    }
    Ok(publications
        .iter()
        .filter_map(|p| {
            let data = serde_json::from_str(&p.data).ok()?;
            protocol::publication(p, &data, &epoch).for_view(view).cloned()
        })
        .collect())
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
