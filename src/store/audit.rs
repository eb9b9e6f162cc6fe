//! The audit log as stored: one row per admin action, appended before the action runs and never
//! changed or deleted.

use super::StoreResult;
use async_trait::async_trait;

/// One admin action: who took it, through what, on what, when and from where. Also an
/// `audit_log` row.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct AuditEntry {
    /// Assigned by the store, increasing; 0 in an entry not yet stored.
    pub id: i64,
    /// Unix milliseconds.
    pub at_ms: i64,
    /// A username (the console), `key:<name>` (an API key) or `cli`.
    pub actor: String,
    /// `console`, `api` or `cli`.
    pub via: String,
    /// What was done: `publish`, `disconnect`, `revoke`, `apikey.add`, `apikey.revoke`,
    /// `admin.grant`, `admin.withdraw`.
    pub action: String,
    /// What it was done to: a channel, a username, a key's name.
    pub target: String,
    /// The client's address (`local` from the CLI).
    pub address: String,
    /// A short note on what was done (a key's scopes, a publication's size); never a secret.
    pub detail: String,
}

#[async_trait]
pub trait AuditStore: Send + Sync {
    /// Appends `entry` (its `id` ignored) and returns the id it got.
    async fn append_audit(&self, entry: &AuditEntry) -> StoreResult<i64>;
    /// At most `limit` entries with an id below `before`, newest first.
    async fn audit_log(&self, before: i64, limit: i64) -> StoreResult<Vec<AuditEntry>>;
}
