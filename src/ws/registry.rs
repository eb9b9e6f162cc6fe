//! Every live authenticated socket, by user: enforces the per-user cap and lets a revocation
//! reach the sockets bound to the revoked token or login.

use crate::store::{Revocation, RevocationKind};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::Notify;

/// Why the registry asks a socket to close.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Signal {
    None = 0,
    Revoked = 1,
}

/// A socket's mailbox for signals from outside its task: a flag and a wake-up, nothing queued.
#[derive(Default)]
pub struct SocketSignal {
    signal: AtomicU8,
    notify: Notify,
}

impl SocketSignal {
    fn raise(&self, signal: Signal) {
        self.signal.store(signal as u8, Ordering::Release);
        self.notify.notify_one();
    }

    /// Waits for a signal.
    pub async fn wait(&self) -> Signal {
        loop {
            let signal = self.signal.load(Ordering::Acquire);
            if signal == Signal::Revoked as u8 {
                return Signal::Revoked;
            }
            self.notify.notified().await;
        }
    }
}

struct Entry {
    id: u64,
    jti: String,
    family: String,
    signal: Arc<SocketSignal>,
}

#[derive(Default)]
pub struct Sockets {
    by_user: Mutex<HashMap<String, Vec<Entry>>>,
    next_id: AtomicU64,
}

#[derive(Debug, thiserror::Error)]
#[error("too many sockets for this user")]
pub struct TooMany;

/// A socket's place in the registry; dropping it removes the socket.
pub struct Registration {
    sockets: Arc<Sockets>,
    user: String,
    id: u64,
    pub signal: Arc<SocketSignal>,
}

impl Sockets {
    /// Adds a socket of `user` bound to the token `jti` of login `family`, unless the user already
    /// holds `max` sockets.
    pub fn register(
        self: &Arc<Self>,
        user: &str,
        jti: &str,
        family: &str,
        max: usize,
    ) -> Result<Registration, TooMany> {
        let mut by_user = self.by_user.lock().expect("socket registry lock poisoned");
        let entries = by_user.entry(user.to_owned()).or_default();
        if entries.len() >= max {
            return Err(TooMany);
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let signal = Arc::new(SocketSignal::default());
        entries.push(Entry { id, jti: jti.to_owned(), family: family.to_owned(), signal: signal.clone() });
        Ok(Registration { sockets: self.clone(), user: user.to_owned(), id, signal })
    }

    /// Signals every socket bound to what `revocation` revokes.
    pub fn revoke(&self, revocation: &Revocation) -> usize {
        let by_user = self.by_user.lock().expect("socket registry lock poisoned");
        let Some(entries) = by_user.get(&revocation.username) else {
            return 0;
        };
        let mut hit = 0;
        for entry in entries {
            let bound = match revocation.kind {
                RevocationKind::Token => entry.jti == revocation.subject,
                RevocationKind::Family => entry.family == revocation.subject,
            };
            if bound {
                entry.signal.raise(Signal::Revoked);
                hit += 1;
            }
        }
        hit
    }

    /// Sockets of `user` open now.
    pub fn count(&self, user: &str) -> usize {
        let by_user = self.by_user.lock().expect("socket registry lock poisoned");
        by_user.get(user).map_or(0, Vec::len)
    }
}

impl Registration {
    /// Binds the socket to a new token (after an in-band refresh).
    pub fn rebind(&self, jti: &str, family: &str) {
        let mut by_user = self.sockets.by_user.lock().expect("socket registry lock poisoned");
        if let Some(entry) =
            by_user.get_mut(&self.user).and_then(|entries| entries.iter_mut().find(|e| e.id == self.id))
        {
            entry.jti = jti.to_owned();
            entry.family = family.to_owned();
        }
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut by_user = self.sockets.by_user.lock().expect("socket registry lock poisoned");
        if let Some(entries) = by_user.get_mut(&self.user) {
            entries.retain(|e| e.id != self.id);
            if entries.is_empty() {
                by_user.remove(&self.user);
            }
        }
    }
}
