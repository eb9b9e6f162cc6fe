//! Authentication: passwords, tokens and keys, trusted issuers, where a token comes from, the four
//! check modes, logins and revocation. [`Authenticator::authenticate`] is the one path from a
//! presented token to an identity, used by every HTTP extractor and every WebSocket endpoint;
//! [`Authenticator::apply`] the one way a revocation takes effect on this node.

pub(crate) mod admin;
pub(crate) mod api_keys;
pub(crate) mod bindings;
pub(crate) mod credentials;
pub(crate) mod issuers;
pub(crate) mod keyring;
pub(crate) mod logins;
pub(crate) mod password;
pub(crate) mod revocation;
pub mod secret;
pub(crate) mod subscription;
pub(crate) mod throttle;
pub mod tokens;
pub mod transport;

use crate::store::{DynStore, Revocation, StoreError, UserRecord};
use bindings::SocketBindings;
use credentials::check_username;
use issuers::{TrustedIssuer, TrustedIssuers};
use revocation::Revocations;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use subtle::ConstantTimeEq;
use tokens::{Claims, TokenError, TokenKind, Tokens};
use transport::{Csrf, Presented, Transport};

/// The double-submit check of a token from a cookie: the sent value must equal the `csrf` claim.
fn check_csrf(csrf: &Csrf, claims: &Claims) -> Result<(), AuthError> {
    match csrf {
        Csrf::NotNeeded => Ok(()),
        Csrf::Sent(sent) if bool::from(sent.as_bytes().ct_eq(claims.csrf.as_bytes())) => Ok(()),
        Csrf::Sent(_) | Csrf::Missing => Err(AuthError::Csrf),
    }
}

/// The check modes of fastapi-jwt-auth, selectable per endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
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
    pub(crate) fn reason(&self) -> &'static str {
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
            AuthError::NeedsLogin => "needs_login",
            AuthError::UnknownUser => "unknown_user",
            AuthError::Inactive => "inactive",
            AuthError::Store(_) => "store_unavailable",
            AuthError::KeysUnavailable { .. } => "keys_unavailable",
        }
    }
}

