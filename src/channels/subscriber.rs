//! One socket's subscriptions, as the engine keeps them: which channels it follows and how, and
//! what the hub hands it, put in order (`delivery`). Following a channel checks its namespace's
//! subscribe rule and the per-socket cap here, whatever the socket's protocol; a new token
//! (`recheck`) is checked against every channel followed.

use super::delivery::{Deliveries, Ended};
use super::followed::{Cursor, Followed, Following};
use super::protocol::{self, ErrorCode, Refusal, Since};
use super::recovery::Recovery;
use super::Engine;
use crate::auth::Identity;
use crate::broker::{Change, Presence, Utf8Bytes, View};
use crate::store::Position;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Most channels (rooms included) one socket may follow at once.
pub(crate) const MAX_CHANNELS_PER_SOCKET: usize = 32;

static NEXT_SUBSCRIBER: AtomicU64 = AtomicU64::new(1);

/// What `subscribe` answers: the recovered publications' frames, where the channel stands, and
/// with `since`, whether every publication after it was delivered.
pub(crate) type Subscribed = Recovery;

/// One socket's subscriptions. Leaves every channel when dropped.
pub(crate) struct Subscriber {
    engine: Arc<Engine>,
    id: u64,
    username: String,
    following: Followed,
    deliveries: Deliveries,
}

impl Engine {
    /// A subscriber for a socket of `username`, following nothing yet.
    pub(crate) fn subscriber(self: &Arc<Self>, username: &str) -> Subscriber {
        Subscriber {
            engine: self.clone(),
            id: NEXT_SUBSCRIBER.fetch_add(1, Ordering::Relaxed),
            username: username.to_owned(),
            following: Followed::new(),
            deliveries: Deliveries::default(),
        }
    }
}

