//! `publish`: data to a channel, acknowledged with its offset once stored. A run of them that
//! arrived together is published together.

use crate::channels::protocol::{self, Refusal};
use crate::channels::{Publisher, Subscriber};
use crate::ws::close::Close;
use serde_json::Value;

/// A `publish` command.
pub(super) struct Publish {
    pub(super) channel: String,
    pub(super) data: Value,
    pub(super) reference: Option<String>,
}

pub(super) async fn publish(subscriber: &mut Subscriber, command: Publish) -> Result<Vec<String>, Refusal> {
    let Publish { channel, data, reference } = command;
    protocol::check_ref(reference.as_deref())?;
    let engine = subscriber.engine().clone();
    let offset =
        engine.publish(Publisher::Subscriber(subscriber), &channel, &data).await?.map(|at| at.offset);
    Ok(vec![protocol::published(reference.as_deref(), offset)])
}

/// Answers each of a run of `publish` commands, in order, publishing them together; one alone
/// goes the usual way. The application's disconnect ends the answers with its close.
pub(super) async fn publish_run(
    subscriber: &mut Subscriber,
    mut run: Vec<Publish>,
) -> (Vec<String>, Option<Close>) {
    if run.len() <= 1 {
        let Some(command) = run.pop() else {
            return (Vec::new(), None);
        };
        let channel = command.channel.clone();
        return match publish(subscriber, command).await {
            Ok(frames) => (frames, None),
            Err(refusal) => match refusal.close() {
                Some(close) => (Vec::new(), Some(close)),
                None => (vec![refusal.frame_about(Some(("channel", &channel)))], None),
            },
        };
    }
    let mut answers: Vec<Option<String>> = vec![None; run.len()];
    let mut batch = Vec::with_capacity(run.len());
    let mut batched = Vec::with_capacity(run.len());
    for (at, command) in run.iter().enumerate() {
        match protocol::check_ref(command.reference.as_deref()) {
            Ok(()) => {
                batch.push((command.channel.as_str(), &command.data));
                batched.push(at);
            }
            Err(refusal) => answers[at] = Some(refusal.frame_about(Some(("channel", &command.channel)))),
        }
    }
    let engine = subscriber.engine().clone();
    let published = engine.publish_all(Publisher::Subscriber(subscriber), &batch).await;
    for (at, published) in batched.into_iter().zip(published) {
        answers[at] = Some(match published {
            Ok(position) => protocol::published(run[at].reference.as_deref(), position.map(|p| p.offset)),
            Err(refusal) => match refusal.close() {
                Some(close) => return (answers.into_iter().take(at).flatten().collect(), Some(close)),
                None => refusal.frame_about(Some(("channel", &run[at].channel))),
            },
        });
    }
    (answers.into_iter().flatten().collect(), None)
}
