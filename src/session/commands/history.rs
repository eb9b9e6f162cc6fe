//! `history`: a page of a joined room's messages, paging back by id (the publication's offset).

use crate::channels::protocol::{self, ErrorCode, Refusal, DEFAULT_HISTORY, MAX_HISTORY};
use crate::channels::Subscriber;
use crate::store::Range;

pub(super) async fn history(
    subscriber: &mut Subscriber,
    room: String,
    before: Option<i64>,
    limit: Option<i64>,
) -> Result<Vec<String>, Refusal> {
    protocol::check_room(&room)?;
    subscriber.engine().resolve(&room)?;
    let limit = limit.unwrap_or(DEFAULT_HISTORY);
    if !(1..=MAX_HISTORY).contains(&limit) {
        return Err(Refusal::new(ErrorCode::BadRequest, format!("limit must be 1-{MAX_HISTORY}")));
    }
    if before.is_some_and(|b| b < 1) {
        return Err(Refusal::new(ErrorCode::BadRequest, "before must be a positive message id"));
    }
    if subscriber.follows(&room).is_none() {
        return Err(Refusal::new(ErrorCode::Forbidden, "join the room first"));
    }
    let range = Range::Before(before.unwrap_or(i64::MAX));
    let (messages, _) = subscriber.engine().history(&room, range, limit).await?;
    Ok(vec![protocol::history(&room, &messages)])
}