impl Subscriber {
    pub(crate) fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }

    pub(crate) fn username(&self) -> &str {
        &self.username
    }

    /// How this socket follows `name`, if it does.
    pub(crate) fn follows(&self, name: &str) -> Option<View> {
        self.following.get(name).map(|following| following.view)
    }

    /// Starts following `name` in `view` for `identity`, unless the namespace's subscribe rule,
    /// the per-socket cap or the other view already taken refuses it. True when newly followed.
    /// Its numbered publications are held back until the caller says where to deliver them from
    /// ([`Self::start_at`]).
    pub(crate) async fn follow(
        &mut self,
        identity: &Identity,
        name: &str,
        view: View,
    ) -> Result<bool, Refusal> {
        if view == View::Room {
            protocol::check_room(name)?;
        }
        let engine = self.engine.clone();
        let channel = engine.resolve(name)?;
        channel.may_subscribe(identity)?;
        match self.following.get(name) {
            Some(following) if following.view != view => {
                return Err(Refusal::new(
                    ErrorCode::BadRequest,
                    "already following this channel the other way",
                ))
            }
            Some(_) => return Ok(false),
            None if self.following.len() >= MAX_CHANNELS_PER_SOCKET => {
                return Err(Refusal::new(
                    ErrorCode::BadRequest,
                    format!("at most {MAX_CHANNELS_PER_SOCKET} rooms and channels per socket"),
                ))
            }
            None => {}
        }
        if self.deliveries.inbox.is_none() {
            self.deliveries.inbox = Some(engine.hub.connect(self.id, &self.username));
        }
        let cursor = channel.namespace.history.map(|_| Cursor::held_back());
        let presence = channel.namespace.presence;
        let Some(change) = engine.hub.join(self.id, name, view) else {
            return Ok(false);
        };
        self.following.insert(name.to_owned(), Following { view, presence, cursor });
        engine.announce(name, &self.username, Presence::Joined, change, presence).await;
        Ok(true)
    }

    /// Delivers `name`'s numbered publications after `cursor` from now on.
    pub(crate) fn start_at(&mut self, name: &str, cursor: Cursor) {
        if let Some(Following { cursor: Some(current), .. }) = self.following.get_mut(name) {
            *current = cursor;
        }
    }

    /// Stops following `name`; how it was followed, if it was.
    pub(crate) async fn unfollow(&mut self, name: &str) -> Option<View> {
        let Following { view, presence, .. } = self.following.remove(name)?;
        if let Some(change) = self.engine.hub.leave(self.id, name) {
            self.engine.announce(name, &self.username, Presence::Left, change, presence).await;
        }
        Some(view)
    }

    /// Follows `name` as a channel (in `view`: wsguard's frames or Centrifugo's), with the
    /// publications after `since` when given: every one of them, or `recovered: false`.
    pub(crate) async fn subscribe(
        &mut self,
        identity: &Identity,
        name: &str,
        since: Option<&Since>,
        view: View,
    ) -> Result<Subscribed, Refusal> {
        let newly = self.follow(identity, name, view).await?;
        let asked = since.map(|_| false);
        let Some(Following { cursor, .. }) = self.following.get(name) else {
            return Err(Refusal::new(ErrorCode::Unavailable, "the socket is closing"));
        };
        let Some(cursor) = cursor.as_ref() else {
            // No history: nothing to recover, no position.
            return Ok(Subscribed { frames: Vec::new(), position: None, recovered: asked });
        };
        if !newly {
            // Subscribed already: where it stands for this socket.
            let position = Some(Position { offset: cursor.offset, epoch: cursor.epoch.clone() });
            return Ok(Subscribed { frames: Vec::new(), position, recovered: asked });
        }
        let engine = self.engine.clone();
        let answer = match since {
            Some(since) => engine.recover(name, since, view).await,
            None => engine.position(name).await.map(|position| Recovery {
                frames: Vec::new(),
                position,
                recovered: None,
            }),
        };
        match answer {
            Ok(answer) => {
                self.start_at(name, Cursor::from(answer.position.clone()));
                Ok(answer)
            }
            Err(refusal) => {
                self.unfollow(name).await;
                Err(refusal)
            }
        }
    }

    /// Ends what `identity` (the socket's new token) no longer allows it to follow: each channel
    /// ended, how it was followed, and why.
    pub(crate) async fn recheck(&mut self, identity: &Identity) -> Vec<(String, View, Refusal)> {
        let engine = self.engine.clone();
        let refused: Vec<(String, Refusal)> = self
            .following
            .keys()
            .filter_map(|name| {
                let refusal = engine.resolve(name).and_then(|c| c.may_subscribe(identity)).err()?;
                Some((name.clone(), refusal))
            })
            .collect();
        let mut ended = Vec::with_capacity(refused.len());
        for (name, refusal) in refused {
            if let Some(view) = self.unfollow(&name).await {
                ended.push((name, view, refusal));
            }
        }
        ended
    }

    /// The next frame for the socket that can be sent without waiting.
    pub(crate) fn ready(&mut self) -> Option<Utf8Bytes> {
        self.deliveries.ready(&mut self.following)
    }

    /// The next frame for the socket, in order; waits for it.
    pub(crate) async fn next(&mut self) -> Result<Utf8Bytes, Ended> {
        self.deliveries.next(&mut self.following, &self.engine).await
    }
}

impl Drop for Subscriber {
    /// Leaves every channel; presence is announced where the user is no longer in one.
    fn drop(&mut self) {
        if self.deliveries.inbox.is_none() {
            return;
        }
        let engine = self.engine.clone();
        engine.hub.disconnect(self.id);
        let following = std::mem::take(&mut self.following);
        if following.is_empty() {
            return;
        }
        let username = std::mem::take(&mut self.username);
        tokio::spawn(async move {
            for (channel, Following { presence, .. }) in following {
                let members = engine.hub.members(&channel);
                let change =
                    Change { channel_edge: members.is_empty(), user_edge: !members.contains(&username) };
                engine.announce(&channel, &username, Presence::Left, change, presence).await;
            }
        });
    }
}
