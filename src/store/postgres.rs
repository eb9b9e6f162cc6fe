//! The store for several nodes: PostgreSQL, shared by every node and the CLI. Same semantics as
//! [`super::SqliteStore`], statement for statement; only the SQL dialect and the concurrency
//! care differ (SQLite serializes writers, PostgreSQL does not).
//!
//! Ordering of ids:
//! - `revocations` is followed by every node with `WHERE id > last_seen ORDER BY id`. A BIGSERIAL
//!   id is taken when the row is inserted but becomes visible when its transaction commits, so
//!   without care a row with a lower id could commit after a higher one was already read, and a
//!   follower would skip it for good. Every transaction that inserts into `revocations` therefore
//!   takes [`REVOCATION_LOG_LOCK`] (a transaction-scoped advisory lock, released at commit, after
//!   the commit is visible) right before its inserts: log writers are serialized, ids are taken
//!   and made visible in increasing order. The lock is taken after any row lock of the same
//!   transaction and nothing waits on a row lock while holding it, so it cannot deadlock. Log
//!   writes are rare (logout, reuse, disabling a user), so serializing them costs nothing.
//! - `publications` are numbered per channel by the channel's row, whose lock is held to commit:
//!   publications of one channel commit in offset order, those of different channels in parallel.

mod api_keys;
mod connect;
mod errors;
mod publications;
mod revocation_log;

use super::batch::Request;
use super::group_commit::PublicationWriter;
use super::rows::{PrincipalRow, RevocationRow, UserRow};
use super::{
    Position, Pruned, Publication, Range, Retention, Revocation, RevocationKind, Rotation, Store,
    StoreResult, UserRecord,
};
use async_trait::async_trait;
use errors::run;
use revocation_log::{lock_revocation_log, log_revocation};
use sqlx::PgPool;

/// Opened by [`PostgresStore::connect`] and its variants (in `postgres/connect.rs`).
pub struct PostgresStore {
    pool: PgPool,
    publications: PublicationWriter,
}

#[async_trait]
impl Store for PostgresStore {
    async fn ping(&self) -> StoreResult<()> {
        run(async {
            sqlx::query("SELECT 1").execute(&self.pool).await?;
            Ok(())
        })
        .await
    }

    async fn user(&self, username: &str) -> StoreResult<Option<UserRecord>> {
        run(async {
            let row = sqlx::query_as::<_, UserRow>("SELECT * FROM users WHERE username = $1")
                .bind(username)
                .fetch_optional(&self.pool)
                .await?;
            Ok(row.map(UserRecord::from))
        })
        .await
    }

    async fn principal(&self, username: &str, family: &str) -> StoreResult<Option<(UserRecord, bool)>> {
        run(async {
            let row = sqlx::query_as::<_, PrincipalRow>(
                "SELECT users.*, \
                 COALESCE((SELECT revoked FROM refresh_families WHERE id = $1 AND username = users.username), TRUE) \
                 AS family_revoked \
                 FROM users WHERE username = $2",
            )
            .bind(family)
            .bind(username)
            .fetch_optional(&self.pool)
            .await?;
            Ok(row.map(Into::into))
        })
        .await
    }

    async fn create_user(&self, user: &UserRecord) -> StoreResult<()> {
        run(async {
            sqlx::query(
                "INSERT INTO users (username, email, full_name, password_hash, disabled, created_at) \
                 VALUES ($1, $2, $3, $4, $5, EXTRACT(EPOCH FROM now())::BIGINT)",
            )
            .bind(&user.username)
            .bind(&user.email)
            .bind(&user.full_name)
            .bind(&user.password_hash)
            .bind(user.disabled)
            .execute(&self.pool)
            .await?;
            Ok(())
        })
        .await
    }

    async fn list_users(&self) -> StoreResult<Vec<UserRecord>> {
        run(async {
            // COLLATE "C": byte order, as SQLite's default BINARY collation sorts.
            let rows = sqlx::query_as::<_, UserRow>("SELECT * FROM users ORDER BY username COLLATE \"C\"")
                .fetch_all(&self.pool)
                .await?;
            Ok(rows.into_iter().map(UserRecord::from).collect())
        })
        .await
    }

