//! Authentication: passwords, tokens and keys, where a token comes from, the four check modes and
//! revocation. [`Authenticator::authenticate`] is the one path from a presented token to an
//! identity, used by every HTTP extractor and every WebSocket endpoint.

pub mod keyring;
pub mod keys;
pub mod password;
pub mod revocation;
pub mod throttle;
pub mod tokens;
pub mod transport;

use crate::store::{DynStore, StoreError, UserRecord};
use revocation::Revocations;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use subtle::ConstantTimeEq;
use tokens::{Claims, TokenError, TokenKind, Tokens};
use transport::{Presented, Transport};

/// The check modes of fastapi-jwt-auth, selectable per endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// A valid access token.
    Required,
    /// Anonymous allowed; an identity when a valid access token is presented. A presented but
    /// invalid token is still refused.
    Optional,
    /// A valid refresh token.
    Refresh,
    /// A fresh access token (straight from a password login).
    Fresh,
}

impl AuthError {
    /// A short stable name, for metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            AuthError::Missing => "missing",
            AuthError::NotBearer => "not_bearer",
            AuthError::Token(TokenError::Malformed) => "malformed",
            AuthError::Token(TokenError::BadSignature) => "bad_signature",
            AuthError::Token(TokenError::Expired) => "expired",
            AuthError::Token(TokenError::Immature) => "not_yet_valid",
            AuthError::Token(TokenError::WrongAudience) => "wrong_issuer_or_audience",
            AuthError::Token(TokenError::WrongKind) => "wrong_type",
            AuthError::Token(TokenError::NotFresh) => "not_fresh",
            AuthError::Token(TokenError::Revoked) => "revoked",
            AuthError::Csrf => "csrf",
            AuthError::UnknownUser => "unknown_user",
            AuthError::Inactive => "inactive",
            AuthError::Store(_) => "store_unavailable",
        }
    }
}

/// Refused authentications by reason, for `/metrics`.
#[derive(Default)]
pub struct Rejections(Mutex<std::collections::BTreeMap<&'static str, u64>>);

impl Rejections {
    fn count(&self, reason: &'static str) {
        *self.0.lock().expect("rejections lock").entry(reason).or_default() += 1;
    }

    pub fn snapshot(&self) -> Vec<(&'static str, u64)> {
        self.0.lock().expect("rejections lock").iter().map(|(k, v)| (*k, *v)).collect()
    }
}

impl Mode {
    pub fn token_kind(self) -> TokenKind {
        match self {
            Mode::Refresh => TokenKind::Refresh,
            _ => TokenKind::Access,
        }
    }
}

/// Who is on the other end, and the token that proves it.
#[derive(Debug, Clone)]
pub struct Identity {
    /// Shared with the principal cache: authenticating copies no strings.
    pub user: Arc<UserRecord>,
    pub claims: Claims,
    pub transport: Transport,
}

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("Not authenticated")]
    Missing,
    #[error("Invalid authentication credentials")]
    NotBearer,
    #[error("{0}")]
    Token(#[from] TokenError),
    #[error("CSRF token missing or incorrect")]
    Csrf,
    #[error("Could not validate credentials")]
    UnknownUser,
    #[error("Inactive user")]
    Inactive,
    /// The cause is logged where it is handled; clients see only this text.
    #[error("Service unavailable")]
    Store(#[from] StoreError),
}

pub struct Authenticator {
    pub tokens: Tokens,
    pub revocations: Revocations,
    store: DynStore,
    principals: PrincipalCache,
    pub rejections: Rejections,
}

/// How long a looked-up user and login state is reused. Changes made on this node invalidate it
/// at once; changes made elsewhere arrive through the revocation log (every 250 ms), which
/// invalidates it too, so this bounds only what emits no revocation (re-enabling a user).
const PRINCIPAL_TTL: Duration = Duration::from_secs(1);
/// Entries kept at most; past it the cache starts over.
const PRINCIPAL_CAPACITY: usize = 100_000;

/// A user and whether one of their logins is revoked, as read from the store at an instant.
type Principal = (Instant, Arc<UserRecord>, bool);

/// (username, login) → [`Principal`].
#[derive(Default)]
struct PrincipalCache {
    entries: Mutex<HashMap<(String, String), Principal>>,
}

impl Authenticator {
    pub fn new(tokens: Tokens, store: DynStore) -> Authenticator {
        Authenticator {
            tokens,
            revocations: Revocations::default(),
            store,
            principals: PrincipalCache::default(),
            rejections: Rejections::default(),
        }
    }

    /// The user `username` and whether login `family` is revoked: cached for [`PRINCIPAL_TTL`].
    async fn principal(
        &self,
        username: &str,
        family: &str,
    ) -> Result<Option<(Arc<UserRecord>, bool)>, StoreError> {
        let key = (username.to_owned(), family.to_owned());
        if let Some((at, user, revoked)) =
            self.principals.entries.lock().expect("principal cache lock").get(&key)
        {
            if at.elapsed() < PRINCIPAL_TTL {
                return Ok(Some((user.clone(), *revoked)));
            }
        }
        let found =
            self.store.principal(username, family).await?.map(|(user, revoked)| (Arc::new(user), revoked));
        if let Some((user, revoked)) = &found {
            let mut entries = self.principals.entries.lock().expect("principal cache lock");
            if entries.len() >= PRINCIPAL_CAPACITY {
                entries.clear();
            }
            entries.insert(key, (Instant::now(), user.clone(), *revoked));
        }
        Ok(found)
    }

    /// Drops what is cached of `username`: a revocation or a change of the user happened.
    pub fn forget(&self, username: &str) {
        self.principals.entries.lock().expect("principal cache lock").retain(|(user, _), _| user != username);
    }

    /// Turns what a client presented into an identity under `mode`: signature, claims, kind,
    /// freshness, CSRF (for cookies), revocation, and a user who exists and is active.
    pub async fn authenticate(
        &self,
        presented: Option<&Presented>,
        mode: Mode,
    ) -> Result<Option<Identity>, AuthError> {
        let result = self.check(presented, mode).await;
        if let Err(err) = &result {
            self.rejections.count(err.reason());
        }
        result
    }

    async fn check(&self, presented: Option<&Presented>, mode: Mode) -> Result<Option<Identity>, AuthError> {
        let Some(presented) = presented else {
            return match mode {
                Mode::Optional => Ok(None),
                _ => Err(AuthError::Missing),
            };
        };
        let claims = self.tokens.verify(&presented.token, mode.token_kind())?;
        if let Some(submitted) = &presented.csrf {
            let matches =
                submitted.as_deref().is_some_and(|s| bool::from(s.as_bytes().ct_eq(claims.csrf.as_bytes())));
            if !matches {
                return Err(AuthError::Csrf);
            }
        }
        if mode == Mode::Fresh && !claims.fresh {
            return Err(TokenError::NotFresh.into());
        }
        let (user, family_revoked) =
            self.principal(&claims.sub, &claims.fam).await?.ok_or(AuthError::UnknownUser)?;
        // Before the revocation check: disabling a user also revokes their logins, and the
        // answer should say why.
        if user.disabled {
            return Err(AuthError::Inactive);
        }
        if family_revoked || self.revocations.is_revoked(&claims.jti, &claims.fam) {
            return Err(TokenError::Revoked.into());
        }
        Ok(Some(Identity { user, claims, transport: presented.transport }))
    }
}
