//! Which live sockets are bound to which token and login, by user: enforces the per-user cap and
//! lets a revocation reach the sockets bound to what it revokes.

use crate::store::{Revocation, RevocationKind};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::Notify;

/// A socket's mailbox for a revocation from outside its task: a flag and a wake-up, nothing queued.
#[derive(Default)]
pub(crate) struct SocketSignal {
    revoked: AtomicBool,
    notify: Notify,
}

impl SocketSignal {
    fn revoke(&self) {
        self.revoked.store(true, Ordering::Release);
        self.notify.notify_one();
    }

    /// Waits until the socket's token or login is revoked.
    pub(crate) async fn revoked(&self) {
        while !self.revoked.load(Ordering::Acquire) {
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
pub(crate) struct SocketBindings {
    by_user: Mutex<HashMap<String, Vec<Entry>>>,
    next_id: AtomicU64,
}

#[derive(Debug, thiserror::Error)]
#[error("too many sockets for this user")]
pub(crate) struct TooMany;

/// A socket's place among the bindings; dropping it removes the socket.
pub(crate) struct Binding {
    bindings: Arc<SocketBindings>,
    user: String,
    id: u64,
    pub(crate) signal: Arc<SocketSignal>,
}

impl SocketBindings {
    /// Adds a socket of `user` bound to the token `jti` of login `family`, unless the user already
    /// holds `max` sockets.
    pub(crate) fn register(
        self: &Arc<Self>,
        user: &str,
        jti: &str,
        family: &str,
        max: usize,
    ) -> Result<Binding, TooMany> {
        let mut by_user = self.by_user.lock().expect("socket bindings lock poisoned");
        let entries = by_user.entry(user.to_owned()).or_default();
        if entries.len() >= max {
            return Err(TooMany);
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let signal = Arc::new(SocketSignal::default());
        entries.push(Entry { id, jti: jti.to_owned(), family: family.to_owned(), signal: signal.clone() });
        Ok(Binding { bindings: self.clone(), user: user.to_owned(), id, signal })
    }

    /// Signals every socket bound to what `revocation` revokes.
    pub(crate) fn revoke(&self, revocation: &Revocation) -> usize {
        let by_user = self.by_user.lock().expect("socket bindings lock poisoned");
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
                entry.signal.revoke();
                hit += 1;
            }
        }
        hit
    }
}

impl Binding {
    /// Binds the socket to a new token (after an in-band refresh).
    pub(crate) fn rebind(&self, jti: &str, family: &str) {
        let mut by_user = self.bindings.by_user.lock().expect("socket bindings lock poisoned");
        if let Some(entry) =
            by_user.get_mut(&self.user).and_then(|entries| entries.iter_mut().find(|e| e.id == self.id))
        {
            entry.jti = jti.to_owned();
            entry.family = family.to_owned();
        }
    }
}

impl Drop for Binding {
    fn drop(&mut self) {
        let mut by_user = self.bindings.by_user.lock().expect("socket bindings lock poisoned");
        if let Some(entries) = by_user.get_mut(&self.user) {
            entries.retain(|e| e.id != self.id);
            if entries.is_empty() {
                by_user.remove(&self.user);
            }
        }
    }
}
