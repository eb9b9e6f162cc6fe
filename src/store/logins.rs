//! Logins as stored: each is a refresh-token family whose one current token is valid, rotated on
//! every refresh, revoked as a whole when an old one comes back.

use super::{Revocation, StoreResult};
use async_trait::async_trait;

/// What a refresh-token rotation found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rotation {
    /// The presented token was the family's current one; the new one replaces it.
    Rotated,
    /// The presented token is the one the current one replaced at `rotated_at`, within the grace
    /// window: a second tab refreshing at the same time. Nothing changed; the caller hands out
    /// the same new pair again.
    Repeated { rotated_at: i64 },
    /// The presented token was an old one of a live family: replay. The family is now revoked.
    Reused,
    /// The family is unknown, expired or already revoked.
    Dead,
}

/// A refresh of the login `family`: its token `presented` to be replaced by `next`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RefreshRotation<'a> {
    pub family: &'a str,
    pub presented: &'a str,
    pub next: &'a str,
    /// When `next` expires (Unix seconds).
    pub expires_at: i64,
    pub now: i64,
    /// The token the current one replaced at or after this is a second tab's refresh, not a replay;
    /// `i64::MAX`: no grace.
    pub grace_from: i64,
}

#[async_trait]
pub trait LoginStore: Send + Sync {
    async fn create_family(
        &self,
        family: &str,
        username: &str,
        jti: &str,
        expires_at: i64,
    ) -> StoreResult<()>;
    /// The current refresh token (`jti`) of the live login `family` of `username`: the only one of
    /// the login's refresh tokens that is still valid. `None` for a revoked, expired, unknown or
    /// another user's login.
    async fn current_refresh(&self, family: &str, username: &str, now: i64) -> StoreResult<Option<String>>;
    /// Atomically replaces the family's current token `presented` by `next`, which lives until
    /// `expires_at`, and remembers `presented` and `now`. The token the current one replaced at or
    /// after `grace_from` reports [`Rotation::Repeated`] and changes nothing (pass `i64::MAX` for
    /// no grace). Any other token that is not the current one revokes the family (and logs that
    /// revocation) and reports [`Rotation::Reused`].
    async fn rotate_family(&self, rotation: RefreshRotation<'_>) -> StoreResult<Rotation>;
    /// When the live login `family` of `username` last rotated, if the token it replaced then was
    /// `presented`: for a check of a just-replaced token within the grace window.
    async fn replaced_at(
        &self,
        family: &str,
        username: &str,
        presented: &str,
        now: i64,
    ) -> StoreResult<Option<i64>>;
    /// Revokes every live family of the user (disabled, or a new password), logs each one and
    /// returns them.
    async fn revoke_user(&self, username: &str, now: i64) -> StoreResult<Vec<Revocation>>;
}
