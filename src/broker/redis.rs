//! Redis pub/sub between nodes. Each channel is a Redis channel (`wsguard:<cluster>:room:<channel>`,
//! a name kept for nodes of older versions) that a node subscribes to while it has local members. Presence lives in Redis hashes keyed by node,
//! next to a per-node liveness key, so a node's members drop out when it dies. Redis keeps no
//! record: the database holds every acknowledged message, and a lost Redis only pauses fan-out.
//! Each node's socket count per channel lives in a hash of its own (`subscribers.rs`).

mod liveness;
mod subscribers;

use super::{sessions, Broker, BrokerError, Departure, Frames, Hub, NodeShare, Presence};
use async_trait::async_trait;
use futures_util::StreamExt;
use redis::aio::{ConnectionManager, ConnectionManagerConfig, PubSubSink};
use redis::AsyncCommands;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// A node's liveness key lives this long; it is renewed every [`HEARTBEAT`].
const NODE_TTL_SECS: u64 = 10;
const HEARTBEAT: Duration = Duration::from_secs(3);
const RECONNECT_MAX: Duration = Duration::from_secs(5);

/// A presence entry's field: the node and the user, tab-separated (neither can hold a tab).
fn member_field(node: &str, user: &str) -> String {
    format!("{node}\t{user}")
}

fn failed(err: redis::RedisError) -> BrokerError {
    BrokerError(err.to_string())
}

pub(crate) struct RedisBroker {
    /// `wsguard:<cluster>:`: nodes of one cluster share keys and channels; other clusters on the
    /// same Redis never see them.
    prefix: String,
    node: String,
    client: redis::Client,
    conn: ConnectionManager,
    hub: Arc<Hub>,
    /// Users who left a channel with a dead node, for the engine to announce.
    departures: mpsc::UnboundedSender<Departure>,
    /// Channels with local members: subscribed now, and again after every reconnect.
    wanted: Mutex<HashSet<String>>,
    /// The live subscription connection's sending half; `None` while reconnecting.
    sink: tokio::sync::Mutex<Option<PubSubSink>>,
}

