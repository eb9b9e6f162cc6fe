//! Persistence: what wsguard keeps, by role (users, logins, the revocation log, publications,
//! API keys, webhooks, the audit log), each a trait, and one SQL implementation of them all ([`SqlStore`]) that runs on
//! SQLite by default and on PostgreSQL for several nodes. Only how a database is opened, and how
//! publications are written (each database's fastest way), differ between the two.

mod api_keys;
mod audit;
mod group_commit;
mod logins;
pub mod migrations;
mod numbering;
mod postgres;
mod publications;
mod revocations;
mod sql;
mod sqlite;
mod users;
mod webhooks;

pub use api_keys::{ApiKeyRecord, ApiKeyStore};
use async_trait::async_trait;
pub use audit::{AuditEntry, AuditStore};
pub use logins::{LoginStore, RefreshRotation, Rotation};
pub use publications::{NewPublication, Position, Publication, PublicationStore, Range, Retention};
pub use revocations::{Revocation, RevocationKind, RevocationLog};
pub use sql::SqlStore;
use std::sync::Arc;
pub use users::{UserRecord, UserStore};
pub use webhooks::{HookEvent, HookKind, HookKinds, MemberChange, WebhookStore};

/// The store on SQLite: one file in the data folder (see `sqlite/`).
pub type SqliteStore = SqlStore<sqlx::Sqlite>;
/// The store on PostgreSQL, shared by several nodes (see `postgres/`).
pub type PostgresStore = SqlStore<sqlx::Postgres>;

/// Everything wsguard keeps.
#[async_trait]
pub trait Store:
    UserStore + LoginStore + RevocationLog + PublicationStore + ApiKeyStore + WebhookStore + AuditStore + 'static
{
    /// Cheap round trip, for readiness checks.
    async fn ping(&self) -> StoreResult<()>;
    /// Deletes what no longer matters at `now` (Unix seconds): logins whose refresh tokens have all
    /// expired, revocations whose tokens have, and publications past their channel's TTL (with
    /// the channels left without any, whose numbering then starts over in a new epoch). Returns
    /// how many of each went. Without it the tables grow without end; a node following the log
    /// loses nothing, since what goes is expired anyway.
    async fn prune(&self, now: i64) -> StoreResult<Pruned>;
}

pub type DynStore = Arc<dyn Store>;

/// What [`Store::prune`] deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pruned {
    pub logins: u64,
    pub revocations: u64,
    pub publications: u64,
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
        let outage = match &err {
            sqlx::Error::Database(db) if db.is_unique_violation() => return StoreError::Conflict,
            sqlx::Error::Database(db) => is_outage(db.as_ref()),
            sqlx::Error::Io(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Tls(_) => true,
            _ => false,
        };
        if outage {
            StoreError::Unavailable(Arc::new(err))
        } else {
            StoreError::Other(Arc::new(err))
        }
    }
}

/// Whether the database said it cannot serve now, rather than that the statement is wrong: an
/// outage answers 503, not 500. PostgreSQL: connection exceptions (class 08), admin or crash
/// shutdown and "starting up" (57P01-3), too many connections (53300), as a restart reports them.
/// SQLite: the database busy or locked past the wait.
fn is_outage(db: &dyn sqlx::error::DatabaseError) -> bool {
    let Some(code) = db.code() else { return false };
    if db.try_downcast_ref::<sqlx::postgres::PgDatabaseError>().is_some() {
        return code.starts_with("08") || matches!(&*code, "57P01" | "57P02" | "57P03" | "53300");
    }
    // SQLite's extended code: the primary one is its low byte (SQLITE_BUSY 5, SQLITE_LOCKED 6).
    db.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some()
        && code.parse::<i32>().is_ok_and(|code| matches!(code & 0xff, 5 | 6))
}

pub type StoreResult<T> = Result<T, StoreError>;

/// Opens the store named by `url` and brings its schema up to date: `sqlite:…` for the SQLite
/// file, `postgres://…` or `postgresql://…` for PostgreSQL (several nodes sharing one database).
pub async fn connect(url: &str) -> anyhow::Result<DynStore> {
    if url.starts_with("sqlite:") {
        Ok(Arc::new(SqliteStore::connect(url).await?))
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Arc::new(PostgresStore::connect(url).await?))
    } else {
        Err(unsupported(url))
    }
}

/// The error for a database URL of neither database, naming only its scheme: the rest of a URL
/// may hold a password.
fn unsupported(url: &str) -> anyhow::Error {
    let scheme = url.split_once(':').map_or("(none)", |(scheme, _)| scheme);
    anyhow::anyhow!(
        "unsupported database URL scheme {scheme:?}: expected sqlite:…, postgres://… or postgresql://…"
    )
}
