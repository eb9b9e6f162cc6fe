//! Fan-out between nodes. A channel's event is published once through the broker, which hands it
//! to the [`Hub`] of every node with subscribers in that channel. The broker moves frames; what
//! they say is the channel protocol's. The in-process broker is the single-node default; a
//! networked one implements the same trait.

mod hub;
pub(crate) mod outbox;
mod redis;
pub(crate) mod sessions;

use async_trait::async_trait;
pub(crate) use axum::extract::ws::Utf8Bytes;
pub(crate) use hub::{Change, Hub, Tally, Watcher};
pub(crate) use redis::RedisBroker;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
#[error("broker unavailable: {0}")]
pub(crate) struct BrokerError(String);

#[async_trait]
pub(crate) trait Broker: Send + Sync + 'static {
    /// Sends a channel event, rendered for each view, to the channel's members on every node.
    async fn publish(&self, channel: &str, frames: Frames) -> Result<(), BrokerError>;
    /// Sends several events of one channel, in order, as [`Self::publish`] does each: a broker
    /// that can hands them to each socket together.
    async fn publish_all(&self, channel: &str, batch: Vec<Frames>) -> Result<(), BrokerError> {
        for frames in batch {
            self.publish(channel, frames).await?;
        }
        Ok(())
    }
    /// This node has local members in `channel` now: start receiving its events.
    async fn subscribe(&self, channel: &str) -> Result<(), BrokerError>;
    /// This node has no local members in `channel` any more.
    async fn unsubscribe(&self, channel: &str) -> Result<(), BrokerError>;
    /// Records that `user` now has (`Joined`) or no longer has (`Left`) a socket in `channel` on
    /// this node.
    /// Returns whether that changes the user's presence across all nodes, i.e. whether to
    /// announce it.
    async fn presence(&self, channel: &str, user: &str, change: Presence) -> Result<bool, BrokerError>;
    /// The users with a socket in `channel` on any live node.
    async fn members(&self, channel: &str) -> Result<BTreeSet<String>, BrokerError>;
    /// The number of this node's sockets in `channel` changed: share it with the other nodes.
    async fn share_subscribers(&self, channel: &str) -> Result<(), BrokerError>;
    /// Every channel with sockets on any live node, and how many sockets there are in all.
    async fn subscribers(&self) -> Result<BTreeMap<String, u64>, BrokerError>;
    /// The cluster's other live nodes, by id, with what each shares of itself: its channels and
    /// subscriptions. None on a single node.
    async fn other_nodes(&self) -> Result<Vec<NodeShare>, BrokerError>;
    /// Reachability, for `/readyz`.
    async fn ping(&self) -> Result<(), BrokerError>;
    /// Hands `data` (an emulated client's commands) to `session` on `node`, this node or
    /// another. `Ok(false)`: no live node has that name.
    async fn emulate(&self, node: &str, session: &str, data: &str) -> Result<bool, BrokerError>;
}

pub(crate) type DynBroker = Arc<dyn Broker>;

/// What the cluster knows of a node: its channels with subscribed sockets, and those sockets'
/// subscriptions (a socket in two channels counts twice).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NodeShare {
    pub(crate) node: String,
    pub(crate) channels: u64,
    pub(crate) subscriptions: u64,
}

/// A user's presence in a channel changing: they now have a socket there, or no longer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Presence {
    Joined,
    Left,
}

/// A user who left a channel with a node that died: noticed by the broker, announced by the
/// channel engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Departure {
    pub(crate) channel: String,
    pub(crate) user: String,
}

/// How a socket follows a channel: as a chat room (`join`), as a channel (`subscribe`), or as a
/// Centrifugo SDK's subscription. Each sees a channel's events in its own frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum View {
    Room,
    Channel,
    /// A Centrifugo subscription: publications only.
    Centrifugo,
    /// A Centrifugo subscription that asked for join and leave pushes (`join_leave`).
    CentrifugoJoinLeave,
}

