//! What the console shows of the nodes: the cluster's nodes as they share themselves in Redis, and
//! this node's own sockets and counters, which no node shares (so each answer names the node).

use super::caller::Admin;
use crate::api::params::ApiQuery;
use crate::api::CallError;
use crate::app::AppState;
use crate::http::error::ErrorBody;
use axum::extract::State;
use axum::Json;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use utoipa::{IntoParams, ToSchema};

const DEFAULT_CONNECTIONS: usize = 500;
const MAX_CONNECTIONS: usize = 10_000;

/// A node of the cluster and what it shares of itself.
#[derive(Serialize, ToSchema)]
pub(crate) struct NodeView {
    /// Random, new at each start.
    node: String,
    /// The node that answered.
    this: bool,
    /// Channels with a subscribed socket on the node.
    channels: u64,
    /// Its sockets' channel subscriptions (a socket in two channels counts twice).
    subscriptions: u64,
}

/// The live nodes, the answering one first.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"cluster": "default", "nodes": [
    {"node": "6c0e…", "this": true, "channels": 3, "subscriptions": 5},
    {"node": "91ab…", "this": false, "channels": 1, "subscriptions": 1}]}))]
pub(crate) struct Nodes {
    /// `--cluster`.
    cluster: String,
    nodes: Vec<NodeView>,
}

/// The cluster's nodes
///
/// Every live node sharing this node's Redis and `--cluster` (this node alone without Redis),
/// with the channel counts each shares there. Sockets per node are not shared: see
/// `/api/admin/connections` and `/api/admin/stats`, which answer for the node asked.
#[utoipa::path(get, path = "/api/admin/nodes", tag = super::TAG,
    responses((status = 200, body = Nodes, description = "This node first, then the others by id")))]
pub(super) async fn nodes(_: Admin, State(state): State<AppState>) -> Result<Json<Nodes>, CallError> {
    let shares = state.engine.nodes().await?;
    let nodes = shares
        .into_iter()
        .enumerate()
        .map(|(index, share)| NodeView {
            node: share.node,
            this: index == 0,
            channels: share.channels,
            subscriptions: share.subscriptions,
        })
        .collect();
    Ok(Json(Nodes { cluster: state.config.cluster.clone(), nodes }))
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct ConnectionsQuery {
    /// Sockets listed at most, 1-10000 (default 500).
    #[param(minimum = 1, maximum = 10000)]
    limit: Option<usize>,
}

/// One socket of this node.
#[derive(Serialize, ToSchema)]
pub(crate) struct ConnectionView {
    user: String,
    /// The endpoint's path: `/connect`, `/chat/ws`, `/connection/websocket`, `/ws`…
    endpoint: &'static str,
    /// Where the credential came from: `header`, `query`, `cookie`, `subprotocol`, `frame`, or
    /// `connect proxy`.
    transport: &'static str,
    /// Unix seconds.
    connected_at: i64,
}

/// This node's authenticated sockets.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"node": "6c0e…", "sockets": 2, "users": 1, "connections": [
    {"user": "johndoe", "endpoint": "/chat/ws", "transport": "query", "connected_at": 1765100000}]}))]
pub(crate) struct Connections {
    /// The node that answered: these are its sockets only.
    node: String,
    /// Its sockets bound to a user, and their users: all of them, listed or not.
    sockets: usize,
    users: usize,
    /// The first `limit`, by user, then oldest first.
    connections: Vec<ConnectionView>,
}

/// Who is connected to this node
///
/// The sockets of the node that answers, bound to a user (anonymous sockets of `/ws/optional` are
/// not listed), by user. Nodes do not share their sockets: ask each node for its own.
#[utoipa::path(get, path = "/api/admin/connections", tag = super::TAG,
    params(ConnectionsQuery),
    responses(
        (status = 200, body = Connections, description = "This node's sockets"),
        (status = 422, body = ErrorBody, description = "A bad limit", example = json!({"detail": "limit must be 1-10000"})),
    ))]
pub(super) async fn connections(
    _: Admin,
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<ConnectionsQuery>,
) -> Result<Json<Connections>, CallError> {
    let limit = query.limit.unwrap_or(DEFAULT_CONNECTIONS);
    if !(1..=MAX_CONNECTIONS).contains(&limit) {
        return Err(CallError::invalid(format!("limit must be 1-{MAX_CONNECTIONS}")));
    }
    let roster = state.auth.bindings.roster(limit);
    let connections = roster
        .listed
        .into_iter()
        .map(|s| ConnectionView {
            user: s.user,
            endpoint: s.endpoint,
            transport: s.transport,
            connected_at: s.connected_at,
        })
        .collect();
    let node = state.engine.node().uid.to_owned();
    Ok(Json(Connections { node, sockets: roster.sockets, users: roster.users, connections }))
}

/// This node's counters, since it started. Rates are the difference of two readings over the
/// difference of their `at_ms`.
#[derive(Serialize, ToSchema)]
pub(crate) struct Stats {
    node: String,
    /// When these were read, Unix milliseconds.
    at_ms: i64,
    uptime_s: u64,
    /// WebSockets open now, anonymous ones included.
    sockets: i64,
    /// Client connections open now: HTTP, TLS handshakes and WebSockets.
    connections: i64,
    /// Channels with a subscribed socket here, and the subscriptions.
    channels: u64,
    subscriptions: u64,
    /// Frames queued for this node's sockets.
    deliveries: u64,
    /// Publications made through this node.
    publications: u64,
    /// Messages received on its sockets.
    messages_in: u64,
    /// Password logins, by result.
    logins: BTreeMap<&'static str, u64>,
    /// Refusals by reason: `auth` (a refused authentication, by reason, any endpoint), `sockets`
    /// (WebSockets refused for authentication or origin), `connection_caps` (connections closed at
    /// accept, by cap).
    refusals: Refusals,
    /// Sockets the server closed, by reason.
    closed: BTreeMap<&'static str, u64>,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct Refusals {
    auth: BTreeMap<&'static str, u64>,
    sockets: u64,
    connection_caps: BTreeMap<&'static str, u64>,
}

/// This node's counters
///
/// What `/metrics` counts, for the node that answers, as JSON: sockets and connections open now,
/// deliveries, publications, logins, refusals by reason.
#[utoipa::path(get, path = "/api/admin/stats", tag = super::TAG,
    responses((status = 200, body = Stats, description = "This node's counters")))]
pub(super) async fn stats(_: Admin, State(state): State<AppState>) -> Json<Stats> {
    let (node, metrics) = (state.engine.node(), &state.metrics);
    let refusals = Refusals {
        auth: state.auth.rejections.snapshot().into_iter().collect(),
        sockets: metrics.socket_rejections.get(),
        connection_caps: BTreeMap::from([
            ("total", metrics.connections_refused_total.get()),
            ("per_address", metrics.connections_refused_per_address.get()),
        ]),
    };
    Json(Stats {
        node: node.uid.to_owned(),
        at_ms: crate::clock::now_ms(),
        uptime_s: node.uptime.as_secs(),
        sockets: metrics.sockets_open.get(),
        connections: metrics.connections_open.get(),
        channels: node.tally.channels,
        subscriptions: node.tally.subscriptions,
        deliveries: node.deliveries,
        publications: metrics.publications.get(),
        messages_in: metrics.messages_in.get(),
        logins: BTreeMap::from([("ok", metrics.logins_ok.get()), ("failed", metrics.logins_failed.get())]),
        refusals,
        closed: BTreeMap::from([
            ("expired", metrics.socket_closed_expired.get()),
            ("revoked", metrics.socket_closed_revoked.get()),
        ]),
    })
}
