//! The one SQL store: every statement and every decision written once, for SQLite and PostgreSQL
//! alike. The statements are plain SQL both databases read the same: `$1`-style parameters
//! (sqlx's SQLite driver takes them by number too), `TRUE`/`FALSE` and `NOT flag` for the flags
//! (SQLite stores 0/1 and reads both), `RETURNING` (SQLite 3.35+), times bound from Rust rather
//! than taken from SQL's own clock. What does differ is a [`Backend`]: how a driver reports
//! changed rows, and the one lock PostgreSQL needs and SQLite does not.
//!
//! Why generic code over `sqlx::Database` rather than `sqlx::Any`: `Any` converts every value
//! through its own types at run time, loses each driver's connection options, and lets a
//! statement that one driver cannot run compile all the same; here each database's impl is
//! checked by the compiler. The price is the bounds a generic statement needs of its driver,
//! which Rust does not carry along: [`for_every_backend!`] states them once.

mod api_keys;
mod audit;
mod logins;
mod publications;
mod revocation_log;
mod users;
mod webhooks;

use super::group_commit::PublicationWriter;
use super::{Pruned, Store, StoreResult};
use sqlx::{Database, Pool};
use std::future::Future;

/// The store on the database `DB`: a pool for everything, and a writer for publications.
pub struct SqlStore<DB: Database> {
    pub(super) pool: Pool<DB>,
    pub(super) publications: PublicationWriter,
}

/// What differs between the databases the store runs on.
pub trait Backend: Database {
    /// Rows an `UPDATE` or `DELETE` changed.
    fn rows_affected(done: &Self::QueryResult) -> u64;

    /// Called inside a transaction right before it appends to the revocation log: holds, until
    /// the transaction ends, whatever makes log ids become visible in increasing order (see
    /// `revocation_log.rs`).
    fn lock_revocation_log(
        connection: &mut Self::Connection,
    ) -> impl Future<Output = sqlx::Result<()>> + Send;

    /// Called inside a transaction before it changes webhook members: serializes such
    /// transactions of every node, and takes the write lock first (see `webhooks.rs`).
    fn lock_webhooks(connection: &mut Self::Connection) -> impl Future<Output = sqlx::Result<()>> + Send;
}

/// Implements a role's trait for [`SqlStore`] on every [`Backend`] (`impl UserStore { … }`), or
/// adds methods of its own (`impl { … }`), under the bounds its statements need of the driver:
/// executing on a pool or a transaction, and binding and reading the column types wsguard uses
/// (text, 64-bit integers, flags, and the nullable ones).
macro_rules! for_every_backend {
    (impl $role:path { $($items:tt)* }) => {
        $crate::store::sql::for_every_backend!(@impl [#[async_trait::async_trait]] [$role for] $($items)*);
    };
    (impl { $($items:tt)* }) => {
        $crate::store::sql::for_every_backend!(@impl [] [] $($items)*);
    };
    (@impl [$($attribute:tt)*] [$($role:tt)*] $($items:tt)*) => {
        $($attribute)*
        impl<DB> $($role)* $crate::store::sql::SqlStore<DB>
        where
            DB: $crate::store::sql::Backend,
            for<'c> &'c mut DB::Connection: sqlx::Executor<'c, Database = DB>,
            for<'q> DB::Arguments<'q>: sqlx::IntoArguments<'q, DB>,
            for<'q> &'q str: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
            for<'q> String: sqlx::Encode<'q, DB> + sqlx::Decode<'q, DB> + sqlx::Type<DB>,
            for<'q> i64: sqlx::Encode<'q, DB> + sqlx::Decode<'q, DB> + sqlx::Type<DB>,
            for<'q> bool: sqlx::Encode<'q, DB> + sqlx::Decode<'q, DB> + sqlx::Type<DB>,
            for<'q> Option<String>: sqlx::Encode<'q, DB>,
            for<'q> Option<i64>: sqlx::Encode<'q, DB>,
            for<'r> &'r str: sqlx::ColumnIndex<DB::Row>,
            usize: sqlx::ColumnIndex<DB::Row>,
        {
            $($items)*
        }
    };
}
pub(super) use for_every_backend;

for_every_backend! {
    impl Store {
        async fn ping(&self) -> StoreResult<()> {
            sqlx::query("SELECT 1").execute(&self.pool).await?;
            Ok(())
        }

        async fn prune(&self, now: i64) -> StoreResult<Pruned> {
            let delete = |statement, at| sqlx::query(statement).bind(at).execute(&self.pool);
            let logins = DB::rows_affected(&delete("DELETE FROM refresh_families WHERE expires_at <= $1", now).await?);
            // Deleting log rows needs no log lock: new rows' ids still become visible in order.
            let revocations = DB::rows_affected(&delete("DELETE FROM revocations WHERE expires_at <= $1", now).await?);
            let now_ms = now.saturating_mul(1000);
            // The second condition is the expiry index's own (migration 0007), so the sweep uses it.
            let publications = DB::rows_affected(
                &delete("DELETE FROM publications WHERE expires_ms <= $1 AND expires_ms < 9223372036854775807", now_ms)
                    .await?,
            );
            // Then the channels none of whose publications are left: their numbering starts over.
            delete("DELETE FROM channels WHERE expires_ms <= $1", now_ms).await?;
            Ok(Pruned { logins, revocations, publications })
        }
    }
}

for_every_backend! {
    impl {
        /// Every row of `statement` as a record, in byte order of `name` whatever the database's
        /// collation.
        async fn all_by_name<Row, Record>(&self, statement: &'static str, name: fn(&Record) -> &str) -> StoreResult<Vec<Record>>
        where
            Row: for<'r> sqlx::FromRow<'r, DB::Row> + Send + Unpin,
            Record: From<Row>,
        {
            let rows: Vec<Row> = sqlx::query_as(statement).fetch_all(&self.pool).await?;
            let mut records: Vec<Record> = rows.into_iter().map(Record::from).collect();
            records.sort_unstable_by(|a, b| name(a).cmp(name(b)));
            Ok(records)
        }
    }
}
