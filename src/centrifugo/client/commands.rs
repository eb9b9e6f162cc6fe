//! The session's commands, each a thin caller of the channel engine: namespace rules, quotas and
//! recovery are the engine's. Presence and history need the channel subscribed, as wsguard's own
//! protocol does; `rpc` is not available until the application's proxy is served (108, as Centrifugo
//! answers without an RPC proxy), `send` goes nowhere yet.

use super::session::Session;
use super::wire::{self, Command, HistoryRequest, PublishRequest, SubscribeRequest};
use crate::auth::Identity;
use crate::broker::View;
use crate::centrifugo::codes::{self, Error};
use crate::channels::protocol::{ErrorCode, Refusal, Since, MAX_HISTORY};
use crate::channels::{push, Publisher};
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
        replies.extend(publish_run(session, std::mem::take(&mut run)).await);
        // Boxed: a command's future (store calls) would otherwise enlarge every socket's task.
        match Box::pin(answer(session, identity, command)).await {
            Ok(reply) => replies.extend(reply),
            Err(close) => return (replies, Some(close)),
        }
    }
    replies.extend(publish_run(session, run).await);
    (replies, None)
}

/// A run of `publish` commands, published together; a reply each, in order.
async fn publish_run(session: &Session, run: Vec<(u32, PublishRequest)>) -> Vec<String> {
    if run.is_empty() {
        return Vec::new();
    }
    let engine = session.subscriber.engine().clone();
    let batch: Vec<(&str, &Value)> = run.iter().map(|(_, r)| (r.channel.as_str(), &r.data)).collect();
    let published = Box::pin(engine.publish_all(Publisher::Subscriber(&session.subscriber), &batch)).await;
    run.iter()
        .zip(published)
        .map(|((id, _), answer)| match answer {
            Ok(_) => wire::reply(*id, "publish", json!({})),
            Err(refusal) => wire::error(*id, error(refusal)),
        })
        .collect()
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
    } else if let Some(rpc) = command.rpc {
        // Centrifugo without an RPC proxy has no RPC handler, and answers every `rpc` with 108.
        Err(codes::NOT_AVAILABLE.because(format!("RPC is not served (method {:?})", rpc.method)))
    } else if command.sub_refresh.is_some() {
        Err(codes::NOT_AVAILABLE.because("subscription tokens are not served"))
    } else if command.connect.is_some() || command.refresh.is_some() {
        // Connected once already; a refresh in a batch of commands is not one the socket reads.
        return Err(Close::new(codes::BAD_REQUEST_CLOSE.code, codes::BAD_REQUEST_CLOSE.reason));
    } else {
        // `send` (no reply) and a pong (`{}`).
        return Ok(None);
    };
    Ok(Some(match answered {
        Ok((kind, result)) => wire::reply(id, kind, result),
        Err(refused) => wire::error(id, refused),
    }))
}

/// A refusal of the engine as the protocol's error.
fn error(refusal: Refusal) -> Error {
    let code = match refusal.code {
        ErrorCode::Forbidden => codes::PERMISSION_DENIED,
        ErrorCode::RateLimited => codes::TOO_MANY_REQUESTS,
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
) -> Result<Value, Error> {
    let name = request.channel;
    if session.subscriber.follows(&name).is_some() {
        return Err(codes::ALREADY_SUBSCRIBED.error());
    }
    if !request.token.is_empty() {
        return Err(codes::NOT_AVAILABLE.because("subscription tokens are not served"));
    }
    let recoverable = session.subscriber.engine().resolve(&name).map_err(error)?.namespace.history.is_some();
    let since = request.recover.then_some(Since { offset: request.offset, epoch: request.epoch });
    // Join and leave pushes only when asked for, as Centrifugo sends them.
    let view = if request.join_leave { View::CentrifugoJoinLeave } else { View::Centrifugo };
    let subscribed =
        session.subscriber.subscribe(identity, &name, since.as_ref(), view).await.map_err(error)?;
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
    Ok(result)
}

/// The users present in a channel this connection follows.
async fn presence(session: &Session, name: &str) -> Result<std::collections::BTreeSet<String>, Error> {
    if session.subscriber.follows(name).is_none() {
        return Err(codes::PERMISSION_DENIED.because("subscribe to the channel first"));
    }
    session.subscriber.engine().presence(name).await.map_err(|refusal| match refusal.code {
        ErrorCode::BadRequest => codes::NOT_AVAILABLE.because(refusal.detail),
        _ => error(refusal),
    })
}

/// A page of a followed channel's history: the newest `limit` (oldest first, or newest first
/// with `reverse`), or those after `since` in its epoch; `limit` 0 answers where it stands.
async fn history(session: &Session, request: HistoryRequest) -> Result<Value, Error> {
    let name = request.channel;
    if session.subscriber.follows(&name).is_none() {
        return Err(codes::PERMISSION_DENIED.because("subscribe to the channel first"));
    }
    if request.limit < 0 {
        return Err(codes::BAD_REQUEST.because("limit must not be negative"));
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
            return Err(codes::UNRECOVERABLE_POSITION.error());
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
        ];
        for (code, detail, expected) in cases {
            let error = error(Refusal::new(code, detail));
            assert_eq!((error.code, error.message.as_str()), (expected, detail));
        }
        assert!(super::error(Refusal::new(ErrorCode::Unavailable, "")).temporary);
    }
}
