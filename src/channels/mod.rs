//! The channel engine: every channel operation, for every caller. The JSON sockets' sessions
//! (`session`: the chat's rooms and the `/connect` frames) and the server API (`api`) call its
//! methods and render what they answer; none of them checks a namespace rule or a quota itself, so
//! a new protocol or transport cannot forget one.
//!
//! It owns this node's [`Hub`] of subscribers, the broker that fans out across nodes, the
//! publications' storage (numbered by the store), the namespaces and the daily quota.
//!
//! - `namespaces`: channel names and what their namespace allows and keeps.
//! - `application`: what the application decides for a namespace: its subscribe and publish
//!   proxies, its subscription tokens.
//! - `publish`: a publication checked, counted against its publisher's quota, stored and
//!   numbered where its namespace keeps history, then fanned out.
//! - `subscriber`: one socket's subscriptions: following a channel (its rules checked), leaving it,
//!   a new token checked against them.
//! - `delivery`: what the hub hands a subscriber, put in order, missing publications fetched.
//! - `recovery`: a channel's stored publications: recovering after `since`, history, position.
//! - `presence`: who is in a channel, joins and leaves announced, users gone with a dead node.
//! - `protocol`: the JSON frames every view of a channel's events is rendered in.

mod application;
mod delivery;
mod followed;
pub(crate) mod namespaces;
mod presence;
pub mod protocol;
mod publish;
pub(crate) mod push;
mod recovery;
mod subscriber;

pub(crate) use application::{decided, Asking};
pub(crate) use delivery::Ended;
pub(crate) use followed::Cursor;
pub(crate) use publish::Publisher;
pub(crate) use subscriber::Subscriber;

use crate::auth::Authenticator;
use crate::broker::{BrokerError, DynBroker, Hub, InProcess, NodeShare, RedisBroker, Tally};
use crate::metrics::Metrics;
use crate::proxy::Proxy;
use crate::quota::Quota;
use crate::store::DynStore;
use namespaces::{Channel, Namespaces};
use protocol::Refusal;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// What the engine is built from.
pub(crate) struct Settings<'a> {
    pub(crate) namespaces: &'a [crate::config::NamespaceSettings],
    /// Redis, to fan out across the nodes of `cluster`; `None`: this node alone.
    pub(crate) broker_url: Option<&'a str>,
    pub(crate) cluster: &'a str,
    /// Bytes of publications each user may store per day.
    pub(crate) bytes_per_user_per_day: u64,
    /// The application's endpoints, for namespaces whose rules are its.
    pub(crate) proxy: Option<Arc<Proxy>>,
    /// Checks subscription tokens.
    pub(crate) auth: Arc<Authenticator>,
    /// Told of users' first and last sockets in channels (webhooks).
    pub(crate) watcher: Option<crate::broker::Watcher>,
}

pub(crate) struct Engine {
    /// This node among the cluster's, for the server API's `info`.
    node: Node,
    namespaces: Namespaces,
    /// This node's subscribers.
    hub: Arc<Hub>,
    /// Fan-out across nodes (in-process on a single node).
    broker: DynBroker,
    store: DynStore,
    /// Publication bytes each user may still store today.
    quota: Quota,
    metrics: Arc<Metrics>,
    proxy: Option<Arc<Proxy>>,
    auth: Arc<Authenticator>,
}

impl Engine {
    /// Connects the broker; announces the users who leave with a dead node until `shutdown`.
    pub(crate) async fn start(
        settings: Settings<'_>,
        store: DynStore,
        metrics: Arc<Metrics>,
        shutdown: CancellationToken,
    ) -> anyhow::Result<Arc<Engine>> {
        let hub = Arc::new(Hub::watched(settings.watcher));
        // One id for this node wherever it is named: Redis's keys, `info`, the admin console, and
        // the emulated sessions' `node`.
        let uid = uuid::Uuid::new_v4().to_string();
        let (broker, departures): (DynBroker, _) = match settings.broker_url {
            Some(url) => {
                let (broker, departures) =
                    RedisBroker::start(url, settings.cluster, &uid, hub.clone(), shutdown).await?;
                (broker, Some(departures))
            }
            None => (Arc::new(InProcess::new(hub.clone(), uid.clone())), None),
        };
        let engine = Arc::new(Engine {
            node: Node { uid, started: Instant::now() },
            namespaces: Namespaces::new(settings.namespaces),
            hub,
            broker,
            store,
            quota: Quota::new(settings.bytes_per_user_per_day, Duration::from_secs(24 * 3600)),
            metrics,
            proxy: settings.proxy,
            auth: settings.auth,
        });
        if let Some(departures) = departures {
            tokio::spawn(presence::announce_departures(engine.broker.clone(), departures));
        }
        Ok(engine)
    }

