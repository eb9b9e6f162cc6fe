//! This node's channel subscribers: which local sockets are in which channel, and delivery to
//! them. Each socket has a bounded outbox; a socket that falls that far behind is dropped from the
//! hub (its outbox closes, and its socket closes) rather than let memory grow without end.

use super::outbox::{self, TrySendError};
use super::sessions::Sessions;
use super::{Delivery, Event, Frames, View};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Frames a socket may have queued before it counts as too slow.
pub(crate) const OUTBOX_FRAMES: usize = 256;

struct Member {
    username: String,
    outbox: outbox::Sender,
    /// The channels it is in (at most `MAX_CHANNELS_PER_SOCKET`: a list is smaller than a set),
    /// each name shared with the hub's key for it.
    channels: Vec<Arc<str>>,
}

#[derive(Default)]
struct State {
    /// Told of each user's first socket entering, and last leaving, a channel, in the hub's order.
    watcher: Option<Watcher>,
    members: HashMap<u64, Member>,
    /// Channel → its local sockets and how each follows it. The key is shared with every
    /// delivery, so naming the channel to a socket copies no string.
    channels: HashMap<Arc<str>, HashMap<u64, View>>,
}

/// This node's sockets, their users, the channels they are in, and their subscriptions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Tally {
    pub(crate) sockets: u64,
    pub(crate) users: u64,
    pub(crate) channels: u64,
    pub(crate) subscriptions: u64,
}

#[derive(Default)]
pub(crate) struct Hub {
    state: Mutex<State>,
    /// This node's emulated sessions, which commands sent to any node reach.
    sessions: Arc<Sessions>,
    /// Frames queued for this node's sockets since it started (`/metrics`, the admin console).
    deliveries: AtomicU64,
}

/// Called under the hub's lock with `(channel, user, joined)`: must not block (webhooks queue it).
pub(crate) type Watcher = Box<dyn Fn(&str, &str, bool) + Send + Sync>;

/// What a join or leave changed, so the caller knows what to announce and (un)subscribe.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Change {
    /// The channel gained its first, or lost its last, local socket.
    pub(crate) channel_edge: bool,
    /// The user gained their first, or lost their last, socket in the channel.
    pub(crate) user_edge: bool,
}

impl Hub {
    /// A hub that tells `watcher` of users' first and last sockets in channels.
    pub(crate) fn watched(watcher: Option<Watcher>) -> Hub {
        Hub {
            state: Mutex::new(State { watcher, ..State::default() }),
            sessions: Arc::default(),
            deliveries: AtomicU64::new(0),
        }
    }

    pub(crate) fn sessions(&self) -> &Arc<Sessions> {
        &self.sessions
    }

    /// Registers a socket; its frames arrive on the returned receiver, which ends when the socket
    /// is dropped for being too slow.
    pub(crate) fn connect(&self, socket: u64, username: &str) -> outbox::Receiver {
        let (outbox, inbox) = outbox::channel(OUTBOX_FRAMES);
        let mut state = self.state.lock().expect("hub lock poisoned");
        state.members.insert(socket, Member { username: username.to_owned(), outbox, channels: Vec::new() });
        inbox
    }

    /// Adds the socket to `channel`, seeing its events in `view`; `None` when it is already in it
    /// or gone.
    pub(crate) fn join(&self, socket: u64, channel: &str, view: View) -> Option<Change> {
        let mut state = self.state.lock().expect("hub lock poisoned");
        let username = state.members.get(&socket)?.username.clone();
        let user_edge = !state.user_in_channel(&username, channel);
        let name = match state.channels.get_key_value(channel) {
            Some((name, _)) => name.clone(),
            None => Arc::from(channel),
        };
        let sockets = state.channels.entry(name.clone()).or_default();
        let channel_edge = sockets.is_empty();
        if sockets.contains_key(&socket) {
            return None;
        }
        sockets.insert(socket, view);
        state.members.get_mut(&socket)?.channels.push(name);
        if let (true, Some(watcher)) = (user_edge, &state.watcher) {
            watcher(channel, &username, true);
        }
        Some(Change { channel_edge, user_edge })
    }

    /// Removes the socket from `channel`; `None` when it was not in it.
    pub(crate) fn leave(&self, socket: u64, channel: &str) -> Option<Change> {
        let mut state = self.state.lock().expect("hub lock poisoned");
        state.leave(socket, channel)
    }

    /// Removes the socket from every channel and the hub; returns the channels it left with what changed.
    pub(crate) fn disconnect(&self, socket: u64) -> Vec<(String, Change)> {
        let mut state = self.state.lock().expect("hub lock poisoned");
        let channels = match state.members.get(&socket) {
            Some(member) => member.channels.clone(),
            None => return Vec::new(),
        };
        let left = channels
            .into_iter()
            .filter_map(|channel| state.leave(socket, &channel).map(|change| (channel.to_string(), change)))
            .collect();
        state.members.remove(&socket);
        left
    }

    /// Usernames with a socket in `channel` on this node, sorted.
    pub(crate) fn members(&self, channel: &str) -> BTreeSet<String> {
        let state = self.state.lock().expect("hub lock poisoned");
        state
            .channels
            .get(channel)
            .into_iter()
            .flat_map(|sockets| sockets.keys())
            .filter_map(|socket| state.members.get(socket))
            .map(|member| member.username.clone())
            .collect()
    }

