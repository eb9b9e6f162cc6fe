//! `presence`, `presence_stats`, `channels` and `info`: what the engine knows of who is where,
//! across every node (`info`: this node). Scope `read`.
//!
//! wsguard's presence is per user, shared by the nodes, not per connection: `presence` answers one
//! entry per user, keyed by the user ID, whose `client` is that same ID. `presence_stats` counts
//! connections (sockets) and users exactly.

use super::super::codes::Error;
use super::params::{channel_param, channel_refusal, decode, Feature};
use super::reply::bad_request;
use super::Call;
use crate::channels::namespaces::glob_matches;
use serde::Deserialize;
use serde_json::{json, Map, Value};

#[derive(Deserialize)]
struct ChannelsParams {
    pattern: Option<String>,
}

pub(super) async fn presence(call: &Call<'_>, params: Value) -> Result<Value, Error> {
    let engine = &call.state.engine;
    let name = channel_param(engine, "presence", params, Feature::Presence)?;
    let users = engine.presence(&name).await.map_err(|refused| channel_refusal(engine, &name, refused))?;
    let presence: Map<String, Value> =
        users.into_iter().map(|user| (user.clone(), json!({ "client": user, "user": user }))).collect();
    Ok(json!({ "presence": presence }))
}

pub(super) async fn presence_stats(call: &Call<'_>, params: Value) -> Result<Value, Error> {
    let engine = &call.state.engine;
    let name = channel_param(engine, "presence_stats", params, Feature::Presence)?;
    let stats =
        engine.presence_stats(&name).await.map_err(|refused| channel_refusal(engine, &name, refused))?;
    Ok(json!({ "num_clients": stats.sockets, "num_users": stats.users }))
}

/// Every channel with a subscribed socket on any node, and how many; `pattern` keeps those it
/// matches, `*` standing for any run of characters.
pub(super) async fn channels(call: &Call<'_>, params: Value) -> Result<Value, Error> {
    let ChannelsParams { pattern } = decode("channels", params)?;
    let pattern = pattern.filter(|p| !p.is_empty());
    if pattern.as_deref().is_some_and(|p| p.contains(['?', '[', ']', '{', '}', '\\', '!'])) {
        return Err(bad_request("bad request: pattern: only * (any run of characters) is supported"));
    }
    let engine = &call.state.engine;
    let counts = engine.channels().await.map_err(|refused| super::reply::refusal(refused, false))?;
    let channels: Map<String, Value> = counts
        .into_iter()
        .filter(|(name, _)| pattern.as_deref().is_none_or(|p| glob_matches(p, name)))
        .map(|(name, sockets)| (name, json!({ "num_clients": sockets })))
        .collect();
    Ok(json!({ "channels": channels }))
}

/// This node, the one that answers: wsguard's nodes share presence and channels through the
/// broker, not descriptions of each other.
pub(super) async fn info(call: &Call<'_>, params: Value) -> Result<Value, Error> {
    let _: Map<String, Value> = decode("info", params)?;
    let node = call.state.engine.node();
    Ok(json!({ "nodes": [{
        "uid": node.uid,
        "name": call.state.config.cluster,
        "version": env!("CARGO_PKG_VERSION"),
        "num_clients": node.tally.sockets,
        "num_users": node.tally.users,
        "num_channels": node.tally.channels,
        "num_subs": node.tally.subscriptions,
        "uptime": node.uptime.as_secs(),
    }]}))
}
