//! The session's commands, each a thin caller of the channel engine: namespace rules, quotas and
//! recovery are the engine's. Presence and history need the channel subscribed, as wsguard's own
//! protocol does; `rpc` goes to the application's RPC proxy (108 without one, as Centrifugo
//! answers), `send` goes nowhere yet.

use super::session::Session;
use super::wire::{self, Command, HistoryRequest, PublishRequest, SubscribeRequest};
use crate::auth::Identity;
use crate::broker::View;
use crate::centrifugo::codes::{self, Error};
use crate::channels::protocol::{ErrorCode, Refusal, Since, MAX_HISTORY};
use crate::channels::{decided, push, Asking, Publisher};
use crate::proxy::{Caller, RpcRequest};
use crate::store::Range;
use crate::ws::close::Close;
use serde_json::{json, Value};

/// Answers commands that arrived together, in order: a run of publications among them is
/// published together (`Engine::publish_all`: one commit, and each subscriber takes the run in one
/// wake-up and one write), as wsguard's own protocol does. What was answered before a command
/// that closes the connection is sent before the close.
pub(super) async fn answer_all(
    session: &mut Session,
    identity: &Identity,
    commands: Vec<Command>,
) -> (Vec<String>, Option<Close>) {
    let mut replies = Vec::with_capacity(commands.len());
    let mut run: Vec<(u32, PublishRequest)> = Vec::new();
    for mut command in commands {
        if let Some(request) = command.publish.take() {
            run.push((command.id, request));
            continue;
        }
        let (published, close) = publish_run(session, std::mem::take(&mut run)).await;
        replies.extend(published);
        if close.is_some() {
            return (replies, close);
        }
        // Boxed: a command's future (store calls) would otherwise enlarge every socket's task.
        match Box::pin(answer(session, identity, command)).await {
            Ok(reply) => replies.extend(reply),
            Err(close) => return (replies, Some(close)),
        }
    }
    let (published, close) = publish_run(session, run).await;
    replies.extend(published);
    (replies, close)
}

/// A run of `publish` commands, published together; a reply each, in order, up to one the
/// application answered with a disconnect.
async fn publish_run(session: &Session, run: Vec<(u32, PublishRequest)>) -> (Vec<String>, Option<Close>) {
    if run.is_empty() {
        return (Vec::new(), None);
    }
    let engine = session.subscriber.engine().clone();
    let batch: Vec<(&str, &Value)> = run.iter().map(|(_, r)| (r.channel.as_str(), &r.data)).collect();
    let published = Box::pin(engine.publish_all(Publisher::Subscriber(&session.subscriber), &batch)).await;
    let mut replies = Vec::with_capacity(run.len());
    for ((id, _), answer) in run.iter().zip(published) {
        replies.push(match answer.map_err(error) {
            Ok(_) => wire::reply(*id, "publish", json!({})),
            Err(Failed::Reply(error)) => wire::error(*id, error),
            Err(Failed::Close(close)) => return (replies, Some(close)),
        });
    }
    (replies, None)
}

/// Answers one command: its reply (none for `send` and a pong), or the close it calls for.
pub(super) async fn answer(
    session: &mut Session,
    identity: &Identity,
    command: Command,
) -> Result<Option<String>, Close> {
    let id = command.id;
    let answered = if let Some(request) = command.subscribe {
        subscribe(session, identity, request).await.map(|result| ("subscribe", result))
    } else if let Some(request) = command.unsubscribe {
        session.subscriber.unfollow(&request.channel).await;
        Ok(("unsubscribe", json!({})))
    } else if let Some(request) = command.publish {
        let engine = session.subscriber.engine().clone();
        let from = Publisher::Subscriber(&session.subscriber);
        engine
            .publish(from, &request.channel, &request.data)
            .await
            .map_err(error)
            .map(|_| ("publish", json!({})))
    } else if let Some(request) = command.presence {
        presence(session, &request.channel).await.map(|users| {
            let clients: serde_json::Map<String, Value> =
                users.iter().map(|user| (user.clone(), json!({"user": user, "client": user}))).collect();
            ("presence", json!({"presence": clients}))
        })
    } else if let Some(request) = command.presence_stats {
        // Presence is per user: one client counted per user present.
        presence(session, &request.channel)
            .await
            .map(|users| ("presence_stats", json!({"num_clients": users.len(), "num_users": users.len()})))
    } else if let Some(request) = command.history {
        history(session, request).await.map(|result| ("history", result))
    } else if command.ping.is_some() {
        Ok(("ping", json!({})))
    } else if let Some(request) = command.rpc {
        rpc(session, identity, request).await.map(|result| ("rpc", result))
    } else if let Some(request) = command.sub_refresh {
        let renewed = session.subscriber.renew(&request.channel, &request.token).await;
        renewed.map_err(error).map(|expires_at| ("sub_refresh", expiry(expires_at)))
    } else if command.connect.is_some() || command.refresh.is_some() {
        // Connected once already; a refresh in a batch of commands is not one the socket reads.
        return Err(Close::new(codes::BAD_REQUEST_CLOSE.code, codes::BAD_REQUEST_CLOSE.reason));
    } else {
        // `send` (no reply) and a pong (`{}`).
        return Ok(None);
    };
    Ok(Some(match answered {
        Ok((kind, result)) => wire::reply(id, kind, result),
        Err(Failed::Reply(refused)) => wire::error(id, refused),
        Err(Failed::Close(close)) => return Err(close),
    }))
}

