//! How a login starts and ends, said once. A login is a refresh family: a password starts it with
//! a fresh access token and its first refresh token; each refresh rotates the refresh token; it
//! ends at logout, when an old refresh token is presented again (reuse: stolen, or replayed), or
//! with every other login of the user (disabled, new password).
//!
//! Ending is always two steps in this order: store the revocation in the log that every node
//! follows (within 250 ms), then apply it on this node at once, so that its sockets close now.
//! The CLI runs on no node: it stores, and the running nodes apply.
//!
//! A user as a whole (whoever issued their tokens, wsguard or a trusted issuer) can be revoked
//! ([`revoke_user`]: every token issued until now refused, sockets closed, logins ended) or
//! disconnected ([`disconnect_user`]: sockets closed, tokens left valid).

use super::tokens::{random_id, Claims, Issued, Proof, TokenError, LEEWAY_SECS};
use super::{AuthError, Authenticator, Identity};
use crate::clock::now_secs as now;
use crate::store::{RefreshRotation, Revocation, Rotation, Store, StoreResult};
use std::time::Duration;

/// The tokens a login hands out at a time.
pub(crate) struct TokenPair {
    pub(crate) access: Issued,
    pub(crate) refresh: Issued,
}

/// Logins on a running node: tokens are issued here, and revocations take effect here at once.
pub(crate) struct Logins<'a> {
    store: &'a dyn Store,
    node: &'a Authenticator,
}

impl<'a> Logins<'a> {
    pub(crate) fn new(store: &'a dyn Store, node: &'a Authenticator) -> Logins<'a> {
        Logins { store, node }
    }

    /// Starts a login for a user who just proved their password.
    pub(crate) async fn start(&self, username: &str) -> StoreResult<TokenPair> {
        let tokens = &self.node.tokens;
        let login = random_id();
        let access = tokens.issue_access(username, &login, Proof::Password);
        let refresh = tokens.issue_refresh(username, &login);
        self.store.create_family(&login, username, &refresh.claims.jti, refresh.claims.exp).await?;
        Ok(TokenPair { access, refresh })
    }

    /// The next access token (not fresh) and refresh token of the login whose refresh token
    /// `identity` presented. A refresh token that is not the login's current one ends the login.
    ///
    /// Within the grace window after a rotation, the refresh token it replaced gets the very same
    /// pair again (two tabs refreshing at once), and the login lives on.
    pub(crate) async fn rotate(&self, identity: &Identity) -> Result<TokenPair, AuthError> {
        let claims = &identity.claims;
        let (tokens, at) = (&self.node.tokens, now());
        let (fam, jti) = (&claims.fam, &claims.jti);
        let (access, refresh) = tokens.issue_rotation(&claims.sub, fam, jti, at);
        let grace_from = self.node.grace_from(at);
        let rotation = self
            .store
            .rotate_family(RefreshRotation {
                family: fam,
                presented: jti,
                next: &refresh.claims.jti,
                expires_at: refresh.claims.exp,
                now: at,
                grace_from,
            })
            .await?;
        match rotation {
            Rotation::Rotated => Ok(TokenPair { access, refresh }),
            Rotation::Repeated { rotated_at } => {
                let (access, refresh) = tokens.issue_rotation(&claims.sub, fam, jti, rotated_at);
                Ok(TokenPair { access, refresh })
            }
            Rotation::Reused => {
                // The store has logged the revocation for the other nodes already.
                tracing::warn!(username = %claims.sub, "refresh token reused: login revoked");
                self.node.apply(&self.login_revocation(claims));
                Err(TokenError::Revoked.into())
            }
            Rotation::Dead => Err(TokenError::Revoked.into()),
        }
    }

    /// Ends the login whose old refresh token `claims` were presented again.
    pub(crate) async fn end_reused(&self, claims: &Claims) -> StoreResult<()> {
        tracing::warn!(username = %claims.sub, "old refresh token presented: login revoked");
        let revocation = self.login_revocation(claims);
        self.store.revoke(&revocation, now()).await?;
        self.node.apply(&revocation);
        Ok(())
    }

    /// Ends the login `claims` belong to, and the token itself.
    pub(crate) async fn logout(&self, claims: &Claims) -> StoreResult<()> {
        let token = Revocation::token(&claims.jti, &claims.sub, claims.exp);
        for revocation in [token, self.login_revocation(claims)] {
            self.store.revoke(&revocation, now()).await?;
            self.node.apply(&revocation);
        }
        tracing::info!(username = %claims.sub, "logout");
        Ok(())
    }

    /// Sets a new password hash and ends every login of the user; see [`change_password`].
    pub(crate) async fn change_password(&self, username: &str, hash: &str) -> StoreResult<Option<usize>> {
        change_password(self.store, Some(self.node), username, hash).await
    }

    /// The revocation of a whole login: in force as long as a token of it may live, which is at
    /// most a refresh token's lifetime from now.
    fn login_revocation(&self, claims: &Claims) -> Revocation {
        Revocation::family(&claims.fam, &claims.sub, now() + self.node.tokens.refresh_ttl().as_secs() as i64)
    }
}

