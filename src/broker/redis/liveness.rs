//! A node's liveness in Redis: a key renewed every heartbeat, and the reaping of nodes whose key
//! expired, whose users leave the channels they were in (announced by the engine).

use super::{member_field, RedisBroker, HEARTBEAT, NODE_TTL_SECS};
use crate::broker::Departure;
use redis::AsyncCommands;
use std::collections::HashMap;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

impl RedisBroker {
    pub(super) async fn heartbeats(self: Arc<Self>, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(HEARTBEAT);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => {
                    let _ = self.retire().await;
                    return;
                }
                _ = tick.tick() => {}
            }
            if let Err(err) = self.heartbeat().await {
                tracing::warn!(error = %err, "redis heartbeat failed");
                continue;
            }
            if let Err(err) = self.reap().await {
                tracing::warn!(error = %err, "reaping dead nodes failed");
            }
        }
    }

    /// Renews this node's liveness key. When the key was gone (first beat, or Redis restarted
    /// and lost everything), writes this node's presence again from the hub.
    pub(super) async fn heartbeat(&self) -> redis::RedisResult<()> {
        let mut conn = self.conn.clone();
        let key = self.node_key(&self.node);
        let existed: bool = conn.exists(&key).await?;
        let _: () = conn.set_ex(&key, 1, NODE_TTL_SECS).await?;
        let _: () = conn.sadd(self.nodes_key(), &self.node).await?;
        if !existed {
            for (channel, users) in self.hub.channels() {
                for user in users {
                    let _: () =
                        conn.hset(self.members_key(&channel), member_field(&self.node, &user), 1).await?;
                }
                let _: () = conn.sadd(self.node_channels_key(&self.node), &channel).await?;
            }
        }
        self.write_all_subscribers().await
    }

    /// Removes the presence of nodes whose liveness key expired, announcing the users who left
    /// with them. One node does it per dead node (a short lock key decides which).
    async fn reap(&self) -> redis::RedisResult<()> {
        let mut conn = self.conn.clone();
        let nodes: Vec<String> = conn.smembers(self.nodes_key()).await?;
        for node in nodes.into_iter().filter(|n| *n != self.node) {
            if conn.exists(self.node_key(&node)).await? {
                continue;
            }
            let claimed: bool = redis::cmd("SET")
                .arg(format!("{}reap:{node}", self.prefix))
                .arg(&self.node)
                .arg("NX")
                .arg("EX")
                .arg(30)
                .query_async::<Option<String>>(&mut conn)
                .await?
                .is_some();
            if !claimed {
                continue;
            }
            let channels: Vec<String> = conn.smembers(self.node_channels_key(&node)).await?;
            for channel in channels {
                let entries: HashMap<String, i64> = conn.hgetall(self.members_key(&channel)).await?;
                let gone: Vec<String> = entries
                    .keys()
                    .filter_map(|f| f.split_once('\t'))
                    .filter(|(n, _)| *n == node)
                    .map(|(_, user)| user.to_owned())
                    .collect();
                for user in gone {
                    let _: () = conn.hdel(self.members_key(&channel), member_field(&node, &user)).await?;
                    if !self.present_elsewhere(&channel, &user, &node).await? {
                        // Nobody listening means the node is shutting down: no one to tell.
                        let _ = self.departures.send(Departure { channel: channel.clone(), user });
                    }
                }
            }
            let _: () = conn.del(self.node_channels_key(&node)).await?;
            let _: () = conn.del(self.node_subscribers_key(&node)).await?;
            let _: () = conn.srem(self.nodes_key(), &node).await?;
            tracing::info!(node, "removed the presence of a dead node");
        }
        Ok(())
    }

    /// On shutdown: this node's members leave at once instead of after the liveness timeout.
    async fn retire(&self) -> redis::RedisResult<()> {
        let mut conn = self.conn.clone();
        let _: () = conn.del(self.node_key(&self.node)).await?;
        self.reap_self().await
    }

    async fn reap_self(&self) -> redis::RedisResult<()> {
        let mut conn = self.conn.clone();
        let channels: Vec<String> = conn.smembers(self.node_channels_key(&self.node)).await?;
        for channel in channels {
            let entries: HashMap<String, i64> = conn.hgetall(self.members_key(&channel)).await?;
            for field in entries.keys().filter(|f| f.starts_with(&format!("{}\t", self.node))) {
                let _: () = conn.hdel(self.members_key(&channel), field).await?;
            }
        }
        let _: () = conn.del(self.node_channels_key(&self.node)).await?;
        let _: () = conn.del(self.node_subscribers_key(&self.node)).await?;
        let _: () = conn.srem(self.nodes_key(), &self.node).await?;
        Ok(())
    }
}