/// A command that failed: an error reply, or the application's disconnect.
enum Failed {
    Reply(Error),
    Close(Close),
}

impl From<Error> for Failed {
    fn from(error: Error) -> Failed {
        Failed::Reply(error)
    }
}

/// A refusal of the engine as the protocol's error, or the application's disconnect.
fn error(refusal: Refusal) -> Failed {
    if let Some(close) = refusal.close() {
        return Failed::Close(close);
    }
    Failed::Reply(protocol_error(refusal))
}

fn protocol_error(refusal: Refusal) -> Error {
    let code = match refusal.code {
        ErrorCode::Application(code) => {
            return Error { code, message: refusal.detail, temporary: false };
        }
        ErrorCode::Forbidden | ErrorCode::Disconnect(_) => codes::PERMISSION_DENIED,
        ErrorCode::RateLimited => codes::TOO_MANY_REQUESTS,
        ErrorCode::TokenExpired => codes::TOKEN_EXPIRED,
        ErrorCode::Unavailable => codes::INTERNAL,
        ErrorCode::BadRequest if refusal.detail.starts_with("unknown namespace") => codes::UNKNOWN_CHANNEL,
        ErrorCode::BadRequest | ErrorCode::TooBig => codes::BAD_REQUEST,
    };
    code.because(refusal.detail)
}

/// Follows the channel, recovering from `offset` in `epoch` when asked: the recovered
/// publications come in the reply, `recovered` says whether they are all that was missed.
async fn subscribe(
    session: &mut Session,
    identity: &Identity,
    request: SubscribeRequest,
) -> Result<Value, Failed> {
    let name = request.channel;
    if session.subscriber.follows(&name).is_some() {
        return Err(codes::ALREADY_SUBSCRIBED.error().into());
    }
    let recoverable = session.subscriber.engine().resolve(&name).map_err(error)?.namespace.history.is_some();
    let since = request.recover.then_some(Since { offset: request.offset, epoch: request.epoch });
    // Join and leave pushes only when asked for, as Centrifugo sends them.
    let view = if request.join_leave { View::CentrifugoJoinLeave } else { View::Centrifugo };
    let client = session.subscriber.client().to_string();
    let token = Some(request.token.as_str()).filter(|token| !token.is_empty());
    let asking =
        Asking { client: &client, via: session.subscriber.via(), token, data: request.data.as_ref() };
    let subscribed =
        session.subscriber.subscribe(identity, &name, since.as_ref(), view, &asking).await.map_err(error)?;
    let publications: Vec<&serde_json::value::RawValue> = subscribed
        .frames
        .iter()
        .filter_map(|frame| push::publication_item(frame, &name))
        .filter_map(|item| serde_json::from_str(item).ok())
        .collect();
    let (offset, epoch) = subscribed.position.map_or((0, String::new()), |p| (p.offset, p.epoch));
    let mut result = json!({"offset": offset, "epoch": epoch, "publications": publications});
    if recoverable {
        result["recoverable"] = true.into();
        result["positioned"] = true.into();
    }
    if let Some(recovered) = subscribed.recovered {
        result["was_recovering"] = true.into();
        result["recovered"] = recovered.into();
    }
    if let Some(data) = subscribed.consent.data {
        result["data"] = data;
    }
    if let (Value::Object(expiry), Some(result)) =
        (expiry(subscribed.consent.expires_at), result.as_object_mut())
    {
        result.extend(expiry);
    }
    Ok(result)
}

