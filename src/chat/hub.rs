//! This node's rooms: which local sockets are in which room, and delivery to them. Each socket
//! has a bounded outbox; a socket that falls that far behind is dropped from the hub (its outbox
//! closes, and its session closes the socket) rather than let memory grow without end.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;

/// Frames a socket may have queued before it counts as too slow.
pub const OUTBOX_FRAMES: usize = 256;

struct Member {
    username: String,
    outbox: mpsc::Sender<Arc<str>>,
    rooms: HashSet<String>,
}

#[derive(Default)]
struct State {
    members: HashMap<u64, Member>,
    rooms: HashMap<String, HashSet<u64>>,
}

#[derive(Default)]
pub struct Hub {
    state: Mutex<State>,
}

/// What a join or leave changed, so the caller knows what to announce and (un)subscribe.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Change {
    /// The room gained its first, or lost its last, local socket.
    pub room_edge: bool,
    /// The user gained their first, or lost their last, socket in the room.
    pub user_edge: bool,
}

impl Hub {
    /// Registers a socket; its frames arrive on the returned receiver, which ends when the socket
    /// is dropped for being too slow.
    pub fn connect(&self, socket: u64, username: &str) -> mpsc::Receiver<Arc<str>> {
        let (outbox, inbox) = mpsc::channel(OUTBOX_FRAMES);
        let mut state = self.state.lock().expect("hub lock poisoned");
        state.members.insert(socket, Member { username: username.to_owned(), outbox, rooms: HashSet::new() });
        inbox
    }

    /// Adds the socket to `room`; `None` when it is already in it or gone.
    pub fn join(&self, socket: u64, room: &str) -> Option<Change> {
        let mut state = self.state.lock().expect("hub lock poisoned");
        let username = state.members.get(&socket)?.username.clone();
        let user_edge = !state.user_in_room(&username, room);
        let sockets = state.rooms.entry(room.to_owned()).or_default();
        let room_edge = sockets.is_empty();
        if !sockets.insert(socket) {
            return None;
        }
        state.members.get_mut(&socket)?.rooms.insert(room.to_owned());
        Some(Change { room_edge, user_edge })
    }

    /// Removes the socket from `room`; `None` when it was not in it.
    pub fn leave(&self, socket: u64, room: &str) -> Option<Change> {
        let mut state = self.state.lock().expect("hub lock poisoned");
        state.leave(socket, room)
    }

    /// Removes the socket from every room and the hub; returns the rooms it left with what changed.
    pub fn disconnect(&self, socket: u64) -> Vec<(String, Change)> {
        let mut state = self.state.lock().expect("hub lock poisoned");
        let rooms: Vec<String> = match state.members.get(&socket) {
            Some(member) => member.rooms.iter().cloned().collect(),
            None => return Vec::new(),
        };
        let left = rooms
            .into_iter()
            .filter_map(|room| state.leave(socket, &room).map(|change| (room, change)))
            .collect();
        state.members.remove(&socket);
        left
    }

    /// Usernames with a socket in `room` on this node, sorted.
    pub fn members(&self, room: &str) -> BTreeSet<String> {
        let state = self.state.lock().expect("hub lock poisoned");
        state
            .rooms
            .get(room)
            .into_iter()
            .flatten()
            .filter_map(|socket| state.members.get(socket))
            .map(|member| member.username.clone())
            .collect()
    }

    /// Every room with local sockets and its users, to rebuild shared presence (after a broker
    /// lost its state).
    pub fn rooms(&self) -> Vec<(String, BTreeSet<String>)> {
        let state = self.state.lock().expect("hub lock poisoned");
        state
            .rooms
            .iter()
            .map(|(room, sockets)| {
                let users = sockets
                    .iter()
                    .filter_map(|socket| state.members.get(socket))
                    .map(|member| member.username.clone())
                    .collect();
                (room.clone(), users)
            })
            .collect()
    }

