//! [`ApiKeyStore`] on PostgreSQL: the statements of `sqlite/api_keys.rs` in its dialect.

use super::errors::run;
use super::PostgresStore;
use crate::store::api_keys::{scopes_column, ApiKeyRow};
use crate::store::{ApiKeyRecord, ApiKeyStore, StoreResult};
use async_trait::async_trait;

#[async_trait]
impl ApiKeyStore for PostgresStore {
    async fn create_api_key(&self, key: &ApiKeyRecord) -> StoreResult<()> {
        run(async {
            sqlx::query(
                "INSERT INTO api_keys (name, key_hash, scopes, created_at, last_used_at) \
                 VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(&key.name)
            .bind(&key.key_hash)
            .bind(scopes_column(key))
            .bind(key.created_at)
            .bind(key.last_used_at)
            .execute(&self.pool)
            .await?;
            Ok(())
        })
        .await
    }

    async fn api_keys(&self) -> StoreResult<Vec<ApiKeyRecord>> {
        run(async {
            // COLLATE "C": byte order, as SQLite's default BINARY collation sorts.
            let rows = sqlx::query_as::<_, ApiKeyRow>("SELECT * FROM api_keys ORDER BY name COLLATE \"C\"")
                .fetch_all(&self.pool)
                .await?;
            Ok(rows.into_iter().map(ApiKeyRecord::from).collect())
        })
        .await
    }

    async fn delete_api_key(&self, name: &str) -> StoreResult<bool> {
        run(async {
            let done =
                sqlx::query("DELETE FROM api_keys WHERE name = $1").bind(name).execute(&self.pool).await?;
            Ok(done.rows_affected() == 1)
        })
        .await
    }

    async fn touch_api_key(&self, name: &str, at: i64) -> StoreResult<()> {
        run(async {
            sqlx::query(
                "UPDATE api_keys SET last_used_at = $1 \
                 WHERE name = $2 AND (last_used_at IS NULL OR last_used_at < $1)",
            )
            .bind(at)
            .bind(name)
            .execute(&self.pool)
            .await?;
            Ok(())
        })
        .await
    }
}
