//! Commands that arrived together: answered in order, and a run of publications among them is
//! published together (`channels::publish_all`), so that a client publishing faster than one
//! round trip at a time has its publications stored in one commit and written to each subscriber
//! in one go.

use super::endpoint::{unavailable, ChannelSocket};
use crate::auth::Identity;
use crate::broker::Utf8Bytes;
use crate::channels;
use crate::channels::namespaces::Channel;
use crate::channels::protocol::{self, Command, Refusal};
use serde_json::Value;

/// A `publish` command: channel, data, ref.
type Publish = (String, Value, Option<String>);

impl ChannelSocket {
    /// The answers to `texts`, in order.
    pub(super) async fn answer_all(
        &mut self,
        texts: Vec<Utf8Bytes>,
        identity: Option<&Identity>,
    ) -> Vec<String> {
        let mut replies = Vec::new();
        let mut run: Vec<Publish> = Vec::new();
        for text in &texts {
            let command = match protocol::parse(text.as_str()) {
                Ok(Command::Publish { channel, data, reference }) => {
                    run.push((channel, data, reference));
                    continue;
                }
                command => command,
            };
            replies.extend(self.publish_run(std::mem::take(&mut run), identity).await);
            let answer = match command {
                Ok(command) => self.apply(command, identity).await,
                Err(refusal) => Err(refusal),
            };
            replies.extend(answer.unwrap_or_else(|refusal| vec![refusal.frame()]));
        }
        replies.extend(self.publish_run(run, identity).await);
        replies
    }

    /// Publishes a run of `publish` commands together; one alone goes the usual way.
    async fn publish_run(&mut self, mut run: Vec<Publish>, identity: Option<&Identity>) -> Vec<String> {
        if run.len() <= 1 {
            let Some((channel, data, reference)) = run.pop() else {
                return Vec::new();
            };
            let answer = self.apply(Command::Publish { channel, data, reference }, identity).await;
            return answer.unwrap_or_else(|refusal| vec![refusal.frame()]);
        }
        // Apart: the channels borrow the names while each data is moved into the batch.
        let (names, rest): (Vec<String>, Vec<_>) = run.into_iter().map(|(n, d, r)| (n, (d, r))).unzip();
        let (mut datas, references): (Vec<Value>, Vec<Option<String>>) = rest.into_iter().unzip();
        let mut answers: Vec<Option<String>> = vec![None; names.len()];
        // Checked one by one, as `publish` does: a refused one takes nothing of the quota.
        let mut accepted = Vec::new();
        let mut batch: Vec<(Channel<'_>, Value)> = Vec::new();
        for (at, name) in names.iter().enumerate() {
            let data = std::mem::take(&mut datas[at]);
            let checked =
                self.check_publish(name, &data, references[at].as_deref()).and_then(|(channel, size)| {
                    let taken = self.state.chat_quota.take(&self.username, size);
                    taken.map(|()| (channel, size)).map_err(|_| quota_reached())
                });
            match checked {
                Ok((channel, size)) => {
                    accepted.push((at, size));
                    batch.push((channel, data));
                }
                Err(refusal) => answers[at] = Some(refusal.frame()),
            }
        }
        let published = channels::publish_all(&self.state, &batch, Some(&self.username)).await;
        for ((at, size), published) in accepted.into_iter().zip(published) {
            answers[at] = Some(match published {
                Ok(offset) => protocol::published(references[at].as_deref(), offset),
                Err(err) => {
                    self.state.chat_quota.give_back(&self.username, size);
                    unavailable(err).frame()
                }
            });
        }
        answers.into_iter().flatten().collect()
    }

    /// What a `publish` command must pass: its ref, its channel, the namespace's publish rule and
    /// what the channel holds.
    /// The channel and `data`'s size (for the daily quota).
    pub(super) fn check_publish<'a>(
        &'a self,
        name: &'a str,
        data: &Value,
        reference: Option<&str>,
    ) -> Result<(Channel<'a>, u64), Refusal> {
        protocol::check_ref(reference)?;
        let channel = self.state.namespaces.resolve(name)?;
        channel.may_publish(self.following.contains_key(channel.name))?;
        channel.check_data(data)?;
        Ok((channel, data.to_string().len() as u64))
    }
}

pub(super) fn quota_reached() -> Refusal {
    Refusal::new(protocol::ErrorCode::RateLimited, "daily quota reached; nothing was stored")
}
