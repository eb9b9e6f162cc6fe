//! `subscribe`: follow a channel, with the publications missed after `since` when given.

use crate::auth::Identity;
use crate::broker::View;
use crate::channels::protocol::{self, Refusal, Since};
use crate::channels::Subscriber;

pub(super) async fn subscribe(
    subscriber: &mut Subscriber,
    identity: &Identity,
    channel: String,
    since: Option<Since>,
) -> Result<Vec<String>, Refusal> {
    let subscribed = subscriber.subscribe(identity, &channel, since.as_ref(), View::Channel).await?;
    let mut frames = subscribed.frames;
    frames.push(protocol::subscribed(&channel, subscribed.position.as_ref(), subscribed.recovered));
    Ok(frames)
}