    async fn set_disabled(&self, username: &str, disabled: bool) -> StoreResult<bool> {
        run(async {
            let done = sqlx::query("UPDATE users SET disabled = $1 WHERE username = $2")
                .bind(disabled)
                .bind(username)
                .execute(&self.pool)
                .await?;
            Ok(done.rows_affected() == 1)
        })
        .await
    }

    async fn set_password_hash(&self, username: &str, hash: &str) -> StoreResult<bool> {
        run(async {
            let done = sqlx::query("UPDATE users SET password_hash = $1 WHERE username = $2")
                .bind(hash)
                .bind(username)
                .execute(&self.pool)
                .await?;
            Ok(done.rows_affected() == 1)
        })
        .await
    }

    async fn create_family(
        &self,
        family: &str,
        username: &str,
        jti: &str,
        expires_at: i64,
    ) -> StoreResult<()> {
        run(async {
            sqlx::query(
                "INSERT INTO refresh_families (id, username, current_jti, expires_at) \
                 VALUES ($1, $2, $3, $4)",
            )
            .bind(family)
            .bind(username)
            .bind(jti)
            .bind(expires_at)
            .execute(&self.pool)
            .await?;
            Ok(())
        })
        .await
    }

    async fn current_refresh(&self, family: &str, username: &str, now: i64) -> StoreResult<Option<String>> {
        run(async {
            sqlx::query_scalar(
                "SELECT current_jti FROM refresh_families \
                 WHERE id = $1 AND username = $2 AND NOT revoked AND expires_at > $3",
            )
            .bind(family)
            .bind(username)
            .bind(now)
            .fetch_optional(&self.pool)
            .await
        })
        .await
    }

    async fn replaced_at(
        &self,
        family: &str,
        username: &str,
        presented: &str,
        now: i64,
    ) -> StoreResult<Option<i64>> {
        run(async {
            let at: Option<Option<i64>> = sqlx::query_scalar(
                "SELECT rotated_at FROM refresh_families \
                 WHERE id = $1 AND username = $2 AND previous_jti = $3 AND NOT revoked AND expires_at > $4",
            )
            .bind(family)
            .bind(username)
            .bind(presented)
            .bind(now)
            .fetch_optional(&self.pool)
            .await?;
            Ok(at.flatten())
        })
        .await
    }

    async fn rotate_family(
        &self,
        family: &str,
        presented: &str,
        next: &str,
        expires_at: i64,
        now: i64,
        grace_from: i64,
    ) -> StoreResult<Rotation> {
        run(async {
            // READ COMMITTED is enough: a concurrent rotation of the same row makes this UPDATE
            // wait for it, then re-check `current_jti` against the committed row. Of two
            // concurrent refreshes with the same token, one rotates and the other sees a reuse,
            // exactly as SQLite's serialized writers do.
            let mut tx = self.pool.begin().await?;
            let rotated = sqlx::query(
                "UPDATE refresh_families SET current_jti = $1, expires_at = $2, previous_jti = $4, rotated_at = $5 \
                 WHERE id = $3 AND current_jti = $4 AND NOT revoked AND expires_at > $5",
            )
            .bind(next)
            .bind(expires_at)
            .bind(family)
            .bind(presented)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            if rotated.rows_affected() == 1 {
                tx.commit().await?;
                return Ok(Rotation::Rotated);
            }
            // A concurrent rotation committed before this statement ran is seen here.
            let repeated: Option<i64> = sqlx::query_scalar(
                "SELECT rotated_at FROM refresh_families \
                 WHERE id = $1 AND previous_jti = $2 AND NOT revoked AND expires_at > $3 AND rotated_at >= $4",
            )
            .bind(family)
            .bind(presented)
            .bind(now)
            .bind(grace_from)
            .fetch_optional(&mut *tx)
            .await?;
            if let Some(rotated_at) = repeated {
                tx.commit().await?;
                return Ok(Rotation::Repeated { rotated_at });
            }
            let live = sqlx::query_as::<_, (String, i64)>(
                "UPDATE refresh_families SET revoked = TRUE \
                 WHERE id = $1 AND NOT revoked AND expires_at > $2 \
                 RETURNING username, expires_at",
            )
            .bind(family)
            .bind(now)
            .fetch_optional(&mut *tx)
            .await?;
            let Some((username, expires_at)) = live else {
                return Ok(Rotation::Dead);
            };
            lock_revocation_log(&mut tx).await?;
            log_revocation(&mut tx, &Revocation::family(family, username, expires_at), now).await?;
            tx.commit().await?;
            Ok(Rotation::Reused)
        })
        .await
    }