/// One event of a channel, rendered once per node for each view; a view without a frame is not
/// told of the event. A frame is the WebSocket text itself: every recipient sends the same bytes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Frames {
    pub(crate) room: Option<Utf8Bytes>,
    pub(crate) channel: Option<Utf8Bytes>,
    /// A Centrifugo push (`{"push": …}`).
    pub(crate) centrifugo: Option<Utf8Bytes>,
    /// Where a numbered publication stands in its channel; `None` for presence and for
    /// namespaces without history.
    pub(crate) numbered: Option<Numbered>,
    /// A user joined or left: not for the views that did not ask for that.
    pub(crate) presence: bool,
}

/// A publication's offset in its channel's epoch: lets a socket put what it receives in order,
/// drop what it already has, and fetch what it missed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Numbered {
    pub(crate) offset: i64,
    pub(crate) epoch: Arc<str>,
}

/// A channel's event as this node's sockets receive it: made once, shared by all of them.
#[derive(Debug)]
pub(crate) struct Event {
    pub(crate) channel: Arc<str>,
    pub(crate) frames: Frames,
}

/// What the hub hands a socket: the shared event, and how the socket follows its channel.
#[derive(Debug, Clone)]
pub(crate) struct Delivery {
    pub(crate) event: Arc<Event>,
    pub(crate) view: View,
}

impl Delivery {
    pub(crate) fn channel(&self) -> &str {
        &self.event.channel
    }

    /// The frame this socket sends; `None` when its view is not told of the event.
    pub(crate) fn frame(&self) -> Option<&Utf8Bytes> {
        self.event.frames.for_view(self.view)
    }

    pub(crate) fn numbered(&self) -> Option<&Numbered> {
        self.event.frames.numbered.as_ref()
    }
}

impl Frames {
    pub(crate) fn for_view(&self, view: View) -> Option<&Utf8Bytes> {
        match view {
            View::Room => self.room.as_ref(),
            View::Channel => self.channel.as_ref(),
            View::Centrifugo if self.presence => None,
            View::Centrifugo | View::CentrifugoJoinLeave => self.centrifugo.as_ref(),
        }
    }

    /// Every view's frame in one message between nodes: `<room length or ->:<channel length or
    /// ->:<centrifugo length or ->:<offset, - or j>:<epoch>[:<origin>]` and a newline, then the
    /// frames. Lengths are in bytes; `j` marks a join or leave. `origin` names the node that
    /// delivered the event to its own sockets already.
    pub(crate) fn encode(&self, origin: Option<&str>) -> Vec<u8> {
        let length =
            |frame: &Option<Utf8Bytes>| frame.as_ref().map_or("-".to_owned(), |f| f.len().to_string());
        let (offset, epoch) = match &self.numbered {
            Some(n) => (n.offset.to_string(), n.epoch.as_ref()),
            None if self.presence => ("j".to_owned(), ""),
            None => ("-".to_owned(), ""),
        };
        let origin = origin.map_or(String::new(), |node| format!(":{node}"));
        let header = format!(
            "{}:{}:{}:{offset}:{epoch}{origin}\n",
            length(&self.room),
            length(&self.channel),
            length(&self.centrifugo)
        );
        let mut bytes = header.into_bytes();
        for frame in [&self.room, &self.channel, &self.centrifugo].into_iter().flatten() {
            bytes.extend_from_slice(frame.as_bytes());
        }
        bytes
    }

    /// The frames of an [`encode`](Self::encode)d message and its origin; `None` for anything
    /// else.
    pub(crate) fn decode(bytes: &[u8]) -> Option<(Frames, Option<&str>)> {
        let text = std::str::from_utf8(bytes).ok()?;
        let (header, mut rest) = text.split_once('\n')?;
        let mut fields = header.split(':');
        let (room, channel, centrifugo) = (fields.next()?, fields.next()?, fields.next()?);
        let (offset, epoch, origin) = (fields.next()?, fields.next()?, fields.next());
        if fields.next().is_some() || origin.is_some_and(|o| o.is_empty()) {
            return None;
        }
        let (numbered, presence) = match (offset, epoch) {
            ("-", "") => (None, false),
            ("j", "") => (None, true),
            (offset, epoch) if epoch.bytes().all(|b| b.is_ascii_alphanumeric()) => {
                let offset = offset.parse().ok().filter(|o| *o > 0)?;
                (Some(Numbered { offset, epoch: Arc::from(epoch) }), false)
            }
            _ => return None,
        };
        let mut take = |length: &str| -> Option<Option<Utf8Bytes>> {
            if length == "-" {
                return Some(None);
            }
            let length: usize = length.parse().ok()?;
            let frame = rest.get(..length)?;
            rest = &rest[length..];
            Some(Some(Utf8Bytes::from(frame)))
        };
        let (room, channel, centrifugo) = (take(room)?, take(channel)?, take(centrifugo)?);
        let frames = Frames { room, channel, centrifugo, numbered, presence };
        rest.is_empty().then_some((frames, origin))
    }
}

