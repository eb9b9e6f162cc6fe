//! Server-API keys as stored: a name, the SHA-256 of the key (never the key), scopes and dates.

use super::StoreResult;
use async_trait::async_trait;

/// A server-API key as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKeyRecord {
    /// 1-64 of `[A-Za-z0-9_.-]`, unique.
    pub name: String,
    /// The key's SHA-256, lowercase hex. Never shown: listings leave it out.
    pub key_hash: String,
    /// Scope names (`publish`, `disconnect`, `read`).
    pub scopes: Vec<String>,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds, to the minute; `None` until first used.
    pub last_used_at: Option<i64>,
}

#[async_trait]
pub trait ApiKeyStore: Send + Sync {
    /// Fails with [`StoreError::Conflict`](super::StoreError::Conflict) when the name is taken.
    async fn create_api_key(&self, key: &ApiKeyRecord) -> StoreResult<()>;
    /// Every key, by name.
    async fn api_keys(&self) -> StoreResult<Vec<ApiKeyRecord>>;
    /// Returns false when no key has this name.
    async fn delete_api_key(&self, name: &str) -> StoreResult<bool>;
    /// Records that the key was used at `at` (unix seconds); an earlier time than the one stored
    /// changes nothing.
    async fn touch_api_key(&self, name: &str, at: i64) -> StoreResult<()>;
}
