//! This node's emulated sessions: connections whose server-to-client half is an HTTP stream (or
//! SSE) held here, and whose client sends its commands by separate requests to any node. The
//! broker brings those commands to the node that holds the session; this is where they find it.
//!
//! A session's id is 128 random bits, told only to its client in the `connect` reply: knowing it
//! is what sending commands to the session takes, so a request carries no user's credentials and
//! an id of another session cannot be guessed.

use super::Utf8Bytes;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;

/// Commands a session may have waiting before more are dropped (its client times them out).
pub(crate) const WAITING_COMMANDS: usize = 64;

#[derive(Default)]
pub(crate) struct Sessions {
    open: Mutex<HashMap<String, mpsc::Sender<Utf8Bytes>>>,
}

/// What became of commands sent to a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Handed {
    /// Queued for the session.
    Queued,
    /// No such session here (it ended, or never was).
    Unknown,
    /// The session has too many commands waiting: these were dropped.
    Full,
}

impl Sessions {
    /// Opens a session: its id, the commands that reach it, and the registration that ends it
    /// when dropped.
    pub(crate) fn open(self: &Arc<Self>) -> (Registration, mpsc::Receiver<Utf8Bytes>) {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let (sender, commands) = mpsc::channel(WAITING_COMMANDS);
        self.open.lock().expect("sessions lock").insert(id.clone(), sender);
        (Registration { sessions: self.clone(), id }, commands)
    }

    /// Hands `data` (the client's commands, as one frame) to session `id`.
    pub(crate) fn hand(&self, id: &str, data: Utf8Bytes) -> Handed {
        let open = self.open.lock().expect("sessions lock");
        let Some(session) = open.get(id) else {
            return Handed::Unknown;
        };
        match session.try_send(data) {
            Ok(()) => Handed::Queued,
            Err(mpsc::error::TrySendError::Full(_)) => Handed::Full,
            Err(mpsc::error::TrySendError::Closed(_)) => Handed::Unknown,
        }
    }
}

/// A session's place among this node's; dropping it ends the session's commands.
pub(crate) struct Registration {
    sessions: Arc<Sessions>,
    id: String,
}

impl Registration {
    pub(crate) fn id(&self) -> &str {
        &self.id
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.sessions.open.lock().expect("sessions lock").remove(&self.id);
    }
}

/// Commands for a session on another node, as they travel between nodes: the session's id, a
/// newline, the data.
pub(crate) fn encode(session: &str, data: &str) -> String {
    format!("{session}\n{data}")
}

/// [`encode`]'s session and data; `None` for anything else.
pub(crate) fn decode(message: &[u8]) -> Option<(&str, &str)> {
    let text = std::str::from_utf8(message).ok()?;
    let (session, data) = text.split_once('\n')?;
    (!session.is_empty()).then_some((session, data))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn commands_reach_an_open_session_only() {
        let sessions = Arc::new(Sessions::default());
        let (registration, mut commands) = sessions.open();
        let id = registration.id().to_owned();
        assert_eq!(id.len(), 32, "128 bits, in hex");
        assert_eq!(sessions.hand(&id, "a".into()), Handed::Queued);
        assert_eq!(commands.recv().await.as_ref().map(Utf8Bytes::as_str), Some("a"));
        assert_eq!(sessions.hand("0123", "b".into()), Handed::Unknown);
        for _ in 0..WAITING_COMMANDS {
            assert_eq!(sessions.hand(&id, "c".into()), Handed::Queued);
        }
        assert_eq!(sessions.hand(&id, "d".into()), Handed::Full, "a session's queue is bounded");
        drop(registration);
        assert_eq!(sessions.hand(&id, "e".into()), Handed::Unknown, "an ended session takes nothing");
        assert!(sessions.open.lock().unwrap().is_empty());
    }

    #[test]
    fn commands_cross_nodes_with_their_session() {
        let message = encode("abc", "{\"id\":1}\n{\"id\":2}");
        assert_eq!(decode(message.as_bytes()), Some(("abc", "{\"id\":1}\n{\"id\":2}")));
        assert_eq!(decode(b"no newline"), None);
        assert_eq!(decode(b"\ndata"), None);
        assert_eq!(decode(b"\xff\n"), None);
    }
}