    async fn revoke_user(&self, username: &str, now: i64) -> StoreResult<Vec<Revocation>> {
        run(async {
            let mut tx = self.pool.begin().await?;
            let families = sqlx::query_as::<_, (String, i64)>(
                "UPDATE refresh_families SET revoked = TRUE \
                 WHERE username = $1 AND NOT revoked AND expires_at > $2 \
                 RETURNING id, expires_at",
            )
            .bind(username)
            .bind(now)
            .fetch_all(&mut *tx)
            .await?;
            if families.is_empty() {
                // Nothing to log: no need to queue behind other log writers.
                tx.commit().await?;
                return Ok(Vec::new());
            }
            lock_revocation_log(&mut tx).await?;
            let mut revoked = Vec::with_capacity(families.len());
            for (family, expires_at) in families {
                let revocation = Revocation::family(family, username, expires_at);
                log_revocation(&mut tx, &revocation, now).await?;
                revoked.push(revocation);
            }
            tx.commit().await?;
            Ok(revoked)
        })
        .await
    }

    async fn revoke(&self, revocation: &Revocation, now: i64) -> StoreResult<i64> {
        run(async {
            let mut tx = self.pool.begin().await?;
            if revocation.kind == RevocationKind::Family {
                sqlx::query("UPDATE refresh_families SET revoked = TRUE WHERE id = $1")
                    .bind(&revocation.subject)
                    .execute(&mut *tx)
                    .await?;
            }
            lock_revocation_log(&mut tx).await?;
            let id = log_revocation(&mut tx, revocation, now).await?;
            tx.commit().await?;
            Ok(id)
        })
        .await
    }

    async fn revocations_since(&self, after_id: i64, limit: i64) -> StoreResult<Vec<(i64, Revocation)>> {
        run(async {
            let rows = sqlx::query_as::<_, RevocationRow>(
                "SELECT * FROM revocations WHERE id > $1 ORDER BY id LIMIT $2",
            )
            .bind(after_id)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
            Ok(rows.into_iter().filter_map(RevocationRow::into_entry).collect())
        })
        .await
    }

    async fn live_revocations(&self, now: i64) -> StoreResult<(i64, Vec<Revocation>)> {
        run(async {
            // Two statements, as in SQLite: everything up to `newest` is visible by then (log
            // writers commit in id order), and the follower resumes after `newest`.
            let newest: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(id), 0) FROM revocations")
                .fetch_one(&self.pool)
                .await?;
            let rows = sqlx::query_as::<_, RevocationRow>(
                "SELECT * FROM revocations WHERE id <= $1 AND expires_at > $2 AND kind <> 'disconnect'",
            )
            .bind(newest)
            .bind(now)
            .fetch_all(&self.pool)
            .await?;
            let live = rows.into_iter().filter_map(RevocationRow::into_entry).map(|(_, r)| r).collect();
            Ok((newest, live))
        })
        .await
    }

    async fn prune(&self, now: i64) -> StoreResult<Pruned> {
        run(async {
            let logins = sqlx::query("DELETE FROM refresh_families WHERE expires_at <= $1")
                .bind(now)
                .execute(&self.pool)
                .await?
                .rows_affected();
            // Deleting log rows needs no log lock: ids of new rows still come in commit order.
            let revocations = sqlx::query("DELETE FROM revocations WHERE expires_at <= $1")
                .bind(now)
                .execute(&self.pool)
                .await?
                .rows_affected();
            let publications = publications::prune(&self.pool, now.saturating_mul(1000)).await?;
            Ok(Pruned { logins, revocations, publications })
        })
        .await
    }

    async fn publish(
        &self,
        channel: &str,
        sender: Option<&str>,
        data: &str,
        created_ms: i64,
        retention: Retention,
    ) -> StoreResult<(Publication, Position)> {
        self.publications.publish(Request::new(channel, sender, data, created_ms, retention)).await
    }

    async fn publications(
        &self,
        channel: &str,
        range: Range,
        limit: i64,
        now_ms: i64,
    ) -> StoreResult<(Vec<Publication>, Option<Position>)> {
        run(publications::publications(&self.pool, channel, range, limit, now_ms)).await
    }
}
