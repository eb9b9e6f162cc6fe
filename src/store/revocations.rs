//! The revocation log: what was revoked, appended by whichever node or CLI revoked it and followed
//! by every node, so that a revocation made anywhere reaches every node's sockets.

use super::StoreResult;
use async_trait::async_trait;

/// What a revocation applies to. Each is written to the revocation log, which every node follows.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum RevocationKind {
    /// One token, by `jti`.
    Token,
    /// Every token of a login (its refresh family), by family id.
    Family,
    /// Every token of a user, from any issuer, whose `iat` is before `issued_before` (Unix
    /// seconds); tokens without `iat` too. The subject is the username.
    User { issued_before: i64 },
    /// Closes the user's sockets bound at or before `at_ms` (Unix milliseconds) on every node and
    /// revokes nothing: a socket the client opens again afterwards stays, however late a node
    /// follows the log; never loaded by a starting node. The subject is the username.
    Disconnect { at_ms: i64 },
}

impl RevocationKind {
    /// The `kind` column.
    pub(super) fn as_str(&self) -> &'static str {
        match self {
            RevocationKind::Token => "token",
            RevocationKind::Family => "family",
            RevocationKind::User { .. } => "user",
            RevocationKind::Disconnect { .. } => "disconnect",
        }
    }

    /// The kind of a log row from its `kind` and `issued_before` columns; `None` for an unknown
    /// one, or a user revocation without its time.
    pub(super) fn parse(s: &str, issued_before: Option<i64>) -> Option<Self> {
        match s {
            "token" => Some(RevocationKind::Token),
            "family" => Some(RevocationKind::Family),
            "user" => issued_before.map(|issued_before| RevocationKind::User { issued_before }),
            // Without its time, a disconnection written by an older wsguard: it closed them all.
            "disconnect" => Some(RevocationKind::Disconnect { at_ms: issued_before.unwrap_or(i64::MAX) }),
            _ => None,
        }
    }

    /// The `issued_before` column: the time a user revocation (Unix seconds, against tokens'
    /// `iat`) or a disconnection (Unix milliseconds, against sockets' binding) reaches up to.
    pub(super) fn issued_before(&self) -> Option<i64> {
        match self {
            RevocationKind::User { issued_before } => Some(*issued_before),
            RevocationKind::Disconnect { at_ms } => Some(*at_ms),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Revocation {
    pub kind: RevocationKind,
    /// The `jti`, the family id, or the username.
    pub subject: String,
    pub username: String,
    /// Unix seconds after which the entry no longer matters (every token it covers has expired).
    pub expires_at: i64,
}

impl Revocation {
    /// Revokes every token of the login (refresh family) `family`.
    pub fn family(family: impl Into<String>, username: impl Into<String>, expires_at: i64) -> Self {
        Revocation {
            kind: RevocationKind::Family,
            subject: family.into(),
            username: username.into(),
            expires_at,
        }
    }

    /// Revokes the one token `jti`.
    pub fn token(jti: impl Into<String>, username: impl Into<String>, expires_at: i64) -> Self {
        Revocation { kind: RevocationKind::Token, subject: jti.into(), username: username.into(), expires_at }
    }

    /// Revokes every token of `username` issued before `issued_before`, until `expires_at`.
    pub fn user(username: &str, issued_before: i64, expires_at: i64) -> Self {
        Revocation {
            kind: RevocationKind::User { issued_before },
            subject: username.to_owned(),
            username: username.to_owned(),
            expires_at,
        }
    }

    /// Closes the sockets of `username` bound at or before `at_ms` on every node. `expires_at` only
    /// bounds how long the entry stays in the log for nodes that follow it late; it is never in
    /// force.
    pub fn disconnect(username: &str, at_ms: i64, expires_at: i64) -> Self {
        Revocation {
            kind: RevocationKind::Disconnect { at_ms },
            subject: username.to_owned(),
            username: username.to_owned(),
            expires_at,
        }
    }
}

#[async_trait]
pub trait RevocationLog: Send + Sync {
    /// Appends to the log (revoking a family also marks it dead) and returns the row id.
    async fn revoke(&self, revocation: &Revocation, now: i64) -> StoreResult<i64>;
    /// Log entries after `after_id`, oldest first: a follower that reads from the last id it saw
    /// misses none, whichever node or process wrote them.
    async fn revocations_since(&self, after_id: i64, limit: i64) -> StoreResult<Vec<(i64, Revocation)>>;
    /// The newest log id and every entry still in force at `now`, for a node that starts
    /// (disconnections never are).
    async fn live_revocations(&self, now: i64) -> StoreResult<(i64, Vec<Revocation>)>;
}
