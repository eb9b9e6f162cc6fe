//! [`LoginStore`] in SQL: a login is a `refresh_families` row holding its one valid refresh token.
//!
//! Rotation needs no isolation beyond each database's default. Two refreshes with the same token
//! race on one row: in PostgreSQL (READ COMMITTED) the second `UPDATE … WHERE current_jti = $4`
//! waits for the first to commit, then finds the row changed and updates nothing; in SQLite the
//! first write takes the database's write lock, and the second transaction's write waits for its
//! commit. Either way one rotates and the other goes on to the grace check, which sees the
//! committed rotation: a second tab within the grace gets the same pair, a replay after it ends
//! the login.

use super::for_every_backend;
use crate::store::{LoginStore, RefreshRotation, Revocation, Rotation, StoreResult};

for_every_backend! {
    impl LoginStore {
        async fn create_family(&self, family: &str, username: &str, jti: &str, expires_at: i64) -> StoreResult<()> {
            sqlx::query(
                "INSERT INTO refresh_families (id, username, current_jti, expires_at) VALUES ($1, $2, $3, $4)",
            )
            .bind(family)
            .bind(username)
            .bind(jti)
            .bind(expires_at)
            .execute(&self.pool)
            .await?;
            Ok(())
        }

        async fn current_refresh(&self, family: &str, username: &str, now: i64) -> StoreResult<Option<String>> {
            Ok(self.live_family(family, username, now).await?.map(|live| live.current_jti))
        }

        async fn replaced_at(
            &self,
            family: &str,
            username: &str,
            presented: &str,
            now: i64,
        ) -> StoreResult<Option<i64>> {
            let live = self.live_family(family, username, now).await?;
            Ok(live.filter(|live| live.previous_jti.as_deref() == Some(presented)).and_then(|live| live.rotated_at))
        }

        async fn rotate_family(&self, rotation: RefreshRotation<'_>) -> StoreResult<Rotation> {
            let RefreshRotation { family, presented, next, expires_at, now, grace_from } = rotation;
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
            if DB::rows_affected(&rotated) == 1 {
                tx.commit().await?;
                return Ok(Rotation::Rotated);
            }
            // A concurrent rotation committed before the UPDATE ran is seen here (module docs).
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
            if Self::revoke_families(&mut tx, Families::Login(family), now).await?.is_empty() {
                return Ok(Rotation::Dead);
            }
            tx.commit().await?;
            Ok(Rotation::Reused)
        }

        async fn revoke_user(&self, username: &str, now: i64) -> StoreResult<Vec<Revocation>> {
            let mut tx = self.pool.begin().await?;
            let revoked = Self::revoke_families(&mut tx, Families::OfUser(username), now).await?;
            tx.commit().await?;
            Ok(revoked)
        }
    }
}

/// A live login's refresh tokens: the current one, and the one it replaced at `rotated_at`.
#[derive(sqlx::FromRow)]
struct LiveFamily {
    current_jti: String,
    previous_jti: Option<String>,
    rotated_at: Option<i64>,
}

/// The live logins a revocation ends: one, by its id, or every one of a user.
enum Families<'a> {
    Login(&'a str),
    OfUser(&'a str),
}

for_every_backend! {
    impl {
        /// The live login `family` of `username`, if it is one.
        async fn live_family(&self, family: &str, username: &str, now: i64) -> StoreResult<Option<LiveFamily>> {
            let live = sqlx::query_as(
                "SELECT current_jti, previous_jti, rotated_at FROM refresh_families \
                 WHERE id = $1 AND username = $2 AND NOT revoked AND expires_at > $3",
            )
            .bind(family)
            .bind(username)
            .bind(now)
            .fetch_optional(&self.pool)
            .await?;
            Ok(live)
        }

        /// Revokes the live `families`, logs each revocation and returns them, inside the caller's
        /// transaction.
        async fn revoke_families(
            connection: &mut DB::Connection,
            families: Families<'_>,
            now: i64,
        ) -> StoreResult<Vec<Revocation>> {
            let (statement, key) = match families {
                Families::Login(id) => (
                    "UPDATE refresh_families SET revoked = TRUE \
                     WHERE id = $1 AND NOT revoked AND expires_at > $2 RETURNING id, username, expires_at",
                    id,
                ),
                Families::OfUser(username) => (
                    "UPDATE refresh_families SET revoked = TRUE \
                     WHERE username = $1 AND NOT revoked AND expires_at > $2 RETURNING id, username, expires_at",
                    username,
                ),
            };
            let rows: Vec<(String, String, i64)> =
                sqlx::query_as(statement).bind(key).bind(now).fetch_all(&mut *connection).await?;
            let revoked: Vec<Revocation> = rows
                .into_iter()
                .map(|(family, username, expires_at)| Revocation::family(family, username, expires_at))
                .collect();
            Self::append_revocations(connection, &revoked, now).await?;
            Ok(revoked)
        }
    }
}