impl RedisBroker {
    /// Connects (failing at once if Redis is unreachable) and starts the subscriber and the
    /// heartbeat, which run until `shutdown`. The receiver yields the users who left a channel
    /// with a node that died. `node` is this node's id among the cluster's (no `:` or tab).
    pub(crate) async fn start(
        url: &str,
        cluster: &str,
        node: &str,
        hub: Arc<Hub>,
        shutdown: CancellationToken,
    ) -> anyhow::Result<(Arc<RedisBroker>, mpsc::UnboundedReceiver<Departure>)> {
        let client = redis::Client::open(url)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Duration::from_secs(2))
            .set_response_timeout(Duration::from_secs(2))
            .set_number_of_retries(2)
            .set_max_delay(1000);
        let conn = client.get_connection_manager_with_config(config).await?;
        let (departures, departed) = mpsc::unbounded_channel();
        let broker = Arc::new(RedisBroker {
            prefix: format!("wsguard:{cluster}:"),
            node: node.to_owned(),
            client,
            conn,
            hub,
            departures,
            wanted: Mutex::default(),
            sink: tokio::sync::Mutex::new(None),
        });
        broker.heartbeat().await.map_err(|e| anyhow::anyhow!("redis: {e}"))?;
        tokio::spawn(broker.clone().subscriber(shutdown.clone()));
        tokio::spawn(broker.clone().heartbeats(shutdown));
        Ok((broker, departed))
    }

    fn redis_channel(&self, channel: &str) -> String {
        format!("{}room:{channel}", self.prefix)
    }
    /// Where commands for `node`'s emulated sessions travel.
    fn emulation_channel(&self, node: &str) -> String {
        format!("{}emulation:{node}", self.prefix)
    }
    fn members_key(&self, channel: &str) -> String {
        format!("{}members:{channel}", self.prefix)
    }
    fn node_key(&self, node: &str) -> String {
        format!("{}node:{node}", self.prefix)
    }
    fn node_channels_key(&self, node: &str) -> String {
        format!("{}node-rooms:{node}", self.prefix)
    }
    fn nodes_key(&self) -> String {
        format!("{}nodes", self.prefix)
    }

    /// Receives channel events and hands them to the hub; reconnects and resubscribes on loss.
    async fn subscriber(self: Arc<Self>, shutdown: CancellationToken) {
        let mut backoff = Duration::from_millis(200);
        loop {
            let session = async {
                let (mut sink, stream) = self.client.get_async_pubsub().await?.split();
                let mut current = self.sink.lock().await;
                let channels: Vec<String> =
                    self.wanted.lock().expect("wanted lock").iter().cloned().collect();
                sink.subscribe(self.emulation_channel(&self.node)).await?;
                for channel in channels {
                    sink.subscribe(self.redis_channel(&channel)).await?;
                }
                *current = Some(sink);
                drop(current);
                tracing::info!(node = %self.node, "redis subscriber connected");
                Ok::<_, redis::RedisError>(stream)
            };
            let stream = tokio::select! {
                _ = shutdown.cancelled() => return,
                stream = session => stream,
            };
            match stream {
                Ok(mut stream) => {
                    backoff = Duration::from_millis(200);
                    let prefix = self.redis_channel("");
                    let emulation = self.emulation_channel(&self.node);
                    loop {
                        let message = tokio::select! {
                            _ = shutdown.cancelled() => return,
                            message = stream.next() => message,
                        };
                        let Some(message) = message else { break };
                        if message.get_channel_name() == emulation {
                            self.hand(message.get_payload_bytes());
                            continue;
                        }
                        let Some(channel) = message.get_channel_name().strip_prefix(&prefix) else {
                            continue;
                        };
                        match Frames::decode(message.get_payload_bytes()) {
                            // Delivered here when it was published.
                            Some((_, Some(origin))) if origin == self.node => {}
                            Some((frames, _)) => self.hub.deliver(channel, frames),
                            None => tracing::warn!(channel, "undecodable message between nodes dropped"),
                        }
                    }
                    *self.sink.lock().await = None;
                    tracing::warn!("redis subscriber connection lost; reconnecting");
                }
                Err(err) => tracing::warn!(error = %err, "redis subscriber cannot connect; retrying"),
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(RECONNECT_MAX);
        }
    }

    /// Commands another node received for one of this node's emulated sessions.
    fn hand(&self, message: &[u8]) {
        match sessions::decode(message) {
            Some((session, data)) => {
                self.hub.sessions().hand(session, data.into());
            }
            None => tracing::warn!("undecodable emulation request between nodes dropped"),
        }
    }

    /// Users of `channel` by node, counting only nodes that are alive.
    async fn live_members(&self, channel: &str) -> redis::RedisResult<Vec<(String, String)>> {
        let mut conn = self.conn.clone();
        let entries: HashMap<String, i64> = conn.hgetall(self.members_key(channel)).await?;
        let mut alive: HashMap<String, bool> = HashMap::new();
        let mut members = Vec::new();
        for field in entries.keys() {
            let Some((node, user)) = field.split_once('\t') else { continue };
            let live = match alive.get(node) {
                Some(live) => *live,
                None => {
                    let live = node == self.node || conn.exists(self.node_key(node)).await?;
                    alive.insert(node.to_owned(), live);
                    live
                }
            };
            if live {
                members.push((node.to_owned(), user.to_owned()));
            }
        }
        Ok(members)
    }

    async fn present_elsewhere(&self, channel: &str, user: &str, except: &str) -> redis::RedisResult<bool> {
        Ok(self.live_members(channel).await?.iter().any(|(node, u)| u == user && node != except))
    }
}

#[async_trait]
impl Broker for RedisBroker {
    /// One PUBLISH per event, whatever the number of nodes and sockets. A numbered publication
    /// goes to this node's sockets at once, not through Redis: each socket puts a channel's
    /// publications in offset order whatever the route. Other events (presence, channels without
    /// history) have no offsets, so every node takes them in Redis's one order.
    async fn publish(&self, channel: &str, frames: Frames) -> Result<(), BrokerError> {
        let local = frames.numbered.is_some();
        let message = frames.encode(local.then_some(self.node.as_str()));
        if local {
            self.hub.deliver(channel, frames);
        }
        let mut conn = self.conn.clone();
        conn.publish::<_, _, ()>(self.redis_channel(channel), message).await.map_err(failed)
    }

