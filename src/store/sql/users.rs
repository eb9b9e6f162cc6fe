//! [`UserStore`] in SQL.

use super::for_every_backend;
use crate::store::{StoreResult, UserRecord, UserStore};

/// A `users` row. The flags are INTEGER 0/1 in SQLite and BOOLEAN in PostgreSQL, yet decode alike:
/// sqlx reads an SQLite integer into `bool` as `!= 0`. `created_at` is not read, so `SELECT *` fits.
#[derive(sqlx::FromRow)]
struct UserRow {
    username: String,
    email: Option<String>,
    full_name: Option<String>,
    password_hash: String,
    disabled: bool,
    admin: bool,
}

impl From<UserRow> for UserRecord {
    fn from(row: UserRow) -> Self {
        UserRecord {
            username: row.username,
            email: row.email,
            full_name: row.full_name,
            password_hash: row.password_hash,
            disabled: row.disabled,
            admin: row.admin,
        }
    }
}

/// A `users` row and whether the login family is revoked (or unknown): what `principal` reads.
#[derive(sqlx::FromRow)]
struct PrincipalRow {
    #[sqlx(flatten)]
    user: UserRow,
    family_revoked: bool,
}

for_every_backend! {
    impl UserStore {
        async fn user(&self, username: &str) -> StoreResult<Option<UserRecord>> {
            let row: Option<UserRow> = sqlx::query_as("SELECT * FROM users WHERE username = $1")
                .bind(username)
                .fetch_optional(&self.pool)
                .await?;
            Ok(row.map(UserRecord::from))
        }

        async fn principal(&self, username: &str, family: &str) -> StoreResult<Option<(UserRecord, bool)>> {
            let row: Option<PrincipalRow> = sqlx::query_as(
                "SELECT users.*, \
                 COALESCE((SELECT revoked FROM refresh_families WHERE id = $1 AND username = users.username), TRUE) \
                 AS family_revoked \
                 FROM users WHERE username = $2",
            )
            .bind(family)
            .bind(username)
            .fetch_optional(&self.pool)
            .await?;
            Ok(row.map(|row| (row.user.into(), row.family_revoked)))
        }

        async fn create_user(&self, user: &UserRecord) -> StoreResult<()> {
            sqlx::query(
                "INSERT INTO users (username, email, full_name, password_hash, disabled, admin, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(&user.username)
            .bind(&user.email)
            .bind(&user.full_name)
            .bind(&user.password_hash)
            .bind(user.disabled)
            .bind(user.admin)
            .bind(crate::clock::now_secs())
            .execute(&self.pool)
            .await?;
            Ok(())
        }

        async fn list_users(&self) -> StoreResult<Vec<UserRecord>> {
            self.all_by_name::<UserRow, UserRecord>("SELECT * FROM users", |user| &user.username).await
        }

        async fn set_disabled(&self, username: &str, disabled: bool) -> StoreResult<bool> {
            self.update_user("UPDATE users SET disabled = $1 WHERE username = $2", disabled, username).await
        }

        async fn set_admin(&self, username: &str, admin: bool) -> StoreResult<bool> {
            self.update_user("UPDATE users SET admin = $1 WHERE username = $2", admin, username).await
        }

        async fn set_password_hash(&self, username: &str, hash: &str) -> StoreResult<bool> {
            self.update_user("UPDATE users SET password_hash = $1 WHERE username = $2", hash, username).await
        }
    }
}

for_every_backend! {
    impl {
        /// Runs `statement`, an `UPDATE users SET … = $1 WHERE username = $2`; whether the user exists.
        async fn update_user<'q, V>(&self, statement: &'q str, value: V, username: &'q str) -> StoreResult<bool>
        where
            V: 'q + Send + sqlx::Encode<'q, DB> + sqlx::Type<DB>,
        {
            let done = sqlx::query(statement).bind(value).bind(username).execute(&self.pool).await?;
            Ok(DB::rows_affected(&done) == 1)
        }
    }
}
