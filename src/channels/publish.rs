//! Publishing: one path for a client's publications and the server API's, to one channel or many.
//! A publication is checked against its namespace (who may publish, what a room holds) and its
//! publisher's daily quota, stored and numbered first where the namespace keeps history, then
//! fanned out through the broker, rendered once for every view (`protocol`).

use super::namespaces::Channel;
use super::protocol::{self, chat_text, ErrorCode, Refusal};
use super::subscriber::Subscriber;
use super::{storage_unavailable, unavailable, Engine};
use crate::broker::Frames;
use crate::store::{NewPublication, Position, Publication, StoreError};
use serde_json::value::RawValue;
use serde_json::Value;
use std::future::Future;
use std::pin::Pin;
use std::task::Poll;

/// Who publishes.
#[derive(Clone, Copy)]
pub(crate) enum Publisher<'a> {
    /// The server API: any channel, no quota, `from` is `null`.
    Api,
    /// A subscriber's user, under the namespace's publish rule and the daily quota.
    Subscriber(&'a Subscriber),
}

impl Publisher<'_> {
    fn username(&self) -> Option<&str> {
        match self {
            Publisher::Api => None,
            Publisher::Subscriber(subscriber) => Some(subscriber.username()),
        }
    }
}

/// A publication that passed its checks, with the bytes it took of the quota.
struct Checked<'a> {
    channel: Channel<'a>,
    size: u64,
}

