//! `leave`: leave a chat room.

use crate::broker::View;
use crate::channels::protocol::{self, ErrorCode, Refusal};
use crate::channels::Subscriber;

pub(super) async fn leave(subscriber: &mut Subscriber, room: String) -> Result<Vec<String>, Refusal> {
    protocol::check_room(&room)?;
    subscriber.engine().resolve(&room)?;
    if subscriber.follows(&room) != Some(View::Room) {
        return Err(Refusal::new(ErrorCode::BadRequest, "not in this room"));
    }
    subscriber.unfollow(&room).await;
    Ok(Vec::new())
}