/// When a subscription must be renewed, as the SDK reads it: `expires` and `ttl` seconds (the
/// SDK sends `sub_refresh` then), or nothing for one that lasts with the connection.
fn expiry(expires_at: Option<i64>) -> Value {
    match expires_at {
        Some(at) => json!({"expires": true, "ttl": crate::clock::until(at).as_secs().max(1)}),
        None => json!({}),
    }
}

/// The SDK's `rpc`, answered by the application's RPC proxy: 108 without one, as Centrifugo
/// answers.
async fn rpc(session: &Session, identity: &Identity, request: wire::RpcRequest) -> Result<Value, Failed> {
    let Some(proxy) = session.subscriber.engine().application().filter(|proxy| proxy.answers_rpc()) else {
        let error = codes::NOT_AVAILABLE.because(format!("RPC is not served (method {:?})", request.method));
        return Err(error.into());
    };
    let client = session.subscriber.client().to_string();
    let call = RpcRequest {
        caller: Caller::new(&client, session.subscriber.via()),
        user: &identity.user.username,
        method: &request.method,
        data: request.data.as_ref(),
    };
    let result = decided(proxy.rpc(&call).await).map_err(error)?;
    Ok(result.data.map_or_else(|| json!({}), |data| json!({"data": data})))
}

/// The users present in a channel this connection follows.
async fn presence(session: &Session, name: &str) -> Result<std::collections::BTreeSet<String>, Failed> {
    if session.subscriber.follows(name).is_none() {
        return Err(codes::PERMISSION_DENIED.because("subscribe to the channel first").into());
    }
    session.subscriber.engine().presence(name).await.map_err(|refusal| match refusal.code {
        ErrorCode::BadRequest => codes::NOT_AVAILABLE.because(refusal.detail).into(),
        _ => error(refusal),
    })
}

/// A page of a followed channel's history: the newest `limit` (oldest first, or newest first
/// with `reverse`), or those after `since` in its epoch; `limit` 0 answers where it stands.
async fn history(session: &Session, request: HistoryRequest) -> Result<Value, Failed> {
    let name = request.channel;
    if session.subscriber.follows(&name).is_none() {
        return Err(codes::PERMISSION_DENIED.because("subscribe to the channel first").into());
    }
    if request.limit < 0 {
        return Err(codes::BAD_REQUEST.because("limit must not be negative").into());
    }
    let limit = request.limit.min(MAX_HISTORY);
    let range = match &request.since {
        Some(since) => Range::After(since.offset),
        None => Range::Before(i64::MAX),
    };
    let engine = session.subscriber.engine();
    let (mut stored, position) = engine.history(&name, range, limit).await.map_err(error)?;
    let (offset, epoch) = position.map_or((0, String::new()), |p| (p.offset, p.epoch));
    if let Some(since) = request.since.as_ref().filter(|since| !since.epoch.is_empty()) {
        if since.epoch != epoch {
            return Err(codes::UNRECOVERABLE_POSITION.error().into());
        }
    }
    if request.reverse {
        stored.reverse();
    }
    let publications: Vec<Value> = stored
        .iter()
        .filter_map(|p| {
            let data: Value = serde_json::from_str(&p.data).ok()?;
            serde_json::to_value(push::PublicationItem::new(p, &data)).ok()
        })
        .collect();
    Ok(json!({"publications": publications, "offset": offset, "epoch": epoch}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engine_refusals_become_protocol_errors() {
        let cases = [
            (ErrorCode::Forbidden, "no", 103),
            (ErrorCode::RateLimited, "slow down", 111),
            (ErrorCode::Unavailable, "try again", 100),
            (ErrorCode::BadRequest, "unknown namespace \"x\"", 102),
            (ErrorCode::BadRequest, "bad name", 107),
            (ErrorCode::TooBig, "too big", 107),
            (ErrorCode::TokenExpired, "expired", 109),
            (ErrorCode::Application(4031), "not a member", 4031),
        ];
        for (code, detail, expected) in cases {
            let error = protocol_error(Refusal::new(code, detail));
            assert_eq!((error.code, error.message.as_str()), (expected, detail));
        }
        assert!(protocol_error(Refusal::new(ErrorCode::Unavailable, "")).temporary);
        let Failed::Close(close) = error(Refusal::new(ErrorCode::Disconnect(4501), "banned")) else {
            panic!("the application's disconnect closes the connection");
        };
        assert_eq!(close, Close::new(4501, "banned"));
    }
}