impl Engine {
    /// What publishing `data` to `name` must pass, quota aside: the channel's name, who may
    /// publish there, and what a room's chat messages hold.
    pub(crate) fn check_publish<'a>(
        &'a self,
        from: Publisher<'_>,
        name: &'a str,
        data: &Value,
    ) -> Result<Channel<'a>, Refusal> {
        let channel = self.resolve(name)?;
        if let Publisher::Subscriber(subscriber) = from {
            channel.may_publish(subscriber.follows(name).is_some())?;
        }
        channel.check_data(data)?;
        Ok(channel)
    }

    /// Publishes `data` to `name`. In a namespace with history the publication is stored and
    /// numbered first, and where it stands returned (its offset in its channel's epoch): once this
    /// returns it is durable. A fan-out failure is logged, not returned: the publication is in
    /// history either way.
    pub(crate) async fn publish(
        &self,
        from: Publisher<'_>,
        name: &str,
        data: &Value,
    ) -> Result<Option<Position>, Refusal> {
        let judged = self.judge_publish(from, name, data).await?;
        let data = judged.as_ref();
        let json = protocol::json(data);
        let checked = self.check_and_count(from, name, data, &json)?;
        let (publication, epoch) =
            self.store(&checked.channel, from.username(), &json).await.map_err(|err| {
                self.give_back(from, checked.size);
                unavailable(err)
            })?;
        let frames = protocol::publication(&publication, data, &json, &epoch);
        if let Err(err) = self.broker.publish(checked.channel.name, frames).await {
            tracing::warn!(error = %err, channel = name, "fan-out failed");
        }
        self.metrics.publications.inc();
        Ok(numbered(&publication, epoch))
    }

    /// Publishes each of `batch` as [`Self::publish`] does, and answers each in order (a refused
    /// one publishes nothing and takes nothing of the quota). They are stored together (one group
    /// commit) and each channel's run of them is fanned out together, so a subscriber takes them
    /// in one wake-up and one write: what publications that arrived together cost is shared.
    pub(crate) async fn publish_all(
        &self,
        from: Publisher<'_>,
        batch: &[(&str, &Value)],
    ) -> Vec<Result<Option<Position>, Refusal>> {
        // The application's say first, where a namespace asks it (one call at a time, in order).
        let mut judged = Vec::new();
        if self.proxy.is_some() {
            for (name, data) in batch {
                judged.push(self.judge_publish(from, name, data).await);
            }
        }
        let rewritten: Vec<(&str, &Value)>;
        let batch = if judged.is_empty() {
            batch
        } else {
            let judged_data = judged.iter().map(|judged| judged.as_ref().map(|data| data.as_ref()).ok());
            rewritten = batch
                .iter()
                .zip(judged_data)
                .map(|((name, data), judged)| (*name, judged.unwrap_or(data)))
                .collect();
            &rewritten
        };
        let jsons: Vec<_> = batch.iter().map(|(_, data)| protocol::json(data)).collect();
        let checked: Vec<Result<Checked<'_>, Refusal>> = batch
            .iter()
            .zip(&jsons)
            .enumerate()
            .map(|(at, ((name, data), json))| match judged.get(at) {
                Some(Err(refusal)) => Err(refusal.clone()),
                _ => self.check_and_count(from, name, data, json),
            })
            .collect();
        let stores = jsons.iter().zip(&checked).filter_map(|(json, checked)| {
            let checked = checked.as_ref().ok()?;
            Some(self.store(&checked.channel, from.username(), json))
        });
        let mut stored = join_in_order(stores).await.into_iter();
        let mut answers = Vec::with_capacity(batch.len());
        let mut run: Vec<Frames> = Vec::new();
        let mut run_channel = "";
        for (((_, data), json), checked) in batch.iter().zip(&jsons).zip(checked) {
            let checked = match checked {
                Ok(checked) => checked,
                Err(refusal) => {
                    answers.push(Err(refusal));
                    continue;
                }
            };
            // One store call was made for each publication that passed its checks.
            let (publication, epoch) = match stored.next() {
                Some(Ok(stored)) => stored,
                failed => {
                    self.give_back(from, checked.size);
                    answers.push(Err(failed
                        .and_then(Result::err)
                        .map_or_else(storage_unavailable, unavailable)));
                    continue;
                }
            };
            if checked.channel.name != run_channel {
                self.fan_out_all(run_channel, std::mem::take(&mut run)).await;
                run_channel = checked.channel.name;
            }
            run.push(protocol::publication(&publication, data, json, &epoch));
            answers.push(Ok(numbered(&publication, epoch)));
        }
        self.fan_out_all(run_channel, run).await;
        answers
    }

    /// [`Self::check_publish`], then the publication's bytes taken from its user's quota. `json`
    /// is `data`'s [`protocol::json`].
    fn check_and_count<'a>(
        &'a self,
        from: Publisher<'_>,
        name: &'a str,
        data: &Value,
        json: &RawValue,
    ) -> Result<Checked<'a>, Refusal> {
        let channel = self.check_publish(from, name, data)?;
        let size = quota_size(&channel, data, json);
        if let Some(username) = from.username() {
            if self.quota.take(username, size).is_err() {
                return Err(Refusal::new(ErrorCode::RateLimited, "daily quota reached; nothing was stored"));
            }
        }
        Ok(Checked { channel, size })
    }

    /// Returns what a publication that was not stored took of the quota.
    fn give_back(&self, from: Publisher<'_>, size: u64) {
        if let Some(username) = from.username() {
            self.quota.give_back(username, size);
        }
    }

    /// Hands a run of one channel's publications to the broker.
    async fn fan_out_all(&self, channel: &str, run: Vec<Frames>) {
        if run.is_empty() {
            return;
        }
        let published = run.len() as u64;
        if let Err(err) = self.broker.publish_all(channel, run).await {
            tracing::warn!(error = %err, channel, "fan-out failed");
        }
        self.metrics.publications.inc_by(published);
    }

    /// Stores `json` as `channel`'s next publication where its namespace keeps history (else only
    /// stamps it): the publication and the channel's epoch (`""` without history).
    async fn store(
        &self,
        channel: &Channel<'_>,
        sender: Option<&str>,
        json: &RawValue,
    ) -> Result<(Publication, String), StoreError> {
        let text = json.get().to_owned();
        let created_ms = crate::clock::now_ms();
        match channel.namespace.history {
            Some(retention) => {
                let new =
                    NewPublication { channel: channel.name, sender, data: &text, created_ms, retention };
                let (publication, position) = self.store.publish(new).await?;
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
}

/// Where a stored publication stands; `None` in a namespace without history, which numbers nothing.
fn numbered(publication: &Publication, epoch: String) -> Option<Position> {
    (publication.offset > 0).then_some(Position { offset: publication.offset, epoch })
}

/// What a publication counts against the daily quota: a room's chat message its text, as the
/// chat always has; anything else its JSON bytes.
fn quota_size(channel: &Channel<'_>, data: &Value, json: &RawValue) -> u64 {
    match chat_text(data) {
        Some(text) if channel.namespace.name.is_empty() => text.len() as u64,
        _ => json.get().len() as u64,
    }
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
