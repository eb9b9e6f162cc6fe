//! One chat socket's commands: join, leave, send, history, ping, each applied here; and what the
//! hub delivers to the socket, forwarded.

use super::protocol::{self, Command, ErrorCode, Refusal, DEFAULT_HISTORY, MAX_HISTORY};
use crate::app::AppState;
use crate::auth::Identity;
use crate::broker::{Change, Presence};
use crate::ws::close::{self, Close};
use crate::ws::socket::{Endpoint, Outgoing};
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};
use tokio::sync::mpsc;

/// Most rooms one socket may be in at once.
const MAX_ROOMS_PER_SOCKET: usize = 32;

static NEXT_SOCKET: AtomicU64 = AtomicU64::new(1);

pub(super) struct ChatEndpoint {
    state: AppState,
    socket: u64,
    username: String,
    joined: BTreeSet<String>,
    inbox: mpsc::Receiver<Arc<str>>,
}

impl ChatEndpoint {
    pub(super) fn new(state: AppState, username: &str) -> ChatEndpoint {
        let socket = NEXT_SOCKET.fetch_add(1, Ordering::Relaxed);
        let inbox = state.hub.connect(socket, username);
        ChatEndpoint { state, socket, username: username.to_owned(), joined: BTreeSet::new(), inbox }
    }

    async fn apply(&mut self, command: Command) -> Result<Vec<String>, Refusal> {
        match command {
            Command::Join { room } => self.join(room).await,
            Command::Leave { room } => self.leave(room).await,
            Command::Send { room, text, reference } => self.send(room, text, reference).await,
            Command::History { room, before, limit } => self.history(room, before, limit).await,
            Command::Ping => Ok(vec![protocol::pong()]),
        }
    }

    async fn join(&mut self, room: String) -> Result<Vec<String>, Refusal> {
        protocol::check_room(&room)?;
        if !self.joined.contains(&room) && self.joined.len() >= MAX_ROOMS_PER_SOCKET {
            return Err(Refusal::new(
                ErrorCode::BadRequest,
                format!("at most {MAX_ROOMS_PER_SOCKET} rooms per socket"),
            ));
        }
        let history = self.state.store.history(&room, None, DEFAULT_HISTORY).await.map_err(unavailable)?;
        if let Some(change) = self.state.hub.join(self.socket, &room) {
            self.joined.insert(room.clone());
            announce(&self.state, &room, &self.username, Presence::Joined, change).await;
        }
        let members = match self.state.broker.members(&room).await {
            Ok(members) => members,
            Err(err) => {
                tracing::warn!(error = %err, room, "shared presence unavailable; listing this node's");
                self.state.hub.members(&room)
            }
        };
        Ok(vec![protocol::members(&room, &members), protocol::history(&room, &history)])
    }

    async fn leave(&mut self, room: String) -> Result<Vec<String>, Refusal> {
        protocol::check_room(&room)?;
        if !self.joined.remove(&room) {
            return Err(Refusal::new(ErrorCode::BadRequest, "not in this room"));
        }
        if let Some(change) = self.state.hub.leave(self.socket, &room) {
            announce(&self.state, &room, &self.username, Presence::Left, change).await;
        }
        Ok(Vec::new())
    }

    async fn send(
        &mut self,
        room: String,
        text: String,
        reference: Option<String>,
    ) -> Result<Vec<String>, Refusal> {
        protocol::check_room(&room)?;
        protocol::check_ref(reference.as_deref())?;
        protocol::check_text(&text)?;
        if !self.joined.contains(&room) {
            return Err(Refusal::new(ErrorCode::Forbidden, "join the room first"));
        }
        let size = text.len() as u64;
        if self.state.chat_quota.take(&self.username, size).is_err() {
            return Err(Refusal::new(ErrorCode::RateLimited, "daily chat quota reached; nothing was stored"));
        }
        let stored = self.state.store.insert_message(&room, &self.username, &text, now_ms()).await;
        let message = stored.map_err(|err| {
            self.state.chat_quota.give_back(&self.username, size);
            unavailable(err)
        })?;
        // Stored: the ack may go out whatever happens to the fan-out.
        if let Err(err) = self.state.broker.publish(&room, Arc::from(protocol::message(&message))).await {
            tracing::warn!(error = %err, room, "fan-out failed; the message is in history");
        }
        Ok(vec![protocol::ack(reference.as_deref(), message.id)])
    }

