//! What the hub hands a socket, put in order per channel before it is sent: a numbered
//! publication the socket already has is dropped, one that arrives ahead of a missing one (another
//! node's publication still on its way, or a fan-out that failed) makes the socket fetch the
//! missing ones from the store first. Every stored publication is committed before it is fanned
//! out, so what a later one's arrival says is missing is always there to fetch.
//!
//! The common case, the next publication in order, is decided without waiting and sends the
//! event's shared frame as it is: nothing is allocated or copied per socket.

use super::followed::{Followed, Following};
use super::recovery::Read;
use super::{protocol, Engine};
use crate::broker::{outbox, Delivery, Utf8Bytes, View};
use std::collections::VecDeque;
use std::sync::Arc;
use tokio_util::task::AbortOnDropHandle;

/// The most missing publications a subscriber fetches at once (and at most
/// [`MAX_RECOVERED_BYTES`](super::recovery::MAX_RECOVERED_BYTES) of them); a larger gap ends its deliveries ([`Ended::Missed`]) so that
/// its client resubscribes with `since`.
const MAX_FILL: i64 = 1000;

/// What to do with a delivery, decided without waiting.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Next {
    /// Send this frame now.
    Send(Utf8Bytes),
    /// Nothing to send: delivered already, or a channel no longer followed.
    Skip,
    /// Publications before it are missing, those after `after` in `view`: fetch them first.
    Fill { view: View, after: i64 },
}

/// Why a subscriber's deliveries ended: its client must reconnect and recover.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ended {
    /// It fell too far behind and the hub dropped it.
    TooSlow,
    /// Publications it missed could not be fetched (too many, expired, or the store failed).
    Missed,
    /// A Centrifugo subscription's consent ran out unrenewed: its protocol closes the connection.
    SubscriptionExpired,
}

