//! Channels: one model for the chat's rooms (the default namespace), the configured namespaces and
//! the personal `user:<name>` channels. A publication is stored first when its namespace keeps
//! history (numbered by the store), then fanned out through the broker, rendered once for both
//! views (`protocol`). Sockets follow channels through the hub; the server API publishes here too.

pub(crate) mod namespaces;
pub mod protocol;

use crate::app::AppState;
use crate::broker::{Change, Frames, Presence, View};
use crate::store::{Publication, StoreError};
use namespaces::Channel;
use serde_json::Value;
use std::future::Future;
use std::pin::Pin;
use std::task::Poll;

/// Publishes `data` to `channel` from `sender` (`None`: the server API). In a namespace with
/// history the publication is stored and numbered first, and its offset returned: once this
/// returns it is durable. A fan-out failure is logged, not returned: the publication is in
/// history either way.
pub(crate) async fn publish(
    state: &AppState,
    channel: &Channel<'_>,
    sender: Option<&str>,
    data: &Value,
) -> Result<Option<i64>, StoreError> {
    let (publication, epoch) = store(state, channel, sender, data).await?;
    let frames = protocol::publication(&publication, data, &epoch);
    if let Err(err) = state.broker.publish(channel.name, frames).await {
        tracing::warn!(error = %err, channel = channel.name, "fan-out failed");
    }
    state.metrics.publications.inc();
    Ok((publication.offset > 0).then_some(publication.offset))
}

/// Publishes each of `batch` from `sender`, as [`publish`] does, and answers each in order. They
/// are stored together (one group commit) and each channel's run of them is fanned out together,
/// so a subscriber takes them in one wake-up and one write: what a client's publications that
/// arrived together cost is shared.
pub(crate) async fn publish_all(
    state: &AppState,
    batch: &[(Channel<'_>, Value)],
    sender: Option<&str>,
) -> Vec<Result<Option<i64>, StoreError>> {
    let stored = join_in_order(batch.iter().map(|(channel, data)| store(state, channel, sender, data))).await;
    let mut answers = Vec::with_capacity(batch.len());
    let mut run: Vec<Frames> = Vec::new();
    let mut run_channel = "";
    for ((channel, data), stored) in batch.iter().zip(stored) {
        let (publication, epoch) = match stored {
            Ok(stored) => stored,
            Err(err) => {
                answers.push(Err(err));
                continue;
            }
        };
        if channel.name != run_channel {
            fan_out_all(state, run_channel, std::mem::take(&mut run)).await;
            run_channel = channel.name;
        }
        run.push(protocol::publication(&publication, data, &epoch));
        answers.push(Ok((publication.offset > 0).then_some(publication.offset)));
    }
    fan_out_all(state, run_channel, run).await;
    answers
}

/// Runs `futures` together and returns their outputs in order, polling them in order on every
/// wake-up. A store call queues its publication for the store's writer on its first poll, so the
/// offsets follow the order of the batch (`join_all` does not promise that first poll order).
async fn join_in_order<F: Future>(futures: impl Iterator<Item = F>) -> Vec<F::Output> {
    let mut futures: Vec<Pin<Box<F>>> = futures.map(Box::pin).collect();
    let mut outputs: Vec<Option<F::Output>> = futures.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut done = true;
        for (future, output) in futures.iter_mut().zip(outputs.iter_mut()) {
            if output.is_none() {
                match future.as_mut().poll(cx) {
                    Poll::Ready(value) => *output = Some(value),
                    Poll::Pending => done = false,
                }
            }
        }
        if done {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    })
    .await;
    outputs.into_iter().flatten().collect()
}

/// Hands a run of one channel's publications to the broker.
async fn fan_out_all(state: &AppState, channel: &str, run: Vec<Frames>) {
    if run.is_empty() {
        return;
    }
    let published = run.len() as u64;
    if let Err(err) = state.broker.publish_all(channel, run).await {
        tracing::warn!(error = %err, channel, "fan-out failed");
    }
    state.metrics.publications.inc_by(published);
}

/// Stores `data` as `channel`'s next publication where its namespace keeps history (else only
/// stamps it): the publication and the channel's epoch (`""` without history).
async fn store(
    state: &AppState,
    channel: &Channel<'_>,
    sender: Option<&str>,
    data: &Value,
) -> Result<(Publication, String), StoreError> {
    let text = data.to_string();
    let created_ms = crate::clock::now_ms();
    match channel.namespace.history {
        Some(retention) => {
            let (publication, position) =
                state.store.publish(channel.name, sender, &text, created_ms, retention).await?;
            Ok((publication, position.epoch))
        }
        None => {
            let publication = Publication {
                channel: channel.name.to_owned(),
                offset: 0,
                sender: sender.map(str::to_owned),
                data: text,
                created_ms,
            };
            Ok((publication, String::new()))
        }
    }
}

/// Adds a socket of `username` to `channel` on this node, seeing it in `view`; announces the user
/// where the namespace has presence. False when the socket already follows the channel.
pub(crate) async fn follow(
    state: &AppState,
    socket: u64,
    username: &str,
    channel: &Channel<'_>,
    view: View,
) -> bool {
    let Some(change) = state.hub.join(socket, channel.name, view) else {
        return false;
    };
    announce(state, channel.name, username, Presence::Joined, change, channel.namespace.presence).await;
    true
}

/// Removes a socket from `channel` on this node. False when it did not follow the channel.
pub(crate) async fn unfollow(
    state: &AppState,
    socket: u64,
    username: &str,
    channel: &str,
    presence: bool,
) -> bool {
    let Some(change) = state.hub.leave(socket, channel) else {
        return false;
    };
    announce(state, channel, username, Presence::Left, change, presence).await;
    true
}

/// Keeps the broker subscribed to channels with local sockets only, and publishes a presence
/// change (`presence`: the namespace tracks it) when the user's first or last socket moved.
pub(crate) async fn announce(
    state: &AppState,
    channel: &str,
    username: &str,
    presence: Presence,
    change: Change,
    tracked: bool,
) {
    let broker = &state.broker;
    // A socket joined or left: this node's count of the channel changed (the server API lists them).
    if let Err(err) = broker.share_subscribers(channel).await {
        tracing::warn!(error = %err, channel, "sharing the channel's socket count failed");
    }
    if change.channel_edge {
        let result = match presence {
            Presence::Joined => broker.subscribe(channel).await,
            Presence::Left => broker.unsubscribe(channel).await,
        };
        if let Err(err) = result {
            tracing::warn!(error = %err, channel, "broker subscription change failed");
        }
    }
    if !change.user_edge || !tracked {
        return;
    }
    // The user's first (or last) socket here; other nodes may still have them in the channel.
    let announce = broker.presence(channel, username, presence).await.unwrap_or_else(|err| {
        tracing::warn!(error = %err, channel, "shared presence unavailable");
        true
    });
    if announce {
        if let Err(err) = broker.publish(channel, protocol::presence(channel, username, presence)).await {
            tracing::warn!(error = %err, channel, "presence fan-out failed");
        }
    }
}