/// Refused authentications by reason, for `/metrics`.
#[derive(Default)]
pub(crate) struct Rejections(Mutex<std::collections::BTreeMap<&'static str, u64>>);

impl Rejections {
    fn count(&self, reason: &'static str) {
        *self.0.lock().expect("rejections lock").entry(reason).or_default() += 1;
    }

    pub(crate) fn snapshot(&self) -> Vec<(&'static str, u64)> {
        self.0.lock().expect("rejections lock").iter().map(|(k, v)| (*k, *v)).collect()
    }
}

impl Mode {
    pub(crate) fn token_kind(self) -> TokenKind {
        match self {
            Mode::Refresh => TokenKind::Refresh,
            _ => TokenKind::Access,
        }
    }
}

/// Who is on the other end, and the token that proves it.
#[derive(Debug, Clone)]
pub(crate) struct Identity {
    /// Shared with the principal cache: authenticating copies no strings. For a trusted issuer's
    /// token, made up from the token: the username only, never disabled.
    pub(crate) user: Arc<UserRecord>,
    /// A trusted issuer's token is read as an access token of no login (`fam` empty).
    pub(crate) claims: Claims,
    pub(crate) transport: Transport,
    pub(crate) issuer: Issuer,
}

/// The user of an identity wsguard keeps no row for (a trusted issuer's token, the connect
/// proxy's answer): the name only, never disabled.
fn user_without_row(username: &str) -> Arc<UserRecord> {
    Arc::new(UserRecord {
        username: username.to_owned(),
        email: None,
        full_name: None,
        password_hash: String::new(),
        disabled: false,
        admin: false,
    })
}

/// Who issued the token an identity rests on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Issuer {
    /// wsguard, at a login: the user has a row, the token a login (refresh family).
    Own,
    /// A trusted issuer, by its `iss` (empty for the one whose tokens have none).
    Trusted(Arc<str>),
    /// The application's connect proxy: no token, the application named the user.
    Proxy,
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
    /// A trusted issuer's token where a wsguard login is needed (refresh, logout, password).
    #[error("a wsguard login is required")]
    NeedsLogin,
    #[error("Could not validate credentials")]
    UnknownUser,
    #[error("Inactive user")]
    Inactive,
    /// The cause is logged where it is handled; clients see only this text.
    #[error("Service unavailable")]
    Store(#[from] StoreError),
    /// A trusted issuer's keys cannot tell yet whether the token's key exists (its JWKS endpoint
    /// is down, or a fetch for a new `kid` must wait): neither admitted nor refused for good.
    #[error("keys of issuer {issuer} unavailable, try again shortly")]
    KeysUnavailable { issuer: String, retry_after_secs: u64 },
}

impl AuthError {
    /// Whether the refusal says nothing of the credential: the client may present it again
    /// shortly (HTTP 503, close 1013).
    pub(crate) fn is_temporary(&self) -> bool {
        matches!(self, AuthError::Store(_) | AuthError::KeysUnavailable { .. })
    }
}

pub(crate) struct Authenticator {
    pub(crate) tokens: Tokens,
    pub(crate) issuers: TrustedIssuers,
    pub(crate) revocations: Revocations,
    /// The live sockets of this node, bound to their tokens: where revocations close sockets.
    pub(crate) bindings: Arc<SocketBindings>,
    store: DynStore,
    principals: PrincipalCache,
    pub(crate) rejections: Rejections,
    /// How long the refresh token a rotation replaced still gets the same new pair.
    refresh_grace: Duration,
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
    pub(crate) fn new(
        tokens: Tokens,
        issuers: TrustedIssuers,
        store: DynStore,
        refresh_grace: Duration,
    ) -> Authenticator {
        Authenticator {
            refresh_grace,
            tokens,
            issuers,
            revocations: Revocations::default(),
            bindings: Arc::default(),
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
    fn forget(&self, username: &str) {
        self.principals.entries.lock().expect("principal cache lock").retain(|(user, _), _| user != username);
    }

    async fn just_replaced(&self, claims: &Claims, now: i64) -> Result<bool, AuthError> {
        let replaced = self.store.replaced_at(&claims.fam, &claims.sub, &claims.jti, now).await?;
        Ok(replaced.is_some_and(|at| at >= self.grace_from(now)))
    }

    /// Makes a revocation take effect on this node: the token stops verifying and the sockets
    /// bound to it close (4003). Storing it for the other nodes is the caller's (see `logins`).
    pub(crate) fn apply(&self, revocation: &Revocation) {
        self.revocations.apply(revocation);
        self.forget(&revocation.username);
        let closed = self.bindings.revoke(revocation);
        if closed > 0 {
            tracing::info!(username = %revocation.username, closed, "revocation closed sockets");
        }
    }

    /// Turns what a client presented into an identity under `mode`: signature, claims, kind,
    /// freshness, CSRF (for cookies), revocation, and a user who exists and is active.
    pub(crate) async fn authenticate(
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
        if let Some(issuer) = self.issuers.select(&presented.token, self.tokens.issuer()) {
            return self.check_trusted(issuer, presented, mode).await.map(Some);
        }
        let claims = self.tokens.verify(&presented.token, mode.token_kind())?;
        check_csrf(&presented.csrf, &claims)?;
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
        if family_revoked || self.revocations.is_revoked(&claims) {
            return Err(TokenError::Revoked.into());
        }
        if claims.kind == TokenKind::Refresh {
            self.check_current_refresh(&claims).await?;
        }
        Ok(Some(Identity { user, claims, transport: presented.transport, issuer: Issuer::Own }))
    }

    /// A trusted issuer's token: verified with that issuer's keys, checked against the revocations,
    /// and never looked up in the store (its user needs no row).
    async fn check_trusted(
        &self,
        issuer: &TrustedIssuer,
        presented: &Presented,
        mode: Mode,
    ) -> Result<Identity, AuthError> {
        let claims = issuer.verify(&presented.token).await?;
        if matches!(mode, Mode::Refresh | Mode::Fresh) {
            return Err(AuthError::NeedsLogin);
        }
        // From a cookie, a token must carry the double-submit value itself: without a `csrf`
        // claim there is nothing to match the sent value with.
        if presented.transport == Transport::Cookie && claims.csrf.is_empty() {
            return Err(AuthError::Csrf);
        }
        check_csrf(&presented.csrf, &claims)?;
        if self.revocations.is_revoked(&claims) {
            return Err(TokenError::Revoked.into());
        }
        let user = user_without_row(&claims.sub);
        let issuer = Issuer::Trusted(issuer.name.clone());
        Ok(Identity { user, claims, transport: presented.transport, issuer })
    }

    /// A connection the application's connect proxy admitted as `user` until `expire_at` (Unix
    /// seconds; 0 for no end): an access identity of no login, issued now, with `client` (the
    /// connection's id) as its `jti`. Revocations and the per-user cap reach it as they reach a
    /// token of the user. A name wsguard cannot take as a username is refused as malformed.
    pub(crate) fn proxied(&self, user: &str, expire_at: i64, client: &str) -> Result<Identity, AuthError> {
        check_username(user).map_err(|_| TokenError::Malformed)?;
        let now = crate::clock::now_secs();
        let exp = if expire_at == 0 { crate::clock::NEVER } else { expire_at };
        let claims = Claims::of_no_login(user, now, exp, client.to_owned());
        if self.revocations.is_revoked(&claims) {
            return Err(TokenError::Revoked.into());
        }
        let user = user_without_row(&claims.sub);
        Ok(Identity { user, claims, transport: Transport::Frame, issuer: Issuer::Proxy })
    }

    /// The earliest rotation whose replaced token, presented at `now`, is still within the grace.
    pub(crate) fn grace_from(&self, now: i64) -> i64 {
        if self.refresh_grace.is_zero() {
            return i64::MAX;
        }
        now - self.refresh_grace.as_secs() as i64
    }

    /// A refresh token is valid only while it is its login's current one, or the one it just
    /// replaced within the grace window. An older one of a live login was stolen or replayed: the
    /// login ends, wherever the token was presented.
    async fn check_current_refresh(&self, claims: &Claims) -> Result<(), AuthError> {
        let now = crate::clock::now_secs();
        let current = self.store.current_refresh(&claims.fam, &claims.sub, now).await?;
        match current {
            Some(current) if current == claims.jti => Ok(()),
            Some(_) if self.just_replaced(claims, now).await? => Ok(()),
            Some(_) => {
                logins::Logins::new(self.store.as_ref(), self).end_reused(claims).await?;
                Err(TokenError::Revoked.into())
            }
            None => Err(TokenError::Revoked.into()),
        }
    }
}
