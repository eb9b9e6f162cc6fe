//! Which live sockets are bound to which token and login, by user: enforces the per-user cap and
//! lets a revocation reach the sockets bound to what it revokes.

use super::tokens::Claims;
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

    pub(crate) fn is_revoked(&self) -> bool {
        self.revoked.load(Ordering::Acquire)
    }

    /// Waits until the socket's token or login is revoked.
    pub(crate) async fn revoked(&self) {
        while !self.revoked.load(Ordering::Acquire) {
            self.notify.notified().await;
        }
    }
}

struct Entry {
    jti: String,
    /// Empty for a trusted issuer's token: it belongs to no login.
    family: String,
    /// The earliest the token can have been issued ([`Claims::earliest_issue`]), for user
    /// revocations.
    issued_at: i64,
    signal: Arc<SocketSignal>,
}

#[derive(Default)]
pub(crate) struct SocketBindings {
    /// By user, each socket under its id: a socket leaves in constant time, however many its
    /// user holds.
    by_user: Mutex<HashMap<String, HashMap<u64, Entry>>>,
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
    /// Adds a socket bound to the token of `claims` (its user is `sub`), unless the user already
    /// holds `max` sockets.
    pub(crate) fn register(self: &Arc<Self>, claims: &Claims, max: usize) -> Result<Binding, TooMany> {
        let mut by_user = self.by_user.lock().expect("socket bindings lock poisoned");
        let entries = by_user.entry(claims.sub.clone()).or_default();
        if entries.len() >= max {
            return Err(TooMany);
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let signal = Arc::new(SocketSignal::default());
        entries.insert(
            id,
            Entry {
                jti: claims.jti.clone(),
                family: claims.fam.clone(),
                issued_at: claims.earliest_issue(),
                signal: signal.clone(),
            },
        );
        Ok(Binding { bindings: self.clone(), user: claims.sub.clone(), id, signal })
    }

    /// Signals every socket bound to what `revocation` revokes.
    pub(crate) fn revoke(&self, revocation: &Revocation) -> usize {
        let by_user = self.by_user.lock().expect("socket bindings lock poisoned");
        let Some(entries) = by_user.get(&revocation.username) else {
            return 0;
        };
        let mut hit = 0;
        for entry in entries.values() {
            let bound = match revocation.kind {
                RevocationKind::Token => entry.jti == revocation.subject,
                RevocationKind::Family => !entry.family.is_empty() && entry.family == revocation.subject,
                RevocationKind::User { issued_before } => entry.issued_at < issued_before,
                RevocationKind::Disconnect => true,
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
    /// Binds the socket to a new token of the same user (after an in-band refresh).
    pub(crate) fn rebind(&self, claims: &Claims) {
        let mut by_user = self.bindings.by_user.lock().expect("socket bindings lock poisoned");
        if let Some(entry) = by_user.get_mut(&self.user).and_then(|entries| entries.get_mut(&self.id)) {
            entry.jti.clone_from(&claims.jti);
            entry.family.clone_from(&claims.fam);
            entry.issued_at = claims.earliest_issue();
        }
    }
}

impl Drop for Binding {
    fn drop(&mut self) {
        let mut by_user = self.bindings.by_user.lock().expect("socket bindings lock poisoned");
        if let Some(entries) = by_user.get_mut(&self.user) {
            entries.remove(&self.id);
            if entries.is_empty() {
                by_user.remove(&self.user);
            }
        }
    }
}