/// Ends every live login of `username` (disabled, or a new password) and returns how many. On a
/// node (`here`), its sockets close at once; from the CLI, the nodes close them from the log.
pub(crate) async fn end_all(
    store: &dyn Store,
    here: Option<&Authenticator>,
    username: &str,
) -> StoreResult<usize> {
    let revoked = store.revoke_user(username, now()).await?;
    if let Some(node) = here {
        for revocation in &revoked {
            node.apply(revocation);
        }
    }
    Ok(revoked.len())
}

/// Sets a new password hash, then ends every login of the user: whoever held a token knew the old
/// password. `None` when there is no such user; else the number of logins ended.
pub(crate) async fn change_password(
    store: &dyn Store,
    here: Option<&Authenticator>,
    username: &str,
    hash: &str,
) -> StoreResult<Option<usize>> {
    if !store.set_password_hash(username, hash).await? {
        return Ok(None);
    }
    let ended = end_all(store, here, username).await?;
    tracing::info!(username, "password changed");
    Ok(Some(ended))
}

/// Kept beyond the longest token lifetime: clock skew, and a node's late reading of the log.
const USER_REVOCATION_MARGIN: Duration = Duration::from_secs(60);
/// A disconnection stays in the log this long, for nodes that read it late; it is never in force.
const DISCONNECT_KEPT: Duration = Duration::from_secs(60);

/// How long a user revocation stays in force: until every token it refuses has expired anyway,
/// wsguard's (a refresh token lives `refresh_ttl`) and trusted issuers' (`longest_outside`, the
/// largest `max_token_lifetime`).
pub(crate) fn user_revocation_window(refresh_ttl: Duration, longest_outside: Duration) -> Duration {
    refresh_ttl.max(longest_outside) + Duration::from_secs(LEEWAY_SECS) + USER_REVOCATION_MARGIN
}

/// What [`revoke_user`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct UserRevoked {
    /// Tokens issued before this (Unix seconds) are refused: the second after the revocation,
    /// since `iat` has whole seconds and a token of the same second may predate it.
    pub(crate) issued_before: i64,
    /// Until when (Unix seconds).
    pub(crate) until: i64,
    /// wsguard logins ended (0 for a user without a row, such as a trusted issuer's).
    pub(crate) logins: usize,
}

/// Logs the revocation of every token of `username` issued until now, from any issuer, in force
/// for `window` (see [`user_revocation_window`]), then ends the user's wsguard logins. With a node
/// (`here`), it takes effect there at once; elsewhere within a second, from the log.
pub(crate) async fn log_user_revocation(
    store: &dyn Store,
    here: Option<&Authenticator>,
    username: &str,
    window: Duration,
) -> StoreResult<UserRevoked> {
    let at = now();
    let revocation = Revocation::user(username, at + 1, at + window.as_secs() as i64);
    // First: it alone refuses every token, refresh tokens included; ending the logins after it
    // only marks them dead in the store.
    store.revoke(&revocation, at).await?;
    if let Some(node) = here {
        node.apply(&revocation);
    }
    let logins = end_all(store, here, username).await?;
    tracing::info!(username, logins, "user revoked");
    Ok(UserRevoked { issued_before: at + 1, until: revocation.expires_at, logins })
}

/// Revokes `username` on this node's cluster: their tokens issued until now (wsguard's and trusted
/// issuers') are refused everywhere, their sockets close with 4003 on every node, their wsguard
/// logins end. Works for a username without a row (a trusted issuer's user). The store first,
/// then this node.
pub(crate) async fn revoke_user(
    store: &dyn Store,
    node: &Authenticator,
    username: &str,
) -> StoreResult<UserRevoked> {
    log_user_revocation(store, Some(node), username, node.user_revocation_window()).await
}

/// Closes every socket `username` holds now on every node with 4003, revoking nothing: the client
/// may reconnect with the same token, and that socket stays (when this node, or a late one, reads
/// the entry back from the log too). The store first, then this node.
pub(crate) async fn disconnect_user(
    store: &dyn Store,
    node: &Authenticator,
    username: &str,
) -> StoreResult<()> {
    let at_ms = crate::clock::now_ms();
    let at = at_ms.div_euclid(1000);
    let revocation = Revocation::disconnect(username, at_ms, at + DISCONNECT_KEPT.as_secs() as i64);
    store.revoke(&revocation, at).await?;
    node.apply(&revocation);
    tracing::info!(username, "user disconnected");
    Ok(())
}

