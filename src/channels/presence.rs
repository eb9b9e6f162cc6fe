//! Who is in a channel: users join and leave with their first and last socket, across every node
//! where the namespace tracks presence, and those who leave with a node that died are announced
//! by whichever node noticed.

use super::protocol::{self, ErrorCode, Refusal};
use super::Engine;
use crate::broker::{BrokerError, Change, Departure, DynBroker, Presence};
use std::collections::{BTreeMap, BTreeSet};
use tokio::sync::mpsc;

/// A channel's subscribers counted: sockets, and the users they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PresenceStats {
    pub(crate) sockets: u64,
    pub(crate) users: u64,
}

impl Engine {
    /// The users with a socket in `name` on any node; `bad_request` where its namespace does not
    /// track presence.
    pub(crate) async fn presence(&self, name: &str) -> Result<BTreeSet<String>, Refusal> {
        let channel = self.resolve(name)?;
        if !channel.namespace.presence {
            let namespace = &channel.namespace.name;
            return Err(Refusal::new(
                ErrorCode::BadRequest,
                format!("presence is off in namespace {namespace:?}"),
            ));
        }
        self.broker.members(name).await.map_err(broker_unavailable)
    }

    /// How many sockets are subscribed to `name` on every node, and how many users they are;
    /// refused as [`Self::presence`] is.
    pub(crate) async fn presence_stats(&self, name: &str) -> Result<PresenceStats, Refusal> {
        let users = self.presence(name).await?.len() as u64;
        let sockets = self.channels().await?.get(name).copied().unwrap_or(0);
        // Read apart from the users, the count may lag them: each user has a socket there.
        Ok(PresenceStats { sockets: sockets.max(users), users })
    }

    /// The users in `name` on any node, or on this one while the shared presence is unavailable.
    pub(crate) async fn members(&self, name: &str) -> BTreeSet<String> {
        match self.broker.members(name).await {
            Ok(members) => members,
            Err(err) => {
                tracing::warn!(error = %err, channel = name, "shared presence unavailable; listing this node's");
                self.hub.members(name)
            }
        }
    }

    /// Every channel with subscribed sockets on any node, and how many there are in all.
    pub(crate) async fn channels(&self) -> Result<BTreeMap<String, u64>, Refusal> {
        self.broker.subscribers().await.map_err(broker_unavailable)
    }

    /// Keeps the broker subscribed to channels with local sockets only, and publishes a presence
    /// change (`tracked`: the namespace tracks it) when the user's first or last socket moved.
    pub(super) async fn announce(
        &self,
        channel: &str,
        username: &str,
        presence: Presence,
        change: Change,
        tracked: bool,
    ) {
        let broker = &self.broker;
        // A socket joined or left: this node's count of the channel changed (the server API lists them).
        if let Err(err) = broker.share_subscribers(channel).await {
            tracing::warn!(error = %err, channel, "sharing the channel's socket count failed");
        }
        if change.channel_edge {
            let result = match presence {
                Presence::Joined => broker.subscribe(channel).await,
                Presence::Left => broker.unsubscribe(channel).await,
            };
            if let Err(err) = result {
                tracing::warn!(error = %err, channel, "broker subscription change failed");
            }
        }
        if !change.user_edge || !tracked {
            return;
        }
        // The user's first (or last) socket here; other nodes may still have them in the channel.
        let announce = broker.presence(channel, username, presence).await.unwrap_or_else(|err| {
            tracing::warn!(error = %err, channel, "shared presence unavailable");
            true
        });
        if announce {
            if let Err(err) = broker.publish(channel, protocol::presence(channel, username, presence)).await {
                tracing::warn!(error = %err, channel, "presence fan-out failed");
            }
        }
    }
}

/// Tells each channel's subscribers of the users who left it with a dead node, as the broker
/// notices them.
pub(super) async fn announce_departures(
    broker: DynBroker,
    mut departures: mpsc::UnboundedReceiver<Departure>,
) {
    while let Some(Departure { channel, user }) = departures.recv().await {
        if let Err(err) = broker.publish(&channel, protocol::presence(&channel, &user, Presence::Left)).await
        {
            tracing::warn!(error = %err, channel, "presence fan-out failed");
        }
    }
}

pub(super) fn broker_unavailable(err: BrokerError) -> Refusal {
    tracing::warn!(error = %err, "broker call failed");
    Refusal::new(ErrorCode::Unavailable, "the cluster's shared state is unavailable, try again")
}