    /// Numbered publications go to this node's sockets together, then to Redis in one pipeline;
    /// a batch with unnumbered events goes through Redis one by one, as [`Self::publish`] does.
    async fn publish_all(&self, channel: &str, batch: Vec<Frames>) -> Result<(), BrokerError> {
        if !batch.iter().all(|frames| frames.numbered.is_some()) {
            for frames in batch {
                self.publish(channel, frames).await?;
            }
            return Ok(());
        }
        let mut pipe = redis::pipe();
        for frames in &batch {
            pipe.publish(self.redis_channel(channel), frames.encode(Some(self.node.as_str()))).ignore();
        }
        self.hub.deliver_all(channel, batch);
        let mut conn = self.conn.clone();
        pipe.query_async::<()>(&mut conn).await.map_err(failed)
    }

    async fn subscribe(&self, channel: &str) -> Result<(), BrokerError> {
        self.wanted.lock().expect("wanted lock").insert(channel.to_owned());
        let mut sink = self.sink.lock().await;
        match sink.as_mut() {
            Some(sink) => sink.subscribe(self.redis_channel(channel)).await.map_err(failed),
            // Reconnecting: the subscriber subscribes to every wanted channel when it is back.
            None => Ok(()),
        }
    }

    async fn unsubscribe(&self, channel: &str) -> Result<(), BrokerError> {
        self.wanted.lock().expect("wanted lock").remove(channel);
        let mut sink = self.sink.lock().await;
        match sink.as_mut() {
            Some(sink) => sink.unsubscribe(self.redis_channel(channel)).await.map_err(failed),
            None => Ok(()),
        }
    }

    async fn presence(&self, channel: &str, user: &str, change: Presence) -> Result<bool, BrokerError> {
        let mut conn = self.conn.clone();
        let field = member_field(&self.node, user);
        if change == Presence::Joined {
            let _: () = conn.hset(self.members_key(channel), &field, 1).await.map_err(failed)?;
            let _: () = conn.sadd(self.node_channels_key(&self.node), channel).await.map_err(failed)?;
        } else {
            let _: () = conn.hdel(self.members_key(channel), &field).await.map_err(failed)?;
        }
        let elsewhere = self.present_elsewhere(channel, user, &self.node).await.map_err(failed)?;
        Ok(!elsewhere)
    }

    async fn members(&self, channel: &str) -> Result<BTreeSet<String>, BrokerError> {
        let mut members = self.hub.members(channel);
        members.extend(self.live_members(channel).await.map_err(failed)?.into_iter().map(|(_, user)| user));
        Ok(members)
    }

    async fn share_subscribers(&self, channel: &str) -> Result<(), BrokerError> {
        self.write_subscribers(channel).await.map_err(failed)
    }

    async fn subscribers(&self) -> Result<BTreeMap<String, u64>, BrokerError> {
        self.cluster_subscribers().await.map_err(failed)
    }

    async fn other_nodes(&self) -> Result<Vec<NodeShare>, BrokerError> {
        self.other_node_shares().await.map_err(failed)
    }

    async fn ping(&self) -> Result<(), BrokerError> {
        let mut conn = self.conn.clone();
        redis::cmd("PING").query_async::<String>(&mut conn).await.map_err(failed)?;
        Ok(())
    }

    /// Another node's sessions through Redis: a PUBLISH that no node receives names no live node.
    async fn emulate(&self, node: &str, session: &str, data: &str) -> Result<bool, BrokerError> {
        if node == self.node {
            self.hub.sessions().hand(session, data.into());
            return Ok(true);
        }
        let mut conn = self.conn.clone();
        let receivers: u64 = conn
            .publish(self.emulation_channel(node), sessions::encode(session, data))
            .await
            .map_err(failed)?;
        Ok(receivers > 0)
    }
}
