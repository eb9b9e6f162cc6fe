//! Fan-out between nodes. A channel's event is published once through the broker, which hands it
//! to the [`Hub`] of every node with subscribers in that channel. The broker moves frames; what
//! they say is the channel protocol's. The in-process broker is the single-node default; a
//! networked one implements the same trait.

mod hub;
mod redis;

use async_trait::async_trait;
pub(crate) use hub::{Change, Hub};
pub(crate) use redis::RedisBroker;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
#[error("broker unavailable: {0}")]
pub(crate) struct BrokerError(String);

#[async_trait]
pub(crate) trait Broker: Send + Sync + 'static {
    /// Sends a serialized channel event to the channel's members on every node.
    async fn publish(&self, channel: &str, frame: Arc<str>) -> Result<(), BrokerError>;
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
    /// Reachability, for `/readyz`.
    async fn ping(&self) -> Result<(), BrokerError>;
}

pub(crate) type DynBroker = Arc<dyn Broker>;

/// A user's presence in a channel changing: they now have a socket there, or no longer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Presence {
    Joined,
    Left,
}

/// The frame that tells a channel's subscribers `user` left it with a node that died: written by
/// the channel protocol, published by the broker that noticed.
pub(crate) type LeaveFrame = fn(channel: &str, user: &str) -> String;

/// One node: publishing is delivering to the local hub.
pub(crate) struct InProcess {
    hub: Arc<Hub>,
}

impl InProcess {
    pub(crate) fn new(hub: Arc<Hub>) -> InProcess {
        InProcess { hub }
    }
}

#[async_trait]
impl Broker for InProcess {
    async fn publish(&self, channel: &str, frame: Arc<str>) -> Result<(), BrokerError> {
        self.hub.deliver(channel, frame);
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

    async fn ping(&self) -> Result<(), BrokerError> {
        Ok(())
    }
}