    /// Every channel with local sockets and its users, to rebuild shared presence (after a broker
    /// lost its state).
    pub(crate) fn channels(&self) -> Vec<(String, BTreeSet<String>)> {
        let state = self.state.lock().expect("hub lock poisoned");
        state
            .channels
            .iter()
            .map(|(channel, sockets)| {
                let users = sockets
                    .keys()
                    .filter_map(|socket| state.members.get(socket))
                    .map(|member| member.username.clone())
                    .collect();
                (channel.to_string(), users)
            })
            .collect()
    }

    /// How many local sockets are in `channel`.
    pub(crate) fn subscribers(&self, channel: &str) -> u64 {
        let state = self.state.lock().expect("hub lock poisoned");
        state.channels.get(channel).map_or(0, |sockets| sockets.len() as u64)
    }

    /// Every channel with local sockets and how many.
    pub(crate) fn subscriber_counts(&self) -> BTreeMap<String, u64> {
        let state = self.state.lock().expect("hub lock poisoned");
        state.channels.iter().map(|(channel, sockets)| (channel.to_string(), sockets.len() as u64)).collect()
    }

    /// What this node's sockets add up to.
    pub(crate) fn tally(&self) -> Tally {
        let state = self.state.lock().expect("hub lock poisoned");
        let users: HashSet<&str> = state.members.values().map(|member| member.username.as_str()).collect();
        Tally {
            sockets: state.members.len() as u64,
            users: users.len() as u64,
            channels: state.channels.len() as u64,
            subscriptions: state.channels.values().map(|sockets| sockets.len() as u64).sum(),
        }
    }

    /// Frames queued for this node's sockets since it started.
    pub(crate) fn deliveries(&self) -> u64 {
        self.deliveries.load(Ordering::Relaxed)
    }

    #[cfg(test)]
    fn is_member(&self, socket: u64, channel: &str) -> bool {
        let state = self.state.lock().expect("hub lock poisoned");
        state.members.get(&socket).is_some_and(|m| m.channels.iter().any(|name| **name == *channel))
    }

    /// Queues the event for each local socket in `channel` whose view is told of it: one shared
    /// event, no copy per socket. A socket whose outbox is full is dropped.
    pub(crate) fn deliver(&self, channel: &str, frames: Frames) {
        self.queue(channel, |channel| [Arc::new(Event { channel: channel.clone(), frames })]);
    }

    /// Several events of one channel, in order, queued together: each socket takes them in one
    /// wake-up and writes them in one go, which is most of what a delivery costs.
    pub(crate) fn deliver_all(&self, channel: &str, batch: Vec<Frames>) {
        self.queue(channel, |channel| {
            batch
                .into_iter()
                .map(|frames| Arc::new(Event { channel: channel.clone(), frames }))
                .collect::<Vec<_>>()
        });
    }

    /// Queues the events `make` builds (named by the hub's own copy of the channel's name) for the
    /// channel's sockets; nothing is built for a channel without any.
    fn queue<E: AsRef<[Arc<Event>]>>(&self, channel: &str, make: impl FnOnce(&Arc<str>) -> E) {
        let mut state = self.state.lock().expect("hub lock poisoned");
        let Some((channel, sockets)) = state.channels.get_key_value(channel) else {
            return;
        };
        let events = make(channel);
        let events = events.as_ref();
        let mut too_slow = Vec::new();
        // Summed here, added once: one atomic add per batch, not per socket.
        let mut queued = 0;
        for (socket, view) in sockets {
            let Some(member) = state.members.get(socket) else {
                continue;
            };
            let told = |event: &&Arc<Event>| event.frames.for_view(*view).is_some();
            let count = events.iter().filter(told).count();
            let deliveries =
                events.iter().filter(told).map(|event| Delivery { event: event.clone(), view: *view });
            match member.outbox.try_send_all(count, deliveries) {
                Ok(()) => queued += count as u64,
                Err(TrySendError::Full) => too_slow.push(*socket),
                Err(_) => {}
            }
        }
        self.deliveries.fetch_add(queued, Ordering::Relaxed);
        state.drop_too_slow(too_slow);
    }
}

impl State {
    /// Drops each socket whose outbox was full from the hub: its outbox closes once drained.
    fn drop_too_slow(&mut self, too_slow: Vec<u64>) {
        for socket in too_slow {
            tracing::warn!(socket, "outbox full: dropping a slow socket");
            let channels = self.members.get(&socket).map(|m| m.channels.clone()).unwrap_or_default();
            for channel in channels {
                self.leave(socket, &channel);
            }
            self.members.remove(&socket);
        }
    }

    fn user_in_channel(&self, username: &str, channel: &str) -> bool {
        self.channels
            .get(channel)
            .into_iter()
            .flat_map(|sockets| sockets.keys())
            .any(|socket| self.members.get(socket).is_some_and(|m| m.username == username))
    }

    fn leave(&mut self, socket: u64, channel: &str) -> Option<Change> {
        let sockets = self.channels.get_mut(channel)?;
        sockets.remove(&socket)?;
        let channel_edge = sockets.is_empty();
        if channel_edge {
            self.channels.remove(channel);
        }
        let member = self.members.get_mut(&socket)?;
        member.channels.retain(|name| **name != *channel);
        let username = member.username.clone();
        let user_edge = !self.user_in_channel(&username, channel);
        if let (true, Some(watcher)) = (user_edge, &self.watcher) {
            watcher(channel, &username, false);
        }
        Some(Change { channel_edge, user_edge })
    }
}

#[cfg(test)]
mod tests;
