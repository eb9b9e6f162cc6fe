//! One socket's subscriptions, as the engine keeps them: which channels it follows and how, and
//! what the hub hands it, put in order (`delivery`). Following a channel checks its namespace's
//! subscribe rule and the per-socket cap here, whatever the socket's protocol; a new token
//! (`recheck`) is checked against every channel followed.

use super::application::{Asking, Consent};
use super::delivery::{Deliveries, Ended};
use super::followed::{Cursor, Followed, Following};
use super::protocol::{self, ErrorCode, Refusal, Since};
use super::recovery::Recovery;
use super::Engine;
use crate::auth::Identity;
use crate::broker::{Change, Presence, Utf8Bytes, View};
use crate::proxy::Via;
use crate::store::Position;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Most channels (rooms included) one socket may follow at once.
pub(crate) const MAX_CHANNELS_PER_SOCKET: usize = 32;

static NEXT_SUBSCRIBER: AtomicU64 = AtomicU64::new(1);

/// What `subscribe` answers: the recovered publications' frames, where the channel stands, with
/// `since` whether every publication after it was delivered, and the application's consent (its
/// data for the reply, when it runs out).
pub(crate) struct Subscribed {
    pub(crate) frames: Vec<String>,
    pub(crate) position: Option<Position>,
    pub(crate) recovered: Option<bool>,
    pub(crate) consent: Consent,
}

/// One socket's subscriptions. Leaves every channel when dropped.
pub(crate) struct Subscriber {
    engine: Arc<Engine>,
    id: u64,
    /// The connection's id, as the application's calls name it.
    client: uuid::Uuid,
    /// What the connection runs on, as the application's calls name it.
    via: Via,
    username: String,
    following: Followed,
    deliveries: Deliveries,
}

impl Engine {
    /// A subscriber for connection `client` (on `via`) of `username`, following nothing yet.
    pub(crate) fn subscriber(self: &Arc<Self>, username: &str, client: uuid::Uuid, via: Via) -> Subscriber {
        Subscriber {
            engine: self.clone(),
            via,
            id: NEXT_SUBSCRIBER.fetch_add(1, Ordering::Relaxed),
            client,
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

    pub(crate) fn client(&self) -> uuid::Uuid {
        self.client
    }

    pub(crate) fn via(&self) -> Via {
        self.via
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
        asking: &Asking<'_>,
    ) -> Result<(bool, Consent), Refusal> {
        if view == View::Room {
            protocol::check_room(name)?;
        }
        let engine = self.engine.clone();
        let channel = engine.resolve(name)?;
        channel.may_subscribe(identity)?;
        if self.following.get(name).is_some_and(|following| following.view != view) {
            return Err(Refusal::new(ErrorCode::BadRequest, "already following this channel the other way"));
        }
        let consent = engine.judge_subscribe(&channel, &self.username, asking).await?;
        let count = self.following.len();
        match self.following.get_mut(name) {
            Some(following) => {
                // Subscribing again renews the application's consent.
                following.expires_at = consent.expires_at;
                return Ok((false, consent));
            }
            None if count >= MAX_CHANNELS_PER_SOCKET => {
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
            return Ok((false, consent));
        };
        let expires_at = consent.expires_at;
        self.following.insert(name.to_owned(), Following { view, presence, cursor, expires_at });
        engine.announce(name, &self.username, Presence::Joined, change, presence).await;
        Ok((true, consent))
    }

    /// Renews the application's consent to `name` with a new subscription token (Centrifugo's
    /// `sub_refresh`): when it now runs out.
    pub(crate) async fn renew(&mut self, name: &str, token: &str) -> Result<Option<i64>, Refusal> {
        if self.following.get(name).is_none() {
            return Err(Refusal::new(ErrorCode::BadRequest, "not subscribed to this channel"));
        }
        let engine = self.engine.clone();
        let channel = engine.resolve(name)?;
        if channel.namespace.subscribe != crate::config::SubscribeRule::Token {
            return Err(Refusal::new(ErrorCode::BadRequest, "this channel takes no subscription token"));
        }
        let asking = Asking { client: "", via: self.via, token: Some(token), data: None };
        let consent = engine.judge_subscribe(&channel, &self.username, &asking).await?;
        if let Some(following) = self.following.get_mut(name) {
            following.expires_at = consent.expires_at;
        }
        Ok(consent.expires_at)
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
        asking: &Asking<'_>,
    ) -> Result<Subscribed, Refusal> {
        let (newly, consent) = self.follow(identity, name, view, asking).await?;
        let asked = since.map(|_| false);
        let Some(Following { cursor, .. }) = self.following.get(name) else {
            return Err(Refusal::new(ErrorCode::Unavailable, "the socket is closing"));
        };
        let Some(cursor) = cursor.as_ref() else {
            // No history: nothing to recover, no position.
            return Ok(Subscribed { frames: Vec::new(), position: None, recovered: asked, consent });
        };
        if !newly {
            // Subscribed already: where it stands for this socket.
            let position = Some(Position { offset: cursor.offset, epoch: cursor.epoch.clone() });
            return Ok(Subscribed { frames: Vec::new(), position, recovered: asked, consent });
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
            Ok(Recovery { frames, position, recovered }) => {
                self.start_at(name, Cursor::from(position.clone()));
                Ok(Subscribed { frames, position, recovered, consent })
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

    /// The next frame for the socket, in order; waits for it. A channel whose consent runs out
    /// meanwhile is left: wsguard's frames say so with `unsubscribed`, Centrifugo's protocol
    /// closes the connection ([`Ended::SubscriptionExpired`]), as Centrifugo does.
    pub(crate) async fn next(&mut self) -> Result<Utf8Bytes, Ended> {
        loop {
            let Some(at) = self.following.earliest_expiry() else {
                return self.deliveries.next(&mut self.following, &self.engine).await;
            };
            // Boxed: a timer in place would enlarge every socket's task, expiring or not.
            let expiry = Box::pin(tokio::time::sleep(crate::clock::until(at)));
            tokio::select! {
                next = self.deliveries.next(&mut self.following, &self.engine) => return next,
                () = expiry => {}
            }
            self.end_expired()?;
        }
    }

    /// Leaves the channels whose consent has run out, queueing an `unsubscribed` frame for each.
    /// Synchronous, presence announced on a task of its own: the socket loop may drop `next`.
    fn end_expired(&mut self) -> Result<(), Ended> {
        let expired = self.following.expired(crate::clock::now_secs());
        let refusal = Refusal::new(
            ErrorCode::TokenExpired,
            "the subscription expired: subscribe again (with a new token, where the channel needs one)",
        );
        let centrifugo = |name: &String| {
            self.following
                .get(name)
                .is_some_and(|f| matches!(f.view, View::Centrifugo | View::CentrifugoJoinLeave))
        };
        if expired.iter().any(centrifugo) {
            // Left as followed: the connection closes, and leaving it announces every channel.
            return Err(Ended::SubscriptionExpired);
        }
        for name in expired {
            let Some(Following { view, presence, .. }) = self.following.remove(&name) else { continue };
            if let Some(change) = self.engine.hub.leave(self.id, &name) {
                let (engine, username, channel) = (self.engine.clone(), self.username.clone(), name.clone());
                tokio::spawn(async move {
                    engine.announce(&channel, &username, Presence::Left, change, presence).await;
                });
            }
            self.deliveries.pending.push_back(Utf8Bytes::from(protocol::unsubscribed(&name, view, &refusal)));
        }
        Ok(())
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
