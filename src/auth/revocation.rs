//! The in-memory view of the revocation log. Each node loads what is still in force at start,
//! then follows the log (see `app::follow_revocations`), so checking a token costs a hash lookup.

use crate::store::Revocation;
use std::collections::HashMap;
use std::sync::RwLock;

#[derive(Default)]
pub(crate) struct Revocations {
    /// Revoked `jti`s and family ids (both random, so they share one map) → when they stop mattering.
    revoked: RwLock<HashMap<String, i64>>,
}

impl Revocations {
    /// Records a revocation; returns whether it was new to this node.
    pub(crate) fn apply(&self, revocation: &Revocation) -> bool {
        let mut revoked = self.revoked.write().expect("revocations lock poisoned");
        revoked.insert(revocation.subject.clone(), revocation.expires_at).is_none()
    }

    /// True when the token itself or its whole login was revoked.
    pub(crate) fn is_revoked(&self, jti: &str, family: &str) -> bool {
        let revoked = self.revoked.read().expect("revocations lock poisoned");
        revoked.contains_key(jti) || revoked.contains_key(family)
    }

    /// Forgets entries whose tokens have all expired anyway.
    pub(crate) fn prune(&self, now: i64) {
        let mut revoked = self.revoked.write().expect("revocations lock poisoned");
        revoked.retain(|_, expires_at| *expires_at > now);
    }
}
