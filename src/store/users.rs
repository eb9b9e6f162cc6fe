//! Users as stored, and what the store does with them.

use super::StoreResult;
use async_trait::async_trait;

/// A user as stored. `password_hash` never leaves the server: HTTP responses show a public view.
#[derive(Debug, Clone)]
pub struct UserRecord {
    pub username: String,
    pub email: Option<String>,
    pub full_name: Option<String>,
    pub password_hash: String,
    pub disabled: bool,
    /// May use the admin console and the admin API; read from the store on every such request.
    pub admin: bool,
}

#[async_trait]
pub trait UserStore: Send + Sync {
    async fn user(&self, username: &str) -> StoreResult<Option<UserRecord>>;
    /// The user and whether the login `family` is revoked (or unknown, or another user's), in one
    /// round trip: what every authenticated request needs, consistent at once with revocations
    /// made elsewhere.
    async fn principal(&self, username: &str, family: &str) -> StoreResult<Option<(UserRecord, bool)>>;
    /// Fails with [`StoreError::Conflict`](super::StoreError::Conflict) when the username is taken.
    async fn create_user(&self, user: &UserRecord) -> StoreResult<()>;
    /// Every user, by username (byte order).
    async fn list_users(&self) -> StoreResult<Vec<UserRecord>>;
    /// Returns false when there is no such user.
    async fn set_disabled(&self, username: &str, disabled: bool) -> StoreResult<bool>;
    /// Grants (`true`) or withdraws the admin role. Returns false when there is no such user.
    async fn set_admin(&self, username: &str, admin: bool) -> StoreResult<bool>;
    /// Returns false when there is no such user.
    async fn set_password_hash(&self, username: &str, hash: &str) -> StoreResult<bool>;
}
