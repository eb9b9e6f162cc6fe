//! `join`: follow a chat room. Answered with its members, then its newest messages, or with
//! `since` the messages missed after it (as `message` frames, then an empty history saying
//! `"recovered": true`).

use crate::auth::Identity;
use crate::broker::View;
use crate::channels::protocol::{self, Refusal, Since, DEFAULT_HISTORY};
use crate::channels::{Asking, Cursor, Subscriber};
use crate::store::Range;

pub(super) async fn join(
    subscriber: &mut Subscriber,
    identity: &Identity,
    room: String,
    since: Option<Since>,
) -> Result<Vec<String>, Refusal> {
    // Following first: what is published meanwhile is held back, then delivered after the
    // history (or the recovered messages) if it is newer.
    let (newly, _) = subscriber.follow(identity, &room, View::Room, &Asking::default()).await?;
    let mut frames = match joined(subscriber, &room, newly, since).await {
        Ok(frames) => frames,
        Err(refusal) => {
            if newly {
                subscriber.unfollow(&room).await;
            }
            return Err(refusal);
        }
    };
    let members = subscriber.engine().members(&room).await;
    frames.insert(0, protocol::members(&room, &members));
    Ok(frames)
}

/// What a join answers after `members`; for a socket newly in the room, where its live messages
/// start. A socket already in the room cannot recover: it has what it has.
async fn joined(
    subscriber: &mut Subscriber,
    room: &str,
    newly: bool,
    since: Option<Since>,
) -> Result<Vec<String>, Refusal> {
    let engine = subscriber.engine().clone();
    let asked = since.is_some();
    if let Some(since) = since.filter(|_| newly) {
        let recovery = engine.recover(room, &since, View::Room).await?;
        if recovery.recovered == Some(true) {
            subscriber.start_at(room, Cursor::from(recovery.position.clone()));
            let mut frames = recovery.frames;
            frames.push(protocol::joined_history(room, &[], recovery.position.as_ref(), Some(true)));
            return Ok(frames);
        }
    }
    let (history, position) = engine.history(room, Range::Before(i64::MAX), DEFAULT_HISTORY).await?;
    let frame = protocol::joined_history(room, &history, position.as_ref(), asked.then_some(false));
    if newly {
        subscriber.start_at(room, Cursor::from(position));
    }
    Ok(vec![frame])
}
