//! [`ApiKeyStore`] on SQLite.

use super::SqliteStore;
use crate::store::api_keys::{scopes_column, ApiKeyRow};
use crate::store::{ApiKeyRecord, ApiKeyStore, StoreResult};
use async_trait::async_trait;

#[async_trait]
impl ApiKeyStore for SqliteStore {
    async fn create_api_key(&self, key: &ApiKeyRecord) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO api_keys (name, key_hash, scopes, created_at, last_used_at) VALUES (?, ?, ?, ?, ?)",
        )
        .bind(&key.name)
        .bind(&key.key_hash)
        .bind(scopes_column(key))
        .bind(key.created_at)
        .bind(key.last_used_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn api_keys(&self) -> StoreResult<Vec<ApiKeyRecord>> {
        let rows = sqlx::query_as::<_, ApiKeyRow>("SELECT * FROM api_keys ORDER BY name")
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.into_iter().map(ApiKeyRecord::from).collect())
    }

    async fn delete_api_key(&self, name: &str) -> StoreResult<bool> {
        let done = sqlx::query("DELETE FROM api_keys WHERE name = ?").bind(name).execute(&self.pool).await?;
        Ok(done.rows_affected() == 1)
    }

    async fn touch_api_key(&self, name: &str, at: i64) -> StoreResult<()> {
        sqlx::query(
            "UPDATE api_keys SET last_used_at = ? \
             WHERE name = ? AND (last_used_at IS NULL OR last_used_at < ?)",
        )
        .bind(at)
        .bind(name)
        .bind(at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}