/// One node: publishing is delivering to the local hub.
pub(crate) struct InProcess {
    hub: Arc<Hub>,
    node: String,
}

impl InProcess {
    pub(crate) fn new(hub: Arc<Hub>, node: String) -> InProcess {
        InProcess { hub, node }
    }
}

#[async_trait]
impl Broker for InProcess {
    async fn publish(&self, channel: &str, frames: Frames) -> Result<(), BrokerError> {
        self.hub.deliver(channel, frames);
        Ok(())
    }

    async fn publish_all(&self, channel: &str, batch: Vec<Frames>) -> Result<(), BrokerError> {
        self.hub.deliver_all(channel, batch);
        Ok(())
    }

    async fn subscribe(&self, _: &str) -> Result<(), BrokerError> {
        Ok(())
    }

    async fn unsubscribe(&self, _: &str) -> Result<(), BrokerError> {
        Ok(())
    }

    async fn presence(&self, _: &str, _: &str, _: Presence) -> Result<bool, BrokerError> {
        Ok(true)
    }

    async fn members(&self, channel: &str) -> Result<BTreeSet<String>, BrokerError> {
        Ok(self.hub.members(channel))
    }

    async fn share_subscribers(&self, _: &str) -> Result<(), BrokerError> {
        Ok(())
    }

    async fn subscribers(&self) -> Result<BTreeMap<String, u64>, BrokerError> {
        Ok(self.hub.subscriber_counts())
    }

    async fn other_nodes(&self) -> Result<Vec<NodeShare>, BrokerError> {
        Ok(Vec::new())
    }

    async fn ping(&self) -> Result<(), BrokerError> {
        Ok(())
    }

    async fn emulate(&self, node: &str, session: &str, data: &str) -> Result<bool, BrokerError> {
        if node != self.node {
            return Ok(false);
        }
        self.hub.sessions().hand(session, data.into());
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_cross_nodes_intact_and_garbage_is_dropped() {
        let numbered = Some(Numbered { offset: 42, epoch: Arc::from("8c1f00aa") });
        let all = Frames {
            room: Some("{\"a\":\"é\\n\"}".into()),
            channel: Some("x:y\n".into()),
            centrifugo: Some("{\"push\":{}}".into()),
            numbered,
            presence: false,
        };
        let one = Frames { channel: Some("c".into()), ..Frames::default() };
        let joined = Frames {
            room: Some("r".into()),
            centrifugo: Some("c".into()),
            presence: true,
            ..Frames::default()
        };
        for frames in [all, one, joined, Frames::default()] {
            assert_eq!(Frames::decode(&frames.encode(None)), Some((frames.clone(), None)));
            let from_a = frames.encode(Some("a1"));
            assert_eq!(Frames::decode(&from_a), Some((frames, Some("a1"))));
        }
        for garbage in [
            &b""[..],
            b"3:-:-:-:\nab",
            b"1:1:-:-:\nabc",
            b"x:-:-:-:\na",
            b"-:-:-",
            b"\xff:-:-:-:\n",
            b"-:-:-:0:e\n",
            b"-:-:-:1:e:\n",
            b"-:-:-:1:e:x:y\n",
            b"-:-:1:-:\n",
        ] {
            assert_eq!(Frames::decode(garbage), None, "{garbage:?}");
        }
    }
}
