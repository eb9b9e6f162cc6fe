//! The store for several nodes: PostgreSQL, shared by every node and the CLI. The statements are
//! the SQL store's (`sql/`); here are how it is opened (`connect.rs`), how publications are
//! written (`writer.rs`), and the revocation log's lock.

mod connect;
mod writer;

use super::sql::Backend;
use sqlx::postgres::PgQueryResult;
use sqlx::{PgConnection, Postgres};
use std::future::Future;

/// Advisory lock key serializing appends to the revocation log ("wsguard" + 0x01). Shared by every
/// schema of the database, which only serializes log appends of several deployments together.
const REVOCATION_LOG_LOCK: i64 = 0x7773_6775_6172_6401;
/// Advisory lock key serializing changes to webhook members ("wsguard" + 0x02).
const WEBHOOKS_LOCK: i64 = 0x7773_6775_6172_6402;

impl Backend for Postgres {
    fn rows_affected(done: &PgQueryResult) -> u64 {
        done.rows_affected()
    }

    /// A transaction-scoped advisory lock, released at commit, once the commit is visible (why:
    /// `sql/revocation_log.rs`).
    fn lock_revocation_log(connection: &mut PgConnection) -> impl Future<Output = sqlx::Result<()>> + Send {
        let lock = sqlx::query("SELECT pg_advisory_xact_lock($1)").bind(REVOCATION_LOG_LOCK);
        async move { lock.execute(connection).await.map(drop) }
    }

    /// The same kind of lock: until the transaction ends.
    fn lock_webhooks(connection: &mut PgConnection) -> impl Future<Output = sqlx::Result<()>> + Send {
        let lock = sqlx::query("SELECT pg_advisory_xact_lock($1)").bind(WEBHOOKS_LOCK);
        async move { lock.execute(connection).await.map(drop) }
    }
}
