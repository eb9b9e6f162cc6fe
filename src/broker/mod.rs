//! Fan-out between nodes. The chat publishes each room event once through the broker, and the
//! broker hands it to the [`Hub`] of every node that has members in that room. The in-process
//! broker is the single-node default; a networked one implements the same trait.

mod redis;

use crate::chat::hub::Hub;
use async_trait::async_trait;
pub use redis::RedisBroker;
use std::collections::BTreeSet;
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
#[error("broker unavailable: {0}")]
pub struct BrokerError(pub String);

#[async_trait]
pub trait Broker: Send + Sync + 'static {
    /// Sends a serialized room event to the room's members on every node.
    async fn publish(&self, room: &str, frame: Arc<str>) -> Result<(), BrokerError>;
    /// This node has local members in `room` now: start receiving its events.
    async fn subscribe(&self, room: &str) -> Result<(), BrokerError>;
    /// This node has no local members in `room` any more.
    async fn unsubscribe(&self, room: &str) -> Result<(), BrokerError>;
    /// Records that `user` now has (`present`) or no longer has a socket in `room` on this node.
    /// Returns whether that changes the user's presence across all nodes, i.e. whether to
    /// announce it.
    async fn presence(&self, room: &str, user: &str, present: bool) -> Result<bool, BrokerError>;
    /// The users with a socket in `room` on any live node.
    async fn members(&self, room: &str) -> Result<BTreeSet<String>, BrokerError>;
    /// Reachability, for `/readyz`.
    async fn ping(&self) -> Result<(), BrokerError>;
}

pub type DynBroker = Arc<dyn Broker>;

/// One node: publishing is delivering to the local hub.
pub struct InProcess {
    hub: Arc<Hub>,
}

impl InProcess {
    pub fn new(hub: Arc<Hub>) -> InProcess {
        InProcess { hub }
    }
}

#[async_trait]
impl Broker for InProcess {
    async fn publish(&self, room: &str, frame: Arc<str>) -> Result<(), BrokerError> {
        self.hub.deliver(room, frame);
        Ok(())
    }

    async fn subscribe(&self, _: &str) -> Result<(), BrokerError> {
        Ok(())
    }

    async fn unsubscribe(&self, _: &str) -> Result<(), BrokerError> {
        Ok(())
    }

    async fn presence(&self, _: &str, _: &str, _: bool) -> Result<bool, BrokerError> {
        Ok(true)
    }

    async fn members(&self, room: &str) -> Result<BTreeSet<String>, BrokerError> {
        Ok(self.hub.members(room))
    }

    async fn ping(&self) -> Result<(), BrokerError> {
        Ok(())
    }
}
