//! One JSON socket (`/chat/ws`, `/connect`): the channels it follows and how, its commands
//! dispatched (room commands in `rooms`, channel commands here), and what the hub delivers to it,
//! forwarded.

use super::delivery::{Cursor, Next, Sequencing};
use super::recovery;
use crate::app::AppState;
use crate::auth::Identity;
use crate::broker::{outbox, Change, Delivery, Presence, Utf8Bytes, View};
use crate::channels::protocol::{self, Command, ErrorCode, Refusal, Since};
use crate::channels::{self, namespaces::Channel};
use crate::store::{Position, StoreError};
use crate::ws::close::{self, Close};
use crate::ws::socket::{Endpoint, Outgoing};
use serde_json::Value;
use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};

/// Most channels (rooms included) one socket may follow at once.
pub(super) const MAX_CHANNELS_PER_SOCKET: usize = 32;

static NEXT_SOCKET: AtomicU64 = AtomicU64::new(1);

/// How the socket follows a channel, whether the channel's namespace tracks presence, and how far
/// it has delivered the channel's numbered publications (`None`: a namespace without history).
#[derive(Debug, Clone)]
pub(super) struct Following {
    pub(super) view: View,
    pub(super) presence: bool,
    pub(super) cursor: Option<Cursor>,
}

pub(crate) struct ChannelSocket {
    pub(super) state: AppState,
    pub(super) socket: u64,
    pub(super) username: String,
    pub(super) following: BTreeMap<String, Following>,
    /// What the hub delivers; `None` until the socket first follows a channel, so that a socket
    /// that follows none costs the hub nothing.
    inbox: Option<outbox::Receiver>,
    /// Deliveries taken from the inbox, not yet put in order.
    arrived: VecDeque<Delivery>,
    /// Frames put in order, waiting to be sent (missed publications fetched before a delivery).
    pub(super) pending: VecDeque<Utf8Bytes>,
    /// A delivery waiting for the publications missing before it, and their fetch: kept here,
    /// since the socket loop may drop the `outgoing` future at any await and call it again.
    pub(super) sequencing: Option<Box<Sequencing>>,
}

impl ChannelSocket {
    pub(super) fn new(state: AppState, username: &str) -> ChannelSocket {
        let socket = NEXT_SOCKET.fetch_add(1, Ordering::Relaxed);
        let following = BTreeMap::new();
        ChannelSocket {
            state,
            socket,
            username: username.to_owned(),
            following,
            inbox: None,
            arrived: VecDeque::new(),
            pending: VecDeque::new(),
            sequencing: None,
        }
    }