    async fn history(
        &mut self,
        room: String,
        before: Option<i64>,
        limit: Option<i64>,
    ) -> Result<Vec<String>, Refusal> {
        protocol::check_room(&room)?;
        let limit = limit.unwrap_or(DEFAULT_HISTORY);
        if !(1..=MAX_HISTORY).contains(&limit) {
            return Err(Refusal::new(ErrorCode::BadRequest, format!("limit must be 1-{MAX_HISTORY}")));
        }
        if before.is_some_and(|b| b < 1) {
            return Err(Refusal::new(ErrorCode::BadRequest, "before must be a positive message id"));
        }
        if !self.joined.contains(&room) {
            return Err(Refusal::new(ErrorCode::Forbidden, "join the room first"));
        }
        let messages = self.state.store.history(&room, before, limit).await.map_err(unavailable)?;
        Ok(vec![protocol::history(&room, &messages)])
    }
}

fn unavailable(err: crate::store::StoreError) -> Refusal {
    tracing::warn!(error = %err, "chat store call failed");
    Refusal::new(ErrorCode::Unavailable, "storage unavailable, try again")
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

/// Publishes a presence change and keeps the broker subscribed to rooms with local members only.
async fn announce(state: &AppState, room: &str, username: &str, presence: Presence, change: Change) {
    let broker = &state.broker;
    // A socket joined or left: this node's count of the room changed (the server API lists them).
    if let Err(err) = broker.share_subscribers(room).await {
        tracing::warn!(error = %err, room, "sharing the room's socket count failed");
    }
    if change.channel_edge {
        let result = match presence {
            Presence::Joined => broker.subscribe(room).await,
            Presence::Left => broker.unsubscribe(room).await,
        };
        if let Err(err) = result {
            tracing::warn!(error = %err, room, "broker subscription change failed");
        }
    }
    if !change.user_edge {
        return;
    }
    // The user's first (or last) socket here; other nodes may still have them in the room.
    let announce = broker.presence(room, username, presence).await.unwrap_or_else(|err| {
        tracing::warn!(error = %err, room, "shared presence unavailable");
        true
    });
    if announce {
        let frame = Arc::from(protocol::presence(room, username, presence));
        if let Err(err) = broker.publish(room, frame).await {
            tracing::warn!(error = %err, room, "presence fan-out failed");
        }
    }
}

impl Endpoint for ChatEndpoint {
    async fn on_text(&mut self, text: &str, _: Option<&Identity>) -> Result<Vec<String>, Close> {
        let result = match protocol::parse(text) {
            Ok(command) => self.apply(command).await,
            Err(refusal) => Err(refusal),
        };
        Ok(result.unwrap_or_else(|refusal| vec![refusal.frame()]))
    }

    fn on_binary(&mut self) -> Result<Vec<String>, Close> {
        Ok(vec![Refusal::new(ErrorCode::BadRequest, "binary frames are not accepted").frame()])
    }

    async fn outgoing(&mut self) -> Outgoing {
        match self.inbox.recv().await {
            Some(frame) => Outgoing::Frame(frame),
            None => {
                Outgoing::Close(Close::new(close::TRY_AGAIN_LATER, "too slow: reconnect and fetch history"))
            }
        }
    }
}

impl Drop for ChatEndpoint {
    /// Leaves every room; presence is announced for rooms the user is no longer in.
    fn drop(&mut self) {
        let hub = &self.state.hub;
        hub.disconnect(self.socket);
        let rooms = std::mem::take(&mut self.joined);
        if rooms.is_empty() {
            return;
        }
        let state = self.state.clone();
        let username = std::mem::take(&mut self.username);
        tokio::spawn(async move {
            for room in rooms {
                let members = state.hub.members(&room);
                let change =
                    Change { channel_edge: members.is_empty(), user_edge: !members.contains(&username) };
                announce(&state, &room, &username, Presence::Left, change).await;
            }
        });
    }
}