/// Puts `delivery` in order among what `following` has delivered; moves the channel's cursor
/// when it is sent now.
pub(super) fn sequence(following: &mut Followed, delivery: &Delivery) -> Next {
    let Some(frame) = delivery.frame() else {
        return Next::Skip;
    };
    let Some(Following { cursor, view, .. }) = following.get_mut(delivery.channel()) else {
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

/// What the hub hands one subscriber, on its way to the socket.
#[derive(Default)]
pub(super) struct Deliveries {
    /// What the hub delivers; `None` until the subscriber first follows a channel, so that one
    /// that follows none costs the hub nothing.
    pub(super) inbox: Option<outbox::Receiver>,
    /// Deliveries taken from the inbox, not yet put in order.
    arrived: VecDeque<Delivery>,
    /// Frames put in order, waiting to be sent (missed publications fetched before a delivery).
    pub(super) pending: VecDeque<Utf8Bytes>,
    /// A delivery waiting for the publications missing before it, and their fetch: kept here,
    /// since the socket loop may drop [`Self::next`] at any await and call it again.
    sequencing: Option<Box<Sequencing>>,
}

impl Deliveries {
    /// The next frame in order that can be sent without waiting.
    pub(super) fn ready(&mut self, following: &mut Followed) -> Option<Utf8Bytes> {
        loop {
            if let Some(frame) = self.pending.pop_front() {
                return Some(frame);
            }
            if self.sequencing.is_some() {
                return None;
            }
            let Some(delivery) = self.arrived.pop_front() else {
                // What a burst grew this to is given back once it is sent.
                if self.arrived.capacity() > outbox::KEPT_CAPACITY {
                    self.arrived.shrink_to(outbox::KEPT_CAPACITY);
                }
                // An outbox the hub dropped is noticed by `next`, once drained.
                let inbox = self.inbox.as_mut()?;
                if inbox.drain_into(&mut self.arrived) == 0 {
                    return None;
                }
                continue;
            };
            match sequence(following, &delivery) {
                Next::Send(frame) => return Some(frame),
                Next::Skip => {}
                Next::Fill { .. } => self.sequencing = Some(Box::new(Sequencing { delivery, fetch: None })),
            }
        }
    }

    /// The next frame in order, waiting for it (forever while nothing is followed).
    pub(super) async fn next(
        &mut self,
        following: &mut Followed,
        engine: &Arc<Engine>,
    ) -> Result<Utf8Bytes, Ended> {
        loop {
            if let Some(frame) = self.ready(following) {
                return Ok(frame);
            }
            if self.sequencing.is_some() {
                self.fill_waiting(following, engine).await?;
                continue;
            }
            let Some(inbox) = self.inbox.as_mut() else {
                return std::future::pending().await;
            };
            if !inbox.wait_into(&mut self.arrived).await {
                return Err(Ended::TooSlow);
            }
        }
    }

    /// Works on the delivery kept waiting (`sequencing`): puts it in order again, since a command
    /// may have moved the cursor meanwhile, and if publications are still missing before it,
    /// awaits their fetch, then queues them and it in `pending`. Cancel-safe: the fetch runs as a
    /// task of its own, so a call dropped at its await (the socket loop drops `next` whenever a
    /// frame comes in first) leaves the fetch going, and the next call awaits the same one.
    /// Started over on every frame, a fetch could never finish under a steady stream of commands.
    async fn fill_waiting(&mut self, following: &mut Followed, engine: &Arc<Engine>) -> Result<(), Ended> {
        let Some(delivery) = self.sequencing.as_ref().map(|waiting| waiting.delivery.clone()) else {
            return Ok(());
        };
        let (view, after) = match sequence(following, &delivery) {
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
        let Some(waiting) = self.sequencing.as_deref_mut() else {
            return Ok(());
        };
        if waiting.fetch.as_ref().is_none_or(|fetch| fetch.after != after) {
            engine.metrics.gap_fills.inc();
            let missing = Missing {
                channel: channel.to_owned(),
                view,
                after,
                before: numbered.offset,
                epoch: numbered.epoch.to_string(),
            };
            let task = tokio::spawn(fill(engine.clone(), missing));
            waiting.fetch = Some(Fetch { after, task: AbortOnDropHandle::new(task) });
        }
        let Some(fetch) = waiting.fetch.as_mut() else {
            return Ok(());
        };
        let frames = (&mut fetch.task).await.map_err(|_| Ended::Missed)??;
        self.sequencing = None;
        self.pending.extend(frames);
        self.pending.push_back(frame.clone());
        if let Some(Following { cursor: Some(cursor), .. }) = following.get_mut(channel) {
            cursor.offset = numbered.offset;
        }
        Ok(())
    }
}

/// A delivery that arrived ahead of publications still missing before it, kept while they are
/// fetched.
struct Sequencing {
    delivery: Delivery,
    fetch: Option<Fetch>,
}

/// A fetch of missing publications, in a task of its own (aborted when dropped).
struct Fetch {
    /// The cursor it fetches after: a fetch for another cursor is not used.
    after: i64,
    task: AbortOnDropHandle<Result<Vec<Utf8Bytes>, Ended>>,
}

/// The publications of `channel` after `after` and before `before`, missing in `view`.
struct Missing {
    channel: String,
    view: View,
    after: i64,
    before: i64,
    epoch: String,
}

/// The missing publications, stored, in their view's frames.
async fn fill(engine: Arc<Engine>, missing: Missing) -> Result<Vec<Utf8Bytes>, Ended> {
    let Missing { channel, view, after, before, epoch } = missing;
    let count = before - after - 1;
    if count > MAX_FILL {
        return Err(Ended::Missed);
    }
    let read = engine.read_after(&channel, after, Some(before - 1), MAX_FILL).await;
    let Read { publications, whole, .. } = read.map_err(|err| {
        tracing::warn!(error = %err, channel, "cannot fetch missed publications");
        Ended::Missed
    })?;
    // Too much to send at once, or a publication that expired in between: the client must
    // recover.
    if !whole
        || publications.len() as i64 != count
        || publications.first().is_some_and(|p| p.offset != after + 1)
    {
        return Err(Ended::Missed);
    }
    Ok(publications
        .iter()
        .filter_map(|p| {
            let data = serde_json::from_str(&p.data).ok()?;
            Some(protocol::publication_frame(view, p, &data, &protocol::json(&data), &epoch))
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::{Event, Frames, Numbered};
    use crate::channels::followed::Cursor;

    fn delivery(channel: &str, offset: Option<i64>, epoch: &str, view: View) -> Delivery {
        let numbered = offset.map(|offset| Numbered { offset, epoch: Arc::from(epoch) });
        let frame = Some(Utf8Bytes::from(format!("{channel}/{offset:?}")));
        let frames =
            Frames { room: frame.clone(), channel: frame, centrifugo: None, numbered, presence: false };
        Delivery { event: Arc::new(Event { channel: Arc::from(channel), frames }), view }
    }

    fn following(cursor: Option<Cursor>) -> Followed {
        let following = Following { view: View::Channel, presence: false, cursor, expires_at: None };
        let mut followed = Followed::new();
        followed.insert("news:eu".to_owned(), following);
        followed
    }

    fn at(offset: i64, epoch: &str) -> Option<Cursor> {
        Some(Cursor { offset, epoch: epoch.into() })
    }

    #[test]
    fn deliveries_are_sent_in_order_once_and_gaps_are_filled() {
        let sent = |offset: i64| Next::Send(Utf8Bytes::from(format!("news:eu/Some({offset})")));
        #[rustfmt::skip]
        let cases = [
            // (cursor before, delivery's offset and epoch, what to do, cursor after, why)
            (at(4, "e1"), Some(5), "e1", sent(5), at(5, "e1"), "the next one"),
            (at(4, "e1"), Some(4), "e1", Next::Skip, at(4, "e1"), "delivered already"),
            (at(4, "e1"), Some(2), "e1", Next::Skip, at(4, "e1"), "recovered already"),
            (at(4, "e1"), Some(7), "e1", Next::Fill { view: View::Channel, after: 4 }, at(4, "e1"), "5 and 6 missing"),
            (at(4, "e1"), Some(1), "e2", sent(1), at(1, "e2"), "a new epoch starts over"),
            (at(4, "e1"), Some(3), "e2", Next::Fill { view: View::Channel, after: 0 }, at(0, "e2"), "a new epoch, 1-2 missing"),
            (at(0, ""), Some(9), "e1", Next::Fill { view: View::Channel, after: 0 }, at(0, "e1"), "first seen: fetch from 1"),
            (Some(Cursor::held_back()), Some(9), "e1", Next::Skip, Some(Cursor { offset: i64::MAX, epoch: "e1".into() }), "held back"),
            (None, Some(9), "e1", sent(9), None, "a namespace without history: as it comes"),
        ];
        for (before, offset, epoch, next, after, why) in cases {
            let mut followed = following(before);
            assert_eq!(
                sequence(&mut followed, &delivery("news:eu", offset, epoch, View::Channel)),
                next,
                "{why}"
            );
            assert_eq!(followed.get("news:eu").unwrap().cursor, after, "{why}");
        }
    }

    #[test]
    fn what_is_not_followed_or_not_numbered_is_not_sequenced() {
        let mut followed = following(at(4, "e1"));
        assert_eq!(sequence(&mut followed, &delivery("news:us", Some(5), "e1", View::Channel)), Next::Skip);
        // Presence: no offset, sent as it comes, the cursor untouched.
        let presence = delivery("news:eu", None, "", View::Channel);
        assert_eq!(sequence(&mut followed, &presence), Next::Send(Utf8Bytes::from("news:eu/None")));
        assert_eq!(followed.get("news:eu").unwrap().cursor, at(4, "e1"));
        // A view the event has no frame for.
        let mut silent = delivery("news:eu", Some(5), "e1", View::Room);
        Arc::get_mut(&mut silent.event).unwrap().frames.room = None;
        assert_eq!(sequence(&mut followed, &silent), Next::Skip);
    }

    #[test]
    fn a_gap_held_back_is_sent_after_what_fills_it() {
        let mut deliveries = Deliveries::default();
        let mut followed = following(at(4, "e1"));
        deliveries.arrived.push_back(delivery("news:eu", Some(5), "e1", View::Channel));
        deliveries.arrived.push_back(delivery("news:eu", Some(7), "e1", View::Channel));
        deliveries.arrived.push_back(delivery("news:eu", Some(8), "e1", View::Channel));
        assert_eq!(deliveries.ready(&mut followed), Some(Utf8Bytes::from("news:eu/Some(5)")));
        // 6 is missing: 7 waits for its fetch, and 8 behind it.
        assert_eq!(deliveries.ready(&mut followed), None);
        assert!(deliveries.sequencing.is_some());
        assert_eq!(deliveries.arrived.len(), 1);
        assert_eq!(followed.get("news:eu").unwrap().cursor, at(5, "e1"));
    }
}
