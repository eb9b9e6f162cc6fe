//! Persistence behind one trait, so the server runs on SQLite by default and on another database
//! without touching the callers.

mod api_keys;
mod batch;
mod group_commit;
mod postgres;
mod rows;
mod sqlite;

pub use api_keys::{ApiKeyRecord, ApiKeyStore};
use async_trait::async_trait;
pub use postgres::PostgresStore;
pub use sqlite::SqliteStore;
use std::sync::Arc;

/// A user as stored. `password_hash` never leaves the server: HTTP responses show a public view.
#[derive(Debug, Clone)]
pub struct UserRecord {
    pub username: String,
    pub email: Option<String>,
    pub full_name: Option<String>,
    pub password_hash: String,
    pub disabled: bool,
}

/// What a refresh-token rotation found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rotation {
    /// The presented token was the family's current one; the new one replaces it.
    Rotated,
    /// The presented token is the one the current one replaced at `rotated_at`, within the grace
    /// window: a second tab refreshing at the same time. Nothing changed; the caller hands out
    /// the same new pair again.
    Repeated { rotated_at: i64 },
    /// The presented token was an old one of a live family: replay. The family is now revoked.
    Reused,
    /// The family is unknown, expired or already revoked.
    Dead,
}

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
    /// Closes the user's sockets on every node and revokes nothing: not in force once applied,
    /// never loaded by a starting node. The subject is the username.
    Disconnect,
}

impl RevocationKind {
    fn as_str(&self) -> &'static str {
        match self {
            RevocationKind::Token => "token",
            RevocationKind::Family => "family",
            RevocationKind::User { .. } => "user",
            RevocationKind::Disconnect => "disconnect",
        }
    }

    /// The kind of a log row; `None` for an unknown one, or a user revocation without its time.
    fn parse(s: &str, issued_before: Option<i64>) -> Option<Self> {
        match s {
            "token" => Some(RevocationKind::Token),
            "family" => Some(RevocationKind::Family),
            "user" => issued_before.map(|issued_before| RevocationKind::User { issued_before }),
            "disconnect" => Some(RevocationKind::Disconnect),
            _ => None,
        }
    }

    /// The `issued_before` column.
    fn issued_before(&self) -> Option<i64> {
        match self {
            RevocationKind::User { issued_before } => Some(*issued_before),
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

    /// Closes the sockets of `username` on every node. `expires_at` only bounds how long the entry
    /// stays in the log for nodes that follow it late; it is never in force.
    pub fn disconnect(username: &str, expires_at: i64) -> Self {
        Revocation {
            kind: RevocationKind::Disconnect,
            subject: username.to_owned(),
            username: username.to_owned(),
            expires_at,
        }
    }
}

/// Cheap to clone: every publication of a failed batch gets the batch's error.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    #[error("already exists")]
    Conflict,
    #[error("database unavailable: {0}")]
    Unavailable(#[source] Arc<sqlx::Error>),
    #[error("database error: {0}")]
    Other(#[source] Arc<sqlx::Error>),
}

impl From<sqlx::Error> for StoreError {
    fn from(err: sqlx::Error) -> Self {
        match &err {
            sqlx::Error::Database(db) if db.is_unique_violation() => StoreError::Conflict,
            sqlx::Error::Io(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Tls(_) => StoreError::Unavailable(Arc::new(err)),
            _ => StoreError::Other(Arc::new(err)),
        }
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

/// What [`Store::prune`] deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pruned {
    pub logins: u64,
    pub revocations: u64,
    pub publications: u64,
}

/// How much of a channel's history is kept: its namespace's size and TTL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Publications kept; `None`: all of them.
    pub size: Option<u32>,
    /// Milliseconds a publication is kept; `None`: forever.
    pub ttl_ms: Option<i64>,
}

impl Retention {
    /// Everything, forever: the chat rooms'.
    pub const ALL: Retention = Retention { size: None, ttl_ms: None };

    pub(crate) fn expires_ms(&self, created_ms: i64) -> i64 {
        self.ttl_ms.map_or(i64::MAX, |ttl| created_ms.saturating_add(ttl))
    }
}

/// A stored publication of a channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Publication {
    pub channel: String,
    /// Its place in the channel: 1, 2, 3… without gaps.
    pub offset: i64,
    /// The publishing user; `None` for the server API.
    pub sender: Option<String>,
    /// JSON text, as published.
    pub data: String,
    /// Unix milliseconds.
    pub created_ms: i64,
}

/// Where a channel's numbering stands: its last offset, in its epoch. A channel whose history
/// was lost starts again from 1 in a new epoch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Position {
    pub offset: i64,
    pub epoch: String,
}

/// Which publications of a channel to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Range {
    /// The newest ones with offsets below this (paging back through history).
    Before(i64),
    /// The oldest ones with offsets above this (catching up).
    After(i64),
}

