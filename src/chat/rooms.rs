//! The chat's commands, the default namespace seen as rooms: join (members and recent history, or
//! with `since` the messages missed),
//! leave, send (a publication whose data is `{"text": …}`), history (paging back by id, which is
//! the publication's offset).

use super::delivery::Cursor;
use super::endpoint::{unavailable, ChannelSocket, Following};
use super::recovery;
use crate::broker::View;
use crate::channels::namespaces::Channel;
use crate::channels::protocol::{self, ErrorCode, Refusal, Since, DEFAULT_HISTORY, MAX_HISTORY};
use crate::store::Range;
use serde_json::json;

impl ChannelSocket {
    fn room<'a>(&'a self, room: &'a str) -> Result<Channel<'a>, Refusal> {
        protocol::check_room(room)?;
        self.state.namespaces.resolve(room)
    }

    /// Joins `room`: its members, then its newest messages, or with `since` the messages missed
    /// after it (as `message` frames, then an empty history saying `"recovered": true`).
    pub(super) async fn join(&mut self, room: String, since: Option<Since>) -> Result<Vec<String>, Refusal> {
        let state = self.state.clone();
        protocol::check_room(&room)?;
        let channel = state.namespaces.resolve(&room)?;
        let newly = !self.following.contains_key(&room);
        // Following first: what is published meanwhile is held back, then delivered after the
        // history (or the recovered messages) if it is newer.
        self.follow(&channel, View::Room).await?;
        let mut frames = match self.joined(&room, newly, since).await {
            Ok(frames) => frames,
            Err(refusal) => {
                if newly {
                    self.unfollow(&room).await;
                }
                return Err(refusal);
            }
        };
        let members = match state.broker.members(&room).await {
            Ok(members) => members,
            Err(err) => {
                tracing::warn!(error = %err, room, "shared presence unavailable; listing this node's");
                state.hub.members(&room)
            }
        };
        frames.insert(0, protocol::members(&room, &members));
        Ok(frames)
    }

    /// What a join answers after `members`; for a socket newly in the room, where its live
    /// messages start. A socket already in the room cannot recover: it has what it has.
    async fn joined(
        &mut self,
        room: &str,
        newly: bool,
        since: Option<Since>,
    ) -> Result<Vec<String>, Refusal> {
        let asked = since.is_some();
        if let Some(since) = since.filter(|_| newly) {
            let recovery = recovery::recover(&self.state, room, &since, View::Room).await?;
            if recovery.recovered == Some(true) {
                self.start_at(room, Cursor::from(recovery.position.clone()));
                let mut frames = recovery.frames;
                frames.push(protocol::joined_history(room, &[], recovery.position.as_ref(), Some(true)));
                return Ok(frames);
            }
        }
        let read = self.state.store.publications(
            room,
            Range::Before(i64::MAX),
            DEFAULT_HISTORY,
            crate::clock::now_ms(),
        );
        let (history, position) = read.await.map_err(unavailable)?;
        let frame = protocol::joined_history(room, &history, position.as_ref(), asked.then_some(false));
        if newly {
            self.start_at(room, Cursor::from(position));
        }
        Ok(vec![frame])
    }

    pub(super) async fn leave(&mut self, room: String) -> Result<Vec<String>, Refusal> {
        self.room(&room)?;
        let Some(Following { view: View::Room, .. }) = self.following.get(&room) else {
            return Err(Refusal::new(ErrorCode::BadRequest, "not in this room"));
        };
        self.unfollow(&room).await;
        Ok(Vec::new())
    }

    pub(super) async fn send(
        &mut self,
        room: String,
        text: String,
        reference: Option<String>,
    ) -> Result<Vec<String>, Refusal> {
        let channel = self.room(&room)?;
        protocol::check_ref(reference.as_deref())?;
        let data = json!({ "text": text });
        channel.check_data(&data)?;
        if !self.following.contains_key(&room) {
            return Err(Refusal::new(ErrorCode::Forbidden, "join the room first"));
        }
        // The quota counts the text, as the chat always has.
        let size = text.len() as u64;
        let offset = self.publish_from_user(&channel, &data, size).await?;
        // The default namespace keeps history: every message has its offset.
        Ok(vec![protocol::ack(reference.as_deref(), offset.unwrap_or_default())])
    }

    pub(super) async fn history(
        &mut self,
        room: String,
        before: Option<i64>,
        limit: Option<i64>,
    ) -> Result<Vec<String>, Refusal> {
        self.room(&room)?;
        let limit = limit.unwrap_or(DEFAULT_HISTORY);
        if !(1..=MAX_HISTORY).contains(&limit) {
            return Err(Refusal::new(ErrorCode::BadRequest, format!("limit must be 1-{MAX_HISTORY}")));
        }
        if before.is_some_and(|b| b < 1) {
            return Err(Refusal::new(ErrorCode::BadRequest, "before must be a positive message id"));
        }
        if !self.following.contains_key(&room) {
            return Err(Refusal::new(ErrorCode::Forbidden, "join the room first"));
        }
        let range = Range::Before(before.unwrap_or(i64::MAX));
        let (messages, _) = self
            .state
            .store
            .publications(&room, range, limit, crate::clock::now_ms())
            .await
            .map_err(unavailable)?;
        Ok(vec![protocol::history(&room, &messages)])
    }
}
