//! `unsubscribe`: stop following a channel.

use crate::broker::View;
use crate::channels::protocol::{ErrorCode, Refusal};
use crate::channels::Subscriber;

pub(super) async fn unsubscribe(
    subscriber: &mut Subscriber,
    channel: String,
) -> Result<Vec<String>, Refusal> {
    subscriber.engine().resolve(&channel)?;
    if subscriber.follows(&channel) != Some(View::Channel) {
        return Err(Refusal::new(ErrorCode::BadRequest, "not subscribed to this channel"));
    }
    subscriber.unfollow(&channel).await;
    Ok(Vec::new())
}
