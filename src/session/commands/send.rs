//! `send`: a chat message to a room the socket joined, a publication whose data is
//! `{"text": …}`, acknowledged with its id (the publication's offset).

use crate::channels::protocol::{self, ErrorCode, Refusal};
use crate::channels::{Publisher, Subscriber};
use serde_json::json;

pub(super) async fn send(
    subscriber: &mut Subscriber,
    room: String,
    text: String,
    reference: Option<String>,
) -> Result<Vec<String>, Refusal> {
    protocol::check_room(&room)?;
    let engine = subscriber.engine().clone();
    let channel = engine.resolve(&room)?;
    protocol::check_ref(reference.as_deref())?;
    let data = json!({ "text": text });
    channel.check_data(&data)?;
    if subscriber.follows(&room).is_none() {
        return Err(Refusal::new(ErrorCode::Forbidden, "join the room first"));
    }
    let offset = engine.publish(Publisher::Subscriber(subscriber), &room, &data).await?.map(|at| at.offset);
    // The default namespace keeps history: every message has its offset.
    Ok(vec![protocol::ack(reference.as_deref(), offset.unwrap_or_default())])
}
