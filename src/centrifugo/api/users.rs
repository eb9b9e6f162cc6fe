//! What the Centrifugo API does to a user's connections: `disconnect` and `invalidate_user_tokens`
//! are wsguard's `/api/users/{username}/disconnect` and `/revoke`, on every node. `subscribe`,
//! `unsubscribe` and `refresh` act on chosen live connections, which wsguard's engine has no way
//! to do: they are checked, then answered "not available". Scope `disconnect`.

use super::super::codes::Error;
use super::params::{channel, decode, given, refuse_if, user};
use super::reply::{not_available, store_error};
use super::Call;
use crate::auth::logins;
use serde::Deserialize;
use serde_json::{Map, Value};

/// How far `issued_before` may be from the server's clock and still mean "now".
const NOW_LEEWAY_SECS: i64 = 5;

#[derive(Deserialize)]
struct UserChannelParams {
    user: String,
    channel: String,
}

#[derive(Deserialize)]
struct UserParams {
    user: String,
}

#[derive(Deserialize)]
struct DisconnectParams {
    user: String,
    client: Option<String>,
    session: Option<String>,
    whitelist: Option<Vec<String>>,
    disconnect: Option<Value>,
}

#[derive(Deserialize)]
struct InvalidateParams {
    user: String,
    issued_before: Option<i64>,
    channel: Option<String>,
    /// Until when Centrifugo keeps the invalidation: wsguard keeps it as long as any token of the
    /// user can live, which is never shorter. Accepted, not needed.
    #[allow(dead_code)]
    expire_at: Option<i64>,
}

fn done() -> Value {
    Value::Object(Map::new())
}

/// A server-side subscription: the user's live connections would follow the channel without
/// asking. wsguard's sockets subscribe themselves, under their token's rules.
pub(super) async fn subscribe(call: &Call<'_>, params: Value) -> Result<Value, Error> {
    let request: UserChannelParams = decode("subscribe", params)?;
    user(&request.user)?;
    channel(&call.state.engine, &request.channel)?;
    Err(not_available("subscribe: server-side subscriptions; a client subscribes its connection itself"))
}

pub(super) async fn unsubscribe(call: &Call<'_>, params: Value) -> Result<Value, Error> {
    let request: UserChannelParams = decode("unsubscribe", params)?;
    user(&request.user)?;
    channel(&call.state.engine, &request.channel)?;
    Err(not_available(
        "unsubscribe: ending one channel's subscriptions of a user; disconnect ends all of them",
    ))
}

/// A connection's expiry is its token's in wsguard: a client refreshes by presenting a new token.
pub(super) async fn refresh(_: &Call<'_>, params: Value) -> Result<Value, Error> {
    let request: UserParams = decode("refresh", params)?;
    user(&request.user)?;
    Err(not_available("refresh: a connection lives as long as its token; the client presents a new one"))
}

/// Closes every connection of the user on every node; nothing is revoked, the client may
/// reconnect. Only the whole user: wsguard's disconnects name no connection.
pub(super) async fn disconnect(call: &Call<'_>, params: Value) -> Result<Value, Error> {
    let request: DisconnectParams = decode("disconnect", params)?;
    let name = user(&request.user)?;
    let one = "connections are disconnected per user, all of them";
    refuse_if(given(&request.client), "client", one)?;
    refuse_if(given(&request.session), "session", one)?;
    refuse_if(request.whitelist.as_ref().is_some_and(|w| !w.is_empty()), "whitelist", one)?;
    refuse_if(request.disconnect.is_some(), "disconnect", "connections close with wsguard's own code")?;
    let state = call.state;
    logins::disconnect_user(state.store.as_ref(), &state.auth, name).await.map_err(store_error)?;
    tracing::info!(key = call.key, username = name, "user disconnected through the centrifugo API");
    Ok(done())
}

/// wsguard's user revocation: every token of the user issued until now, wsguard's and trusted
/// issuers', is refused on every node, their logins end and their connections close.
pub(super) async fn invalidate_user_tokens(call: &Call<'_>, params: Value) -> Result<Value, Error> {
    let request: InvalidateParams = decode("invalidate_user_tokens", params)?;
    let name = user(&request.user)?;
    refuse_if(given(&request.channel), "channel", "there are no per-channel (subscription) tokens")?;
    let now = crate::clock::now_secs();
    let other_time = request.issued_before.is_some_and(|at| (at - now).abs() > NOW_LEEWAY_SECS);
    refuse_if(other_time, "issued_before", "tokens are invalidated up to now (leave issued_before out)")?;
    let state = call.state;
    let revoked = logins::revoke_user(state.store.as_ref(), &state.auth, name).await.map_err(store_error)?;
    tracing::info!(
        key = call.key,
        username = name,
        logins = revoked.logins,
        "user revoked through the centrifugo API"
    );
    Ok(done())
}
