//! The commands of wsguard's JSON protocol, one file each, answered with the frames to send.
//! Each is a thin caller of the channel engine through the socket's subscriber: the engine checks
//! the namespace rules and quotas; a command adds only what its frames mean (a room must be
//! joined to send to it or read its history, say).

mod history;
mod join;
mod leave;
mod publish;
mod rpc;
mod send;
mod subscribe;
mod unsubscribe;

use crate::auth::Identity;
use crate::broker::Utf8Bytes;
use crate::channels::protocol::{self, Command, ErrorCode, Refusal};
use crate::channels::Subscriber;
use crate::ws::close::Close;

/// Answers one command.
pub(super) async fn apply(
    subscriber: &mut Subscriber,
    command: Command,
    identity: Option<&Identity>,
) -> Result<Vec<String>, Refusal> {
    match command {
        Command::Join { room, since } => join::join(subscriber, signed_in(identity)?, room, since).await,
        Command::Leave { room } => leave::leave(subscriber, room).await,
        Command::Send { room, text, reference } => send::send(subscriber, room, text, reference).await,
        Command::History { room, before, limit } => history::history(subscriber, room, before, limit).await,
        Command::Subscribe { channel, since, token, data } => {
            let asking = subscribe::Asked { token, data };
            subscribe::subscribe(subscriber, signed_in(identity)?, channel, since, asking).await
        }
        Command::Unsubscribe { channel } => unsubscribe::unsubscribe(subscriber, channel).await,
        Command::Publish { channel, data, reference } => {
            publish::publish(subscriber, publish::Publish { channel, data, reference }).await
        }
        Command::Rpc { method, data, reference } => {
            rpc::rpc(subscriber, &method, data.as_ref(), reference.as_deref()).await
        }
        Command::Ping => Ok(vec![protocol::pong()]),
    }
}

/// Answers commands that arrived together, in order. A run of publications among them is
/// published together (`Engine::publish_all`), so that a client publishing faster than one round
/// trip at a time has its publications stored in one commit and written to each subscriber in
/// one go. The application's disconnect ends the answers with its close.
pub(super) async fn answer_all(
    subscriber: &mut Subscriber,
    texts: Vec<Utf8Bytes>,
    identity: Option<&Identity>,
) -> (Vec<String>, Option<Close>) {
    let mut replies = Vec::new();
    let mut run: Vec<publish::Publish> = Vec::new();
    for text in &texts {
        let command = match protocol::parse(text.as_str()) {
            Ok(Command::Publish { channel, data, reference }) => {
                run.push(publish::Publish { channel, data, reference });
                continue;
            }
            command => command,
        };
        let (published, close) = publish::publish_run(subscriber, std::mem::take(&mut run)).await;
        replies.extend(published);
        if close.is_some() {
            return (replies, close);
        }
        let (answer, about) = match command {
            Ok(command) => {
                let about = command.about().map(|(key, name)| (key, name.to_owned()));
                (apply(subscriber, command, identity).await, about)
            }
            Err(refusal) => (Err(refusal), None),
        };
        match answer {
            Ok(frames) => replies.extend(frames),
            Err(refusal) => match refusal.close() {
                Some(close) => return (replies, Some(close)),
                None => replies.push(refusal.frame_about(about.as_ref().map(|(k, n)| (*k, n.as_str())))),
            },
        }
    }
    let (published, close) = publish::publish_run(subscriber, run).await;
    replies.extend(published);
    (replies, close)
}

/// The socket's identity: every socket of these endpoints has one once admitted.
fn signed_in(identity: Option<&Identity>) -> Result<&Identity, Refusal> {
    identity.ok_or_else(|| Refusal::new(ErrorCode::Forbidden, "not authenticated"))
}
