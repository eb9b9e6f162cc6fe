//! `subscribe`: follow a channel, with the publications missed after `since` when given. Where
//! the namespace leaves it to the application, the `token` (a subscription token) or the
//! subscribe proxy decides; subscribing again renews the subscription.

use crate::auth::Identity;
use crate::broker::View;
use crate::channels::protocol::{self, Refusal, Since};
use crate::channels::{Asking, Subscriber};
use serde_json::Value;

/// What the client brought for the application to judge.
pub(super) struct Asked {
    pub(super) token: Option<String>,
    pub(super) data: Option<Value>,
}

pub(super) async fn subscribe(
    subscriber: &mut Subscriber,
    identity: &Identity,
    channel: String,
    since: Option<Since>,
    asked: Asked,
) -> Result<Vec<String>, Refusal> {
    let client = subscriber.client().to_string();
    let asking = Asking {
        client: &client,
        via: subscriber.via(),
        token: asked.token.as_deref(),
        data: asked.data.as_ref(),
    };
    let subscribed = subscriber.subscribe(identity, &channel, since.as_ref(), View::Channel, &asking).await?;
    let mut frames = subscribed.frames;
    let consent = subscribed.consent;
    frames.push(protocol::subscribed(
        &channel,
        subscribed.position.as_ref(),
        subscribed.recovered,
        consent.expires_at,
        consent.data,
    ));
    Ok(frames)
}
