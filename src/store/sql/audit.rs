//! [`AuditStore`] in SQL.

use super::for_every_backend;
use crate::store::{AuditEntry, AuditStore, StoreResult};

for_every_backend! {
    impl AuditStore {
        async fn append_audit(&self, entry: &AuditEntry) -> StoreResult<i64> {
            let id: i64 = sqlx::query_scalar(
                "INSERT INTO audit_log (at_ms, actor, via, action, target, address, detail) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
            )
            .bind(entry.at_ms)
            .bind(&entry.actor)
            .bind(&entry.via)
            .bind(&entry.action)
            .bind(&entry.target)
            .bind(&entry.address)
            .bind(&entry.detail)
            .fetch_one(&self.pool)
            .await?;
            Ok(id)
        }

        async fn audit_log(&self, before: i64, limit: i64) -> StoreResult<Vec<AuditEntry>> {
            let entries = sqlx::query_as("SELECT * FROM audit_log WHERE id < $1 ORDER BY id DESC LIMIT $2")
                .bind(before)
                .bind(limit)
                .fetch_all(&self.pool)
                .await?;
            Ok(entries)
        }
    }
}