    /// The channel `name` names: `bad_request` for a malformed name or an unknown namespace.
    pub(crate) fn resolve<'a>(&'a self, name: &'a str) -> Result<Channel<'a>, Refusal> {
        self.namespaces.resolve(name)
    }

    /// Whether `namespace` is one of the configured or built-in namespaces (`""`: the default one).
    pub(crate) fn knows_namespace(&self, namespace: &str) -> bool {
        self.namespaces.knows(namespace)
    }

    /// This node: its id, how long it has run, and what its sockets add up to.
    pub(crate) fn node(&self) -> NodeInfo<'_> {
        NodeInfo {
            uid: &self.node.uid,
            uptime: self.node.started.elapsed(),
            tally: self.hub.tally(),
            deliveries: self.hub.deliveries(),
        }
    }

    /// The cluster's nodes, this one first: what each shares in the broker (with Redis), by id.
    pub(crate) async fn nodes(&self) -> Result<Vec<NodeShare>, Refusal> {
        let tally = self.hub.tally();
        let this = NodeShare {
            node: self.node.uid.clone(),
            channels: tally.channels,
            subscriptions: tally.subscriptions,
        };
        let others = self.broker.other_nodes().await.map_err(presence::broker_unavailable)?;
        Ok(std::iter::once(this).chain(others).collect())
    }

    /// The application's endpoints, if it has any.
    pub(crate) fn application(&self) -> Option<&Arc<Proxy>> {
        self.proxy.as_ref()
    }

    /// Whether `name`'s namespace tracks presence (false for a name no namespace admits).
    pub(crate) fn tracks_presence(&self, name: &str) -> bool {
        self.resolve(name).is_ok_and(|channel| channel.namespace.presence)
    }

    /// This node's channels and the users with a socket in each.
    pub(crate) fn local_members(&self) -> Vec<(String, std::collections::BTreeSet<String>)> {
        self.hub.channels()
    }

    /// Whether the broker answers, for `/readyz`.
    pub(crate) async fn ping(&self) -> Result<(), BrokerError> {
        self.broker.ping().await
    }
}

/// What tells this node apart, made when it starts.
struct Node {
    /// Random, new at every start.
    uid: String,
    started: Instant,
}

/// This node as the server API describes it.
pub(crate) struct NodeInfo<'a> {
    pub(crate) uid: &'a str,
    pub(crate) uptime: Duration,
    pub(crate) tally: Tally,
    /// Frames queued for this node's sockets since it started.
    pub(crate) deliveries: u64,
}

/// A store call that failed: the client may try again.
fn unavailable(err: crate::store::StoreError) -> Refusal {
    tracing::warn!(error = %err, "channel store call failed");
    storage_unavailable()
}

fn storage_unavailable() -> Refusal {
    Refusal::new(protocol::ErrorCode::Unavailable, "storage unavailable, try again")
}

/// Emulated sessions: connections whose client sends its commands by separate requests to any
/// node (`emulation`).
impl Engine {
    /// Opens an emulated session on this node: its registration (its id; dropped, it ends) and
    /// the queue its client's commands arrive on.
    pub(crate) fn open_session(
        &self,
    ) -> (crate::broker::sessions::Registration, tokio::sync::mpsc::Receiver<crate::broker::Utf8Bytes>) {
        self.hub.sessions().open()
    }

    /// Hands a client's commands to its session on `node`: `Ok(false)` when no live node has
    /// that name.
    pub(crate) async fn emulate(&self, node: &str, session: &str, data: &str) -> Result<bool, BrokerError> {
        self.broker.emulate(node, session, data).await
    }

    /// This node's name, as emulated sessions tell their clients.
    pub(crate) fn node_id(&self) -> &str {
        &self.node.uid
    }
}