impl Authenticator {
    /// How long a user revocation made on this node stays in force.
    pub(crate) fn user_revocation_window(&self) -> Duration {
        user_revocation_window(self.tokens.refresh_ttl(), self.issuers.longest_lifetime())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::bindings::{Binding, SocketMeta};
    use crate::auth::issuers::TrustedIssuers;
    use crate::auth::secret::HmacSecret;
    use crate::auth::tokens::Tokens;
    use crate::store::{DynStore, RevocationKind};

    const DAY: Duration = Duration::from_secs(24 * 3600);

    /// A node on a fresh SQLite store, with wsguard's default lifetimes.
    async fn node(dir: &tempfile::TempDir) -> (Authenticator, DynStore) {
        let store =
            crate::store::connect(&format!("sqlite://{}", dir.path().join("t.db").display())).await.unwrap();
        let secret = HmacSecret::load(None, dir.path()).unwrap();
        let tokens = Tokens::new(secret, "wsguard".into(), None, Duration::from_secs(900), 14 * DAY);
        let node = Authenticator::new(tokens, TrustedIssuers::default(), store.clone(), Duration::ZERO);
        (node, store)
    }

    fn claims(user: &str, iat: i64) -> Claims {
        Claims::test(user, iat)
    }

    async fn closed(binding: &Binding) -> bool {
        tokio::time::timeout(Duration::from_millis(20), binding.signal.revoked()).await.is_ok()
    }

    #[tokio::test]
    async fn revoke_user_refuses_older_tokens_and_closes_their_sockets_here_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let (node, store) = node(&dir).await;
        let old = claims("bob", now() - 10);
        let (bob, alice) = (
            node.bindings.register(&old, 8, SocketMeta::TEST).unwrap(),
            node.bindings.register(&claims("alice", 0), 8, SocketMeta::TEST),
        );
        let before = now();
        let revoked = revoke_user(store.as_ref(), &node, "bob").await.unwrap();
        assert!((before + 1..=now() + 1).contains(&revoked.issued_before), "{revoked:?}");
        assert_eq!(revoked.logins, 0);
        assert!(closed(&bob).await);
        assert!(!closed(&alice.unwrap()).await, "another user");
        assert!(node.revocations.is_revoked(&old));
        // A trusted issuer's (these claims have no login): its clock may run the leeway ahead.
        let later = revoked.issued_before + LEEWAY_SECS as i64;
        assert!(node.revocations.is_revoked(&claims("bob", later - 1)), "maybe issued before");
        assert!(!node.revocations.is_revoked(&claims("bob", later)), "a later token");
        // In force as long as a refresh token lives, plus the margins.
        assert_eq!(revoked.until - (revoked.issued_before - 1), (14 * DAY).as_secs() as i64 + 65);
        let (_, live) = store.live_revocations(now()).await.unwrap();
        assert_eq!(live, [Revocation::user("bob", revoked.issued_before, revoked.until)]);
        let later = node.bindings.register(&claims("bob", later), 8, SocketMeta::TEST).unwrap();
        assert!(!closed(&later).await, "a socket opened with a later token stays");
    }

    #[tokio::test]
    async fn disconnect_user_closes_every_socket_open_and_revokes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let (node, store) = node(&dir).await;
        let token = claims("bob", now());
        let sockets = [
            node.bindings.register(&token, 8, SocketMeta::TEST).unwrap(),
            node.bindings.register(&claims("bob", 0), 8, SocketMeta::TEST).unwrap(),
        ];
        disconnect_user(store.as_ref(), &node, "bob").await.unwrap();
        for socket in &sockets {
            assert!(closed(socket).await);
        }
        assert!(!node.revocations.is_revoked(&token), "the client may reconnect");
        let log = store.revocations_since(0, 10).await.unwrap();
        assert_eq!(log.len(), 1);
        let (_, disconnection) = &log[0];
        let RevocationKind::Disconnect { at_ms } = disconnection.kind else { panic!("{disconnection:?}") };
        assert_eq!(disconnection.username, "bob");
        assert!(store.live_revocations(now()).await.unwrap().1.is_empty(), "never loaded by a starting node");

        // The client reconnects; then this node's log follower (or a late node's) applies the
        // entry it reads back: the new socket stays.
        while crate::clock::now_ms() <= at_ms {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let again = node.bindings.register(&token, 8, SocketMeta::TEST).unwrap();
        node.apply(disconnection);
        assert!(!closed(&again).await, "a socket opened after the disconnection stays");
    }

    #[test]
    fn a_user_revocation_outlives_every_token_it_refuses() {
        let window = user_revocation_window(14 * DAY, DAY);
        assert_eq!(window, 14 * DAY + Duration::from_secs(65));
        assert_eq!(
            user_revocation_window(Duration::from_secs(3600), 30 * DAY),
            30 * DAY + Duration::from_secs(65)
        );
    }
}