    pub fn is_member(&self, socket: u64, room: &str) -> bool {
        let state = self.state.lock().expect("hub lock poisoned");
        state.members.get(&socket).is_some_and(|m| m.rooms.contains(room))
    }

    /// Queues `frame` for every local socket in `room`. A socket whose outbox is full is dropped.
    pub fn deliver(&self, room: &str, frame: Arc<str>) {
        let mut state = self.state.lock().expect("hub lock poisoned");
        let Some(sockets) = state.rooms.get(room) else {
            return;
        };
        let mut too_slow = Vec::new();
        for socket in sockets {
            if let Some(member) = state.members.get(socket) {
                if let Err(mpsc::error::TrySendError::Full(_)) = member.outbox.try_send(frame.clone()) {
                    too_slow.push(*socket);
                }
            }
        }
        for socket in too_slow {
            tracing::warn!(socket, "outbox full: dropping a slow socket");
            let rooms: Vec<String> =
                state.members.get(&socket).map(|m| m.rooms.iter().cloned().collect()).unwrap_or_default();
            for room in rooms {
                state.leave(socket, &room);
            }
            state.members.remove(&socket);
        }
    }
}

impl State {
    fn user_in_room(&self, username: &str, room: &str) -> bool {
        self.rooms
            .get(room)
            .into_iter()
            .flatten()
            .any(|socket| self.members.get(socket).is_some_and(|m| m.username == username))
    }

    fn leave(&mut self, socket: u64, room: &str) -> Option<Change> {
        let sockets = self.rooms.get_mut(room)?;
        if !sockets.remove(&socket) {
            return None;
        }
        let room_edge = sockets.is_empty();
        if room_edge {
            self.rooms.remove(room);
        }
        let member = self.members.get_mut(&socket)?;
        member.rooms.remove(room);
        let username = member.username.clone();
        let user_edge = !self.user_in_room(&username, room);
        Some(Change { room_edge, user_edge })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presence_edges_count_users_not_sockets() {
        let hub = Hub::default();
        let _a = hub.connect(1, "john");
        let _b = hub.connect(2, "john");
        let _c = hub.connect(3, "jane");
        assert_eq!(hub.join(1, "r"), Some(Change { room_edge: true, user_edge: true }));
        assert_eq!(hub.join(2, "r"), Some(Change { room_edge: false, user_edge: false }));
        assert_eq!(hub.join(2, "r"), None, "joining twice changes nothing");
        assert_eq!(hub.join(3, "r"), Some(Change { room_edge: false, user_edge: true }));
        assert_eq!(hub.members("r").into_iter().collect::<Vec<_>>(), ["jane", "john"]);
        assert_eq!(hub.leave(1, "r"), Some(Change { room_edge: false, user_edge: false }));
        assert_eq!(hub.disconnect(2), vec![("r".to_owned(), Change { room_edge: false, user_edge: true })]);
        assert_eq!(hub.leave(3, "r"), Some(Change { room_edge: true, user_edge: true }));
        assert!(hub.members("r").is_empty());
    }

    #[tokio::test]
    async fn a_full_outbox_drops_the_socket_not_the_others() {
        let hub = Hub::default();
        let mut slow = hub.connect(1, "slow");
        let mut fast = hub.connect(2, "fast");
        hub.join(1, "r");
        hub.join(2, "r");
        for i in 0..=OUTBOX_FRAMES {
            hub.deliver("r", Arc::from(i.to_string()));
            assert_eq!(fast.recv().await.as_deref(), Some(i.to_string().as_str()));
        }
        assert!(!hub.is_member(1, "r"));
        let mut drained = 0;
        while slow.recv().await.is_some() {
            drained += 1;
        }
        assert_eq!(drained, OUTBOX_FRAMES, "the queued frames drain, then the outbox ends");
        assert_eq!(hub.members("r").into_iter().collect::<Vec<_>>(), ["fast"]);
    }
}
