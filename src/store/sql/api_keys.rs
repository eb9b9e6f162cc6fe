//! [`ApiKeyStore`] in SQL.

use super::for_every_backend;
use crate::store::{ApiKeyRecord, ApiKeyStore, StoreResult};

/// An `api_keys` row; scopes are one comma-separated column.
#[derive(sqlx::FromRow)]
struct ApiKeyRow {
    name: String,
    key_hash: String,
    scopes: String,
    created_at: i64,
    last_used_at: Option<i64>,
}

impl From<ApiKeyRow> for ApiKeyRecord {
    fn from(row: ApiKeyRow) -> Self {
        ApiKeyRecord {
            name: row.name,
            key_hash: row.key_hash,
            scopes: row.scopes.split(',').filter(|s| !s.is_empty()).map(str::to_owned).collect(),
            created_at: row.created_at,
            last_used_at: row.last_used_at,
        }
    }
}

for_every_backend! {
    impl ApiKeyStore {
        async fn create_api_key(&self, key: &ApiKeyRecord) -> StoreResult<()> {
            sqlx::query(
                "INSERT INTO api_keys (name, key_hash, scopes, created_at, last_used_at) \
                 VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(&key.name)
            .bind(&key.key_hash)
            .bind(key.scopes.join(","))
            .bind(key.created_at)
            .bind(key.last_used_at)
            .execute(&self.pool)
            .await?;
            Ok(())
        }

        async fn api_keys(&self) -> StoreResult<Vec<ApiKeyRecord>> {
            self.all_by_name::<ApiKeyRow, ApiKeyRecord>("SELECT * FROM api_keys", |key| &key.name).await
        }

        async fn delete_api_key(&self, name: &str) -> StoreResult<bool> {
            let done = sqlx::query("DELETE FROM api_keys WHERE name = $1").bind(name).execute(&self.pool).await?;
            Ok(DB::rows_affected(&done) == 1)
        }

        async fn touch_api_key(&self, name: &str, at: i64) -> StoreResult<()> {
            sqlx::query(
                "UPDATE api_keys SET last_used_at = $1 \
                 WHERE name = $2 AND (last_used_at IS NULL OR last_used_at < $1)",
            )
            .bind(at)
            .bind(name)
            .execute(&self.pool)
            .await?;
            Ok(())
        }
    }
}
