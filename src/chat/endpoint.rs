//! One JSON socket (`/chat/ws`, `/connect`): the channels it follows and how, its commands
//! dispatched (room commands in `rooms`, channel commands here), and what the hub delivers to it,
//! forwarded.

use crate::app::AppState;
use crate::auth::Identity;
use crate::broker::{Change, Presence, View};
use crate::channels::protocol::{self, Command, ErrorCode, Refusal};
use crate::channels::{self, namespaces::Channel};
use crate::store::{Position, Range, StoreError};
use crate::ws::close::{self, Close};
use crate::ws::socket::{Endpoint, Outgoing};
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::sync::mpsc;

/// Most channels (rooms included) one socket may follow at once.
pub(super) const MAX_CHANNELS_PER_SOCKET: usize = 32;

static NEXT_SOCKET: AtomicU64 = AtomicU64::new(1);

/// How the socket follows a channel, and whether the channel's namespace tracks presence.
#[derive(Debug, Clone, Copy)]
pub(super) struct Following {
    pub(super) view: View,
    pub(super) presence: bool,
}

pub(super) struct ChannelSocket {
    pub(super) state: AppState,
    pub(super) socket: u64,
    pub(super) username: String,
    pub(super) following: BTreeMap<String, Following>,
    inbox: mpsc::Receiver<Arc<str>>,
}

impl ChannelSocket {
    pub(super) fn new(state: AppState, username: &str) -> ChannelSocket {
        let socket = NEXT_SOCKET.fetch_add(1, Ordering::Relaxed);
        let inbox = state.hub.connect(socket, username);
        ChannelSocket { state, socket, username: username.to_owned(), following: BTreeMap::new(), inbox }
    }

    async fn apply(&mut self, command: Command, identity: Option<&Identity>) -> Result<Vec<String>, Refusal> {
        match command {
            Command::Join { room } => self.join(room).await,
            Command::Leave { room } => self.leave(room).await,
            Command::Send { room, text, reference } => self.send(room, text, reference).await,
            Command::History { room, before, limit } => self.history(room, before, limit).await,
            Command::Subscribe { channel } => self.subscribe(channel, identity).await,
            Command::Unsubscribe { channel } => self.unsubscribe(channel).await,
            Command::Publish { channel, data, reference } => self.publish(channel, data, reference).await,
            Command::Ping => Ok(vec![protocol::pong()]),
        }
    }

    /// Refuses following one more channel past the cap.
    pub(super) fn check_room_for(&self, channel: &str) -> Result<(), Refusal> {
        if !self.following.contains_key(channel) && self.following.len() >= MAX_CHANNELS_PER_SOCKET {
            return Err(Refusal::new(
                ErrorCode::BadRequest,
                format!("at most {MAX_CHANNELS_PER_SOCKET} rooms and channels per socket"),
            ));
        }
        Ok(())
    }

    /// Starts following `channel` in `view`, unless the socket already follows it in the other.
    pub(super) async fn follow(&mut self, channel: &Channel<'_>, view: View) -> Result<(), Refusal> {
        match self.following.get(channel.name) {
            Some(following) if following.view != view => {
                return Err(Refusal::new(
                    ErrorCode::BadRequest,
                    "already following this channel the other way",
                ))
            }
            Some(_) => return Ok(()),
            None => self.check_room_for(channel.name)?,
        }
        if channels::follow(&self.state, self.socket, &self.username, channel, view).await {
            let presence = channel.namespace.presence;
            self.following.insert(channel.name.to_owned(), Following { view, presence });
        }
        Ok(())
    }

    async fn subscribe(&mut self, name: String, identity: Option<&Identity>) -> Result<Vec<String>, Refusal> {
        let state = self.state.clone();
        let channel = state.namespaces.resolve(&name)?;
        let identity = identity.ok_or_else(|| Refusal::new(ErrorCode::Forbidden, "not authenticated"))?;
        channel.may_subscribe(identity)?;
        let position = match channel.namespace.history {
            Some(_) => position(&state, channel.name).await?,
            None => None,
        };
        self.follow(&channel, View::Channel).await?;
        Ok(vec![protocol::subscribed(&name, position.as_ref())])
    }

    async fn unsubscribe(&mut self, name: String) -> Result<Vec<String>, Refusal> {
        self.state.namespaces.resolve(&name)?;
        match self.following.get(&name) {
            Some(Following { view: View::Channel, presence }) => {
                let presence = *presence;
                self.following.remove(&name);
                channels::unfollow(&self.state, self.socket, &self.username, &name, presence).await;
                Ok(Vec::new())
            }
            _ => Err(Refusal::new(ErrorCode::BadRequest, "not subscribed to this channel")),
        }
    }

    async fn publish(
        &mut self,
        name: String,
        data: Value,
        reference: Option<String>,
    ) -> Result<Vec<String>, Refusal> {
        protocol::check_ref(reference.as_deref())?;
        let channel = self.state.namespaces.resolve(&name)?;
        channel.may_publish(self.following.contains_key(channel.name))?;
        let size = data.to_string().len() as u64;
        let offset = self.publish_from_user(&channel, &data, size).await?;
        Ok(vec![protocol::published(reference.as_deref(), offset)])
    }

    /// Publishes as this socket's user, counting `size` bytes against their daily quota; nothing
    /// is stored past it.
    pub(super) async fn publish_from_user(
        &self,
        channel: &Channel<'_>,
        data: &Value,
        size: u64,
    ) -> Result<Option<i64>, Refusal> {
        if self.state.chat_quota.take(&self.username, size).is_err() {
            return Err(Refusal::new(ErrorCode::RateLimited, "daily quota reached; nothing was stored"));
        }
        channels::publish(&self.state, channel, Some(&self.username), data).await.map_err(|err| {
            self.state.chat_quota.give_back(&self.username, size);
            unavailable(err)
        })
    }
}

/// Where `channel` stands now, for a subscriber.
async fn position(state: &AppState, channel: &str) -> Result<Option<Position>, Refusal> {
    let (_, position) = state
        .store
        .publications(channel, Range::After(i64::MAX), 0, channels::now_ms())
        .await
        .map_err(unavailable)?;
    Ok(position)
}

pub(super) fn unavailable(err: StoreError) -> Refusal {
    tracing::warn!(error = %err, "channel store call failed");
    Refusal::new(ErrorCode::Unavailable, "storage unavailable, try again")
}

impl Endpoint for ChannelSocket {
    async fn on_text(&mut self, text: &str, identity: Option<&Identity>) -> Result<Vec<String>, Close> {
        let result = match protocol::parse(text) {
            Ok(command) => self.apply(command, identity).await,
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

impl Drop for ChannelSocket {
    /// Leaves every channel; presence is announced where the user is no longer in one.
    fn drop(&mut self) {
        let hub = &self.state.hub;
        hub.disconnect(self.socket);
        let following = std::mem::take(&mut self.following);
        if following.is_empty() {
            return;
        }
        let state = self.state.clone();
        let username = std::mem::take(&mut self.username);
        tokio::spawn(async move {
            for (channel, Following { presence, .. }) in following {
                let members = state.hub.members(&channel);
                let change =
                    Change { channel_edge: members.is_empty(), user_edge: !members.contains(&username) };
                channels::announce(&state, &channel, &username, Presence::Left, change, presence).await;
            }
        });
    }
}
