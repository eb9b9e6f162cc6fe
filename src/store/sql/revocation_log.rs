//! [`RevocationLog`] in SQL: the append-only `revocations` table, which every node follows with
//! `WHERE id > last_seen ORDER BY id`.
//!
//! That a follower misses nothing needs ids to become visible in increasing order. SQLite gives it
//! (one writer at a time). PostgreSQL does not by itself: an id is taken when its row is inserted
//! but becomes visible when its transaction commits, so a row with a lower id could commit after a
//! higher one was read, and be skipped for good. So every transaction that appends takes the
//! backend's log lock ([`Backend::lock_revocation_log`](super::Backend::lock_revocation_log))
//! right before it does: appends are serialized, and ids are taken and made visible in order.
//! The lock is taken after any row lock of the transaction and nothing waits for a row lock while
//! holding it, so it cannot deadlock; appends are rare (logout, reuse, revoking a user).

use super::for_every_backend;
use crate::store::{Revocation, RevocationKind, RevocationLog, StoreResult};

/// A `revocations` row; `created_at` is not read.
#[derive(sqlx::FromRow)]
struct RevocationRow {
    id: i64,
    kind: String,
    subject: String,
    username: String,
    expires_at: i64,
    /// Set for user revocations and disconnections ([`RevocationKind::issued_before`]).
    issued_before: Option<i64>,
}

impl RevocationRow {
    /// The log id and the revocation; `None` (the entry is skipped) for an unknown kind.
    fn into_entry(self) -> Option<(i64, Revocation)> {
        let kind = RevocationKind::parse(&self.kind, self.issued_before)?;
        let RevocationRow { id, subject, username, expires_at, .. } = self;
        Some((id, Revocation { kind, subject, username, expires_at }))
    }
}

for_every_backend! {
    impl {
        /// Appends `revocations` to the log inside the caller's transaction, under the log lock
        /// (module documentation); returns the last id. Nothing to append takes no lock.
        pub(super) async fn append_revocations(
            connection: &mut DB::Connection,
            revocations: &[Revocation],
            now: i64,
        ) -> sqlx::Result<i64> {
            let mut last = 0;
            if revocations.is_empty() {
                return Ok(last);
            }
            DB::lock_revocation_log(connection).await?;
            for revocation in revocations {
                last = sqlx::query_scalar(
                    "INSERT INTO revocations (kind, subject, username, expires_at, created_at, issued_before) \
                     VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
                )
                .bind(revocation.kind.as_str())
                .bind(&revocation.subject)
                .bind(&revocation.username)
                .bind(revocation.expires_at)
                .bind(now)
                .bind(revocation.kind.issued_before())
                .fetch_one(&mut *connection)
                .await?;
            }
            Ok(last)
        }
    }
}

for_every_backend! {
    impl RevocationLog {
        async fn revoke(&self, revocation: &Revocation, now: i64) -> StoreResult<i64> {
            let mut tx = self.pool.begin().await?;
            if revocation.kind == RevocationKind::Family {
                sqlx::query("UPDATE refresh_families SET revoked = TRUE WHERE id = $1")
                    .bind(&revocation.subject)
                    .execute(&mut *tx)
                    .await?;
            }
            let id = Self::append_revocations(&mut tx, std::slice::from_ref(revocation), now).await?;
            tx.commit().await?;
            Ok(id)
        }

        async fn revocations_since(&self, after_id: i64, limit: i64) -> StoreResult<Vec<(i64, Revocation)>> {
            let rows: Vec<RevocationRow> =
                sqlx::query_as("SELECT * FROM revocations WHERE id > $1 ORDER BY id LIMIT $2")
                    .bind(after_id)
                    .bind(limit)
                    .fetch_all(&self.pool)
                    .await?;
            Ok(rows.into_iter().filter_map(RevocationRow::into_entry).collect())
        }

        async fn live_revocations(&self, now: i64) -> StoreResult<(i64, Vec<Revocation>)> {
            // Two statements: everything up to `newest` is visible by then (appends become visible
            // in id order), and the follower resumes after `newest`.
            let newest: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(id), 0) FROM revocations")
                .fetch_one(&self.pool)
                .await?;
            let rows: Vec<RevocationRow> = sqlx::query_as(
                "SELECT * FROM revocations WHERE id <= $1 AND expires_at > $2 AND kind <> 'disconnect'",
            )
            .bind(newest)
            .bind(now)
            .fetch_all(&self.pool)
            .await?;
            let live = rows.into_iter().filter_map(RevocationRow::into_entry).map(|(_, r)| r).collect();
            Ok((newest, live))
        }
    }
}
