//! Each node's socket count per channel, for the server API's channel list: a hash per node
//! (`wsguard:<cluster>:node-subscribers:<node>`, channel → sockets) beside the node's presence
//! keys. It is written when a socket joins or leaves a channel, rewritten whole at every heartbeat
//! (which repairs a write lost while Redis was away, or two that crossed), and dropped with the
//! node. A channel's count is the sum over live nodes: this node's from its hub, the others' from
//! their hashes. The admin console's list of nodes reads the same hashes.

use super::RedisBroker;
use crate::broker::NodeShare;
use redis::AsyncCommands;
use std::collections::{BTreeMap, HashMap};

impl RedisBroker {
    pub(super) fn node_subscribers_key(&self, node: &str) -> String {
        format!("{}node-subscribers:{node}", self.prefix)
    }

    /// Writes this node's count of `channel` (none: the field goes).
    pub(super) async fn write_subscribers(&self, channel: &str) -> redis::RedisResult<()> {
        let mut conn = self.conn.clone();
        let key = self.node_subscribers_key(&self.node);
        match self.hub.subscribers(channel) {
            0 => conn.hdel(key, channel).await,
            count => conn.hset(key, channel, count).await,
        }
    }

    /// Replaces this node's hash by the hub's counts, in one transaction.
    pub(super) async fn write_all_subscribers(&self) -> redis::RedisResult<()> {
        let mut conn = self.conn.clone();
        let key = self.node_subscribers_key(&self.node);
        let counts: Vec<(String, u64)> = self.hub.subscriber_counts().into_iter().collect();
        let mut pipe = redis::pipe();
        pipe.atomic().del(&key).ignore();
        if !counts.is_empty() {
            pipe.hset_multiple(&key, &counts).ignore();
        }
        pipe.query_async(&mut conn).await
    }

    /// Sockets per channel on every live node.
    pub(super) async fn cluster_subscribers(&self) -> redis::RedisResult<BTreeMap<String, u64>> {
        let mut counts = self.hub.subscriber_counts();
        let mut conn = self.conn.clone();
        let nodes: Vec<String> = conn.smembers(self.nodes_key()).await?;
        for node in nodes.into_iter().filter(|n| *n != self.node) {
            if !conn.exists::<_, bool>(self.node_key(&node)).await? {
                continue;
            }
            let theirs: HashMap<String, u64> = conn.hgetall(self.node_subscribers_key(&node)).await?;
            for (channel, sockets) in theirs {
                *counts.entry(channel).or_default() += sockets;
            }
        }
        Ok(counts)
    }

    /// The other live nodes and their counts, from the same hashes, by node id.
    pub(super) async fn other_node_shares(&self) -> redis::RedisResult<Vec<NodeShare>> {
        let mut conn = self.conn.clone();
        let mut nodes: Vec<String> = conn.smembers(self.nodes_key()).await?;
        nodes.sort_unstable();
        let mut shares = Vec::new();
        for node in nodes.into_iter().filter(|n| *n != self.node) {
            if !conn.exists::<_, bool>(self.node_key(&node)).await? {
                continue;
            }
            let theirs: HashMap<String, u64> = conn.hgetall(self.node_subscribers_key(&node)).await?;
            let subscriptions = theirs.values().sum();
            shares.push(NodeShare { node, channels: theirs.len() as u64, subscriptions });
        }
        Ok(shares)
    }
}