    pub(super) async fn apply(
        &mut self,
        command: Command,
        identity: Option<&Identity>,
    ) -> Result<Vec<String>, Refusal> {
        match command {
            Command::Join { room, since } => self.join(room, since).await,
            Command::Leave { room } => self.leave(room).await,
            Command::Send { room, text, reference } => self.send(room, text, reference).await,
            Command::History { room, before, limit } => self.history(room, before, limit).await,
            Command::Subscribe { channel, since } => self.subscribe(channel, since, identity).await,
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
    /// Its numbered publications are held back until the caller sets where to deliver them from
    /// ([`Self::start_at`]).
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
        // Held back: nothing is numbered beyond i64::MAX.
        let cursor = channel.namespace.history.map(|_| Cursor { offset: i64::MAX, epoch: String::new() });
        let presence = channel.namespace.presence;
        if self.inbox.is_none() {
            self.inbox = Some(self.state.hub.connect(self.socket, &self.username));
        }
        self.following.insert(channel.name.to_owned(), Following { view, presence, cursor });
        if !channels::follow(&self.state, self.socket, &self.username, channel, view).await {
            self.following.remove(channel.name);
        }
        Ok(())
    }

    /// Delivers `channel`'s numbered publications after `cursor` from now on.
    pub(super) fn start_at(&mut self, channel: &str, cursor: Cursor) {
        if let Some(Following { cursor: Some(current), .. }) = self.following.get_mut(channel) {
            *current = cursor;
        }
    }

    async fn subscribe(
        &mut self,
        name: String,
        since: Option<Since>,
        identity: Option<&Identity>,
    ) -> Result<Vec<String>, Refusal> {
        let state = self.state.clone();
        let channel = state.namespaces.resolve(&name)?;
        let identity = identity.ok_or_else(|| Refusal::new(ErrorCode::Forbidden, "not authenticated"))?;
        channel.may_subscribe(identity)?;
        if let Some(Following { view: View::Channel, cursor, .. }) = self.following.get(&name) {
            // Subscribed already: where it stands for this socket.
            let position = cursor.as_ref().map(|c| Position { offset: c.offset, epoch: c.epoch.clone() });
            return Ok(vec![protocol::subscribed(&name, position.as_ref(), since.map(|_| false))]);
        }
        self.follow(&channel, View::Channel).await?;
        if channel.namespace.history.is_none() {
            return Ok(vec![protocol::subscribed(&name, None, since.map(|_| false))]);
        }
        let answer = match since {
            Some(since) => recovery::recover(&state, &name, &since, View::Channel).await,
            None => recovery::position(&state, &name).await.map(|position| recovery::Recovery {
                frames: Vec::new(),
                position,
                recovered: None,
            }),
        };
        let answer = match answer {
            Ok(answer) => answer,
            Err(refusal) => {
                self.unfollow(&name).await;
                return Err(refusal);
            }
        };
        self.start_at(&name, Cursor::from(answer.position.clone()));
        let mut frames = answer.frames;
        frames.push(protocol::subscribed(&name, answer.position.as_ref(), answer.recovered));
        Ok(frames)
    }

    /// Stops following `channel` on this socket.
    pub(super) async fn unfollow(&mut self, channel: &str) {
        if let Some(Following { presence, .. }) = self.following.remove(channel) {
            channels::unfollow(&self.state, self.socket, &self.username, channel, presence).await;
        }
    }

    async fn unsubscribe(&mut self, name: String) -> Result<Vec<String>, Refusal> {
        self.state.namespaces.resolve(&name)?;
        match self.following.get(&name) {
            Some(Following { view: View::Channel, .. }) => {
                self.unfollow(&name).await;
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
        let (channel, size) = self.check_publish(&name, &data, reference.as_deref())?;
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
            return Err(super::batch::quota_reached());
        }
        channels::publish(&self.state, channel, Some(&self.username), data).await.map_err(|err| {
            self.state.chat_quota.give_back(&self.username, size);
            unavailable(err)
        })
    }
}

pub(super) fn unavailable(err: StoreError) -> Refusal {
    tracing::warn!(error = %err, "channel store call failed");
    Refusal::new(ErrorCode::Unavailable, "storage unavailable, try again")
}

impl Endpoint for ChannelSocket {
    const TAKES_BATCHES: bool = true;

    async fn on_texts(
        &mut self,
        texts: Vec<Utf8Bytes>,
        identity: Option<&Identity>,
    ) -> (Vec<String>, Option<Close>) {
        (self.answer_all(texts, identity).await, None)
    }

    async fn on_text(&mut self, text: &str, identity: Option<&Identity>) -> Result<Vec<String>, Close> {
        let result = match protocol::parse(text) {
            // Boxed: a command's future (store calls) would otherwise enlarge every socket's task.
            Ok(command) => Box::pin(self.apply(command, identity)).await,
            Err(refusal) => Err(refusal),
        };
        Ok(result.unwrap_or_else(|refusal| vec![refusal.frame()]))
    }

    /// Ends each channel and room the new identity may no longer subscribe to (a trusted
    /// issuer's token whose `channels` claim dropped one, say), saying so with `unsubscribed`.
    async fn rebound(&mut self, identity: &Identity) -> Vec<String> {
        let state = self.state.clone();
        let refused: Vec<(String, View, Refusal)> = self
            .following
            .iter()
            .filter_map(|(name, following)| {
                let refusal = state.namespaces.resolve(name).and_then(|c| c.may_subscribe(identity)).err()?;
                Some((name.clone(), following.view, refusal))
            })
            .collect();
        let mut frames = Vec::with_capacity(refused.len());
        for (name, view, refusal) in refused {
            self.unfollow(&name).await;
            frames.push(protocol::unsubscribed(&name, view, &refusal));
        }
        frames
    }

    fn on_binary(&mut self) -> Result<Vec<String>, Close> {
        Ok(vec![Refusal::new(ErrorCode::BadRequest, "binary frames are not accepted").frame()])
    }

    async fn outgoing(&mut self) -> Outgoing {
        loop {
            if let Some(out) = self.ready() {
                return out;
            }
            if self.sequencing.is_some() {
                if self.fill_waiting().await.is_err() {
                    let reason = "missed publications: reconnect and recover";
                    return Outgoing::Close(Close::new(close::TRY_AGAIN_LATER, reason));
                }
                continue;
            }
            let Some(inbox) = self.inbox.as_mut() else {
                return std::future::pending().await;
            };
            if !inbox.wait_into(&mut self.arrived).await {
                return too_slow();
            }
        }
    }

    fn ready(&mut self) -> Option<Outgoing> {
        loop {
            if let Some(frame) = self.pending.pop_front() {
                return Some(Outgoing::Frame(frame));
            }
            if self.sequencing.is_some() {
                return None;
            }
            let Some(delivery) = self.arrived.pop_front() else {
                // What a burst grew this to is given back once it is sent.
                if self.arrived.capacity() > outbox::KEPT_CAPACITY {
                    self.arrived.shrink_to(outbox::KEPT_CAPACITY);
                }
                // An outbox the hub dropped is noticed by `outgoing`, once drained.
                let inbox = self.inbox.as_mut()?;
                if inbox.drain_into(&mut self.arrived) == 0 {
                    return None;
                }
                continue;
            };
            if let Some(out) = self.take(delivery) {
                return Some(out);
            }
        }
    }
}

impl ChannelSocket {
    /// A delivery taken from the inbox: its frame when it is next in order, else nothing now
    /// (delivered already, or kept in `sequencing` until what is missing before it is fetched).
    fn take(&mut self, delivery: Delivery) -> Option<Outgoing> {
        match self.sequence(&delivery) {
            Next::Send(frame) => Some(Outgoing::Frame(frame)),
            Next::Skip => None,
            Next::Fill { .. } => {
                self.sequencing = Some(Sequencing::new(delivery));
                None
            }
        }
    }
}

/// The hub dropped the socket for falling too far behind.
fn too_slow() -> Outgoing {
    Outgoing::Close(Close::new(close::TRY_AGAIN_LATER, "too slow: reconnect and recover"))
}

impl Drop for ChannelSocket {
    /// Leaves every channel; presence is announced where the user is no longer in one.
    fn drop(&mut self) {
        if self.inbox.is_none() {
            return;
        }
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
