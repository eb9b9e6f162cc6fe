//! The in-memory view of the revocation log. Each node loads what is still in force at start,
//! then follows the log (see `server::follow_revocations`), so checking a token costs two hash
//! lookups.

use super::tokens::Claims;
use crate::store::{Revocation, RevocationKind};
use std::collections::HashMap;
use std::sync::RwLock;

#[derive(Default)]
pub(crate) struct Revocations {
    in_force: RwLock<InForce>,
}

#[derive(Default)]
struct InForce {
    /// Revoked `jti`s and family ids (both random, so they share one map) → when they stop mattering.
    ids: HashMap<String, i64>,
    /// Revoked users → (tokens issued before this are refused, when that stops mattering).
    users: HashMap<String, (i64, i64)>,
}

impl Revocations {
    /// Records a revocation; returns whether it was new to this node. A disconnection revokes
    /// nothing and is never new.
    pub(crate) fn apply(&self, revocation: &Revocation) -> bool {
        let mut in_force = self.in_force.write().expect("revocations lock poisoned");
        match revocation.kind {
            RevocationKind::Token | RevocationKind::Family => {
                in_force.ids.insert(revocation.subject.clone(), revocation.expires_at).is_none()
            }
            RevocationKind::User { issued_before } => {
                let entry = in_force.users.entry(revocation.username.clone());
                let new = matches!(entry, std::collections::hash_map::Entry::Vacant(_));
                // Two revocations of one user: the later cutoff and the longer life win.
                let (before, until) = entry.or_insert((issued_before, revocation.expires_at));
                *before = (*before).max(issued_before);
                *until = (*until).max(revocation.expires_at);
                new
            }
            RevocationKind::Disconnect { .. } => false,
        }
    }

    /// True when the token itself, its whole login, or every token of its user that could have
    /// been issued before it ([`Claims::earliest_issue`]) was revoked. Tokens without a login (a
    /// trusted issuer's) have an empty family.
    pub(crate) fn is_revoked(&self, claims: &Claims) -> bool {
        let in_force = self.in_force.read().expect("revocations lock poisoned");
        in_force.ids.contains_key(&claims.jti)
            || (!claims.fam.is_empty() && in_force.ids.contains_key(&claims.fam))
            || in_force.users.get(&claims.sub).is_some_and(|(before, _)| claims.earliest_issue() < *before)
    }

    /// Forgets entries whose tokens have all expired anyway.
    pub(crate) fn prune(&self, now: i64) {
        let mut in_force = self.in_force.write().expect("revocations lock poisoned");
        in_force.ids.retain(|_, expires_at| *expires_at > now);
        in_force.users.retain(|_, (_, expires_at)| *expires_at > now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::tokens::TokenKind;

    fn claims(sub: &str, jti: &str, fam: &str, iat: i64) -> Claims {
        Claims {
            sub: sub.into(),
            exp: iat + 60,
            iat,
            nbf: iat,
            jti: jti.into(),
            kind: TokenKind::Access,
            fresh: false,
            iss: "wsguard".into(),
            aud: None,
            fam: fam.into(),
            csrf: String::new(),
            channels: Vec::new(),
        }
    }

    #[test]
    fn a_user_revocation_refuses_older_tokens_only_until_it_expires() {
        let revocations = Revocations::default();
        assert!(revocations.apply(&Revocation::user("bob", 1000, 5000)));
        assert!(revocations.is_revoked(&claims("bob", "a", "f", 999)));
        // No `iat` counts as 0: refused.
        assert!(revocations.is_revoked(&claims("bob", "a", "", 0)));
        assert!(!revocations.is_revoked(&claims("bob", "a", "f", 1000)), "issued at the cutoff");
        assert!(!revocations.is_revoked(&claims("alice", "a", "f", 999)), "another user");
        // A later, shorter revocation moves the cutoff, never the end.
        assert!(!revocations.apply(&Revocation::user("bob", 2000, 3000)));
        assert!(revocations.is_revoked(&claims("bob", "a", "f", 1999)));
        revocations.prune(4999);
        assert!(revocations.is_revoked(&claims("bob", "a", "f", 1999)), "in force until 5000");
        revocations.prune(5000);
        assert!(!revocations.is_revoked(&claims("bob", "a", "f", 1999)));
    }

    #[test]
    fn a_user_revocation_allows_for_a_trusted_issuers_clock_running_ahead() {
        use crate::auth::tokens::LEEWAY_SECS;
        let leeway = LEEWAY_SECS as i64;
        let revocations = Revocations::default();
        revocations.apply(&Revocation::user("bob", 1000, 5000));
        // Without a login (a trusted issuer's): an `iat` up to the leeway ahead may predate it.
        assert!(revocations.is_revoked(&claims("bob", "a", "", 1000 + leeway - 1)));
        assert!(!revocations.is_revoked(&claims("bob", "a", "", 1000 + leeway)));
        // wsguard's own tokens carry this server's clock.
        assert!(!revocations.is_revoked(&claims("bob", "a", "f", 1000)));
    }

    #[test]
    fn tokens_families_and_disconnections() {
        let revocations = Revocations::default();
        assert!(revocations.apply(&Revocation::token("jti-1", "bob", 100)));
        assert!(revocations.apply(&Revocation::family("fam-1", "bob", 100)));
        assert!(!revocations.apply(&Revocation::disconnect("bob", 100_000, 100)), "revokes nothing");
        assert!(revocations.is_revoked(&claims("bob", "jti-1", "", 10)));
        assert!(revocations.is_revoked(&claims("bob", "x", "fam-1", 10)));
        assert!(!revocations.is_revoked(&claims("bob", "x", "", 10)));
        // An empty family is no family, whatever the log holds.
        revocations.apply(&Revocation::family("", "bob", 100));
        assert!(!revocations.is_revoked(&claims("bob", "x", "", 10)));
    }
}