/// Everything wsguard keeps; the server-API keys' part is [`ApiKeyStore`].
#[async_trait]
pub trait Store: ApiKeyStore + Send + Sync + 'static {
    /// Cheap round trip, for readiness checks.
    async fn ping(&self) -> StoreResult<()>;

    async fn user(&self, username: &str) -> StoreResult<Option<UserRecord>>;
    /// The user and whether the login `family` is revoked (or unknown, or another user's), in one
    /// round trip: what
    /// every authenticated request needs, consistent at once with revocations made elsewhere.
    async fn principal(&self, username: &str, family: &str) -> StoreResult<Option<(UserRecord, bool)>>;
    /// Fails with [`StoreError::Conflict`] when the username is taken.
    async fn create_user(&self, user: &UserRecord) -> StoreResult<()>;
    async fn list_users(&self) -> StoreResult<Vec<UserRecord>>;
    /// Returns false when there is no such user.
    async fn set_disabled(&self, username: &str, disabled: bool) -> StoreResult<bool>;
    /// Returns false when there is no such user.
    async fn set_password_hash(&self, username: &str, hash: &str) -> StoreResult<bool>;

    async fn create_family(
        &self,
        family: &str,
        username: &str,
        jti: &str,
        expires_at: i64,
    ) -> StoreResult<()>;
    /// The current refresh token (`jti`) of the live login `family` of `username`: the only one of
    /// the login's refresh tokens that is still valid. `None` for a revoked, expired, unknown or
    /// another user's login.
    async fn current_refresh(&self, family: &str, username: &str, now: i64) -> StoreResult<Option<String>>;
    /// Atomically replaces the family's current token `presented` by `next`, which lives until
    /// `expires_at`, and remembers `presented` and `now`. The token the current one replaced at or
    /// after `grace_from` reports [`Rotation::Repeated`] and changes nothing (pass `i64::MAX` for
    /// no grace). Any other token that is not the current one revokes the family (and logs that
    /// revocation) and reports [`Rotation::Reused`].
    async fn rotate_family(
        &self,
        family: &str,
        presented: &str,
        next: &str,
        expires_at: i64,
        now: i64,
        grace_from: i64,
    ) -> StoreResult<Rotation>;
    /// When the live login `family` of `username` last rotated, if the token it replaced then was
    /// `presented`: for a check of a just-replaced token within the grace window.
    async fn replaced_at(
        &self,
        family: &str,
        username: &str,
        presented: &str,
        now: i64,
    ) -> StoreResult<Option<i64>>;

    /// Revokes every live family of the user (disabled, or a new password), logs each one and
    /// returns them.
    async fn revoke_user(&self, username: &str, now: i64) -> StoreResult<Vec<Revocation>>;

    /// Appends to the revocation log (revoking a family also marks it dead) and returns the row id.
    async fn revoke(&self, revocation: &Revocation, now: i64) -> StoreResult<i64>;
    /// Log entries after `after_id`, oldest first.
    async fn revocations_since(&self, after_id: i64, limit: i64) -> StoreResult<Vec<(i64, Revocation)>>;
    /// The newest log id and every entry still in force at `now`, for a node that starts
    /// (disconnections never are).
    async fn live_revocations(&self, now: i64) -> StoreResult<(i64, Vec<Revocation>)>;
    /// Deletes what no longer matters at `now` (Unix seconds): logins whose refresh tokens have all
    /// expired, revocations whose tokens have, and publications past their channel's TTL (with
    /// the channels left without any, whose numbering then starts over in a new epoch). Returns how many of each went. Without it both tables grow
    /// without end; a node following the log loses nothing, since what goes is expired anyway.
    async fn prune(&self, now: i64) -> StoreResult<Pruned>;

    /// Stores a publication of `channel` under its next offset and trims the channel's history to
    /// `retention`; once this returns, the publication is durable and may be acknowledged.
    async fn publish(
        &self,
        channel: &str,
        sender: Option<&str>,
        data: &str,
        created_ms: i64,
        retention: Retention,
    ) -> StoreResult<(Publication, Position)>;
    /// Up to `limit` publications of `channel` in `range` still kept at `now_ms`, oldest first,
    /// and where the channel stands (`None`: it has never published, or its history is gone).
    async fn publications(
        &self,
        channel: &str,
        range: Range,
        limit: i64,
        now_ms: i64,
    ) -> StoreResult<(Vec<Publication>, Option<Position>)>;
}

pub type DynStore = Arc<dyn Store>;

/// Opens the store named by `url` and brings its schema up to date: `sqlite:…` for the SQLite
/// file, `postgres://…` or `postgresql://…` for PostgreSQL (several nodes sharing one database).
pub async fn connect(url: &str) -> anyhow::Result<DynStore> {
    if url.starts_with("sqlite:") {
        Ok(Arc::new(SqliteStore::connect(url).await?))
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Arc::new(PostgresStore::connect(url).await?))
    } else {
        // Only the scheme: the rest of a URL may hold a password.
        let scheme = url.split_once(':').map_or("(none)", |(scheme, _)| scheme);
        anyhow::bail!(
            "unsupported database URL scheme {scheme:?}: expected sqlite:…, postgres://… or \
             postgresql://…"
        )
    }
}
