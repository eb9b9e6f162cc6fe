//! JWT issue and verification. Verification trusts nothing in the header but the `kid`: the
//! algorithm comes from the configuration (an allow-list of one), so `none` and algorithm
//! confusion fail, and every claim wsguard relies on must be present.

use super::keyring::KeyRing;
use super::secret::HmacSecret;
use crate::clock::now_secs as now;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, Header, Validation};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::sync::Arc;
use std::time::Duration;

/// Seconds of clock skew tolerated on `exp` and `nbf`.
pub(crate) const LEEWAY_SECS: u64 = 5;
/// Tokens longer than this are refused before any parsing.
pub const MAX_TOKEN_BYTES: usize = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenKind {
    Access,
    Refresh,
}

/// What the user proved to get an access token: a password makes it fresh, a refresh does not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proof {
    Password,
    RefreshToken,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Claims {
    pub sub: String,
    pub exp: i64,
    pub iat: i64,
    pub nbf: i64,
    pub jti: String,
    #[serde(rename = "type")]
    pub kind: TokenKind,
    pub fresh: bool,
    pub iss: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aud: Option<String>,
    /// The login (refresh family) this token descends from: revoking it revokes them all.
    pub fam: String,
    /// Double-submit CSRF value, also set as the readable `csrf_*` cookie.
    pub csrf: String,
    /// Channels the token lets its user subscribe to in namespaces with `subscribe = "claim"`
    /// (globs such as `news:*`). wsguard's own tokens carry none; an outside issuer's may.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub channels: Vec<String>,
}

impl Claims {
    /// The earliest this token can have been issued, on this server's clock: what a user
    /// revocation compares with its cutoff. wsguard's own tokens (those of a login) carry its
    /// clock; a trusted issuer's `iat` is admitted up to the leeway ahead of it, so such a token
    /// may have been issued that much before its `iat` says.
    pub(crate) fn earliest_issue(&self) -> i64 {
        if self.fam.is_empty() {
            self.iat.saturating_sub(LEEWAY_SECS as i64)
        } else {
            self.iat
        }
    }
}

impl Claims {
    /// An access identity of `sub` issued at `iat` until `exp`, of no login, with `jti`: what a
    /// trusted issuer's token reads as, and what the connect proxy's answer makes.
    pub(crate) fn of_no_login(sub: &str, iat: i64, exp: i64, jti: String) -> Claims {
        Claims {
            sub: sub.into(),
            exp,
            iat,
            nbf: iat,
            jti,
            kind: TokenKind::Access,
            fresh: false,
            iss: String::new(),
            aud: None,
            fam: String::new(),
            csrf: String::new(),
            channels: Vec::new(),
        }
    }

    /// An access token of `sub` issued at `iat`, living ten minutes, of no login.
    #[cfg(test)]
    pub(crate) fn test(sub: &str, iat: i64) -> Claims {
        Claims::of_no_login(sub, iat, iat + 600, random_id())
    }
}

/// Why a token was refused. The text is safe to show a client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("malformed token")]
    Malformed,
    #[error("invalid signature")]
    BadSignature,
    #[error("signature has expired")]
    Expired,
    #[error("token not yet valid")]
    Immature,
    #[error("invalid issuer or audience")]
    WrongAudience,
    #[error("wrong token type")]
    WrongKind,
    #[error("fresh token required")]
    NotFresh,
    #[error("token has been revoked")]
    Revoked,
}

/// A freshly signed token and its claims.
pub struct Issued {
    pub token: String,
    pub claims: Claims,
}

/// What signs and verifies: the HS256 secret, or the ring of asymmetric keys.
pub enum Signer {
    Hmac(HmacSecret),
    Ring(KeyRing),
}

impl From<HmacSecret> for Signer {
    fn from(secret: HmacSecret) -> Signer {
        Signer::Hmac(secret)
    }
}

impl From<KeyRing> for Signer {
    fn from(ring: KeyRing) -> Signer {
        Signer::Ring(ring)
    }
}

pub struct Tokens {
    signer: Signer,
    alg: Algorithm,
    validation: Validation,
    /// A subscription token's: as an access token's, but `nbf` may be absent.
    subscription_validation: Validation,
    issuer: String,
    audience: Option<String>,
    access_ttl: Duration,
    refresh_ttl: Duration,
}

/// What makes a token unique: when it was issued, its id and its CSRF value.
struct Seed {
    iat: i64,
    jti: String,
    csrf: String,
}

impl Seed {
    fn random(iat: i64) -> Seed {
        Seed { iat, jti: random_id(), csrf: random_id() }
    }

    /// Ids derived from a random one (`from`), one per `label`.
    fn derived(from: &str, label: &str, iat: i64) -> Seed {
        let derive = |part: &str| {
            let digest = Sha256::digest(format!("{from}/{label}/{part}").as_bytes());
            hex::encode(&digest[..16])
        };
        Seed { iat, jti: derive("jti"), csrf: derive("csrf") }
    }
}

pub fn random_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

impl Tokens {
    pub fn new(
        signer: impl Into<Signer>,
        issuer: String,
        audience: Option<String>,
        access_ttl: Duration,
        refresh_ttl: Duration,
    ) -> Tokens {
        let signer = signer.into();
        let alg = match &signer {
            Signer::Hmac(_) => Algorithm::HS256,
            Signer::Ring(ring) => ring.alg(),
        };
        let mut validation = Validation::new(alg);
        validation.leeway = LEEWAY_SECS;
        validation.validate_nbf = true;
        validation.set_issuer(&[&issuer]);
        match &audience {
            // Configured, the audience is required: a token without `aud` is not for us.
            Some(aud) => {
                validation.set_required_spec_claims(&["exp", "nbf", "sub", "iss", "aud"]);
                validation.set_audience(&[aud]);
            }
            None => {
                validation.set_required_spec_claims(&["exp", "nbf", "sub", "iss"]);
                validation.validate_aud = false;
            }
        }
        let mut subscription_validation = validation.clone();
        match &audience {
            Some(_) => subscription_validation.set_required_spec_claims(&["exp", "sub", "iss", "aud"]),
            None => subscription_validation.set_required_spec_claims(&["exp", "sub", "iss"]),
        }
        Tokens { signer, alg, validation, subscription_validation, issuer, audience, access_ttl, refresh_ttl }
    }

    /// The `iss` of wsguard's own tokens.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The longest a refresh token, and so a login, lives.
    pub fn refresh_ttl(&self) -> Duration {
        self.refresh_ttl
    }

    /// Signs an access token for `sub` within the login `login`.
    pub fn issue_access(&self, sub: &str, login: &str, proof: Proof) -> Issued {
        self.issue(sub, TokenKind::Access, proof == Proof::Password, login, Seed::random(now()))
    }

    /// Signs the next refresh token of the login `login`.
    pub fn issue_refresh(&self, sub: &str, login: &str) -> Issued {
        self.issue(sub, TokenKind::Refresh, false, login, Seed::random(now()))
    }

    /// The pair that replaces the refresh token `replaced` (a `jti`) of login `login` at `at`:
    /// the same for the same three, so that a second tab refreshing with the same token within
    /// the grace window gets the very same pair (see `logins`). Its ids derive from `replaced`,
    /// which only the holder of that token knows.
    pub(crate) fn issue_rotation(&self, sub: &str, login: &str, replaced: &str, at: i64) -> (Issued, Issued) {
        let access = self.issue(sub, TokenKind::Access, false, login, Seed::derived(replaced, "access", at));
        let refresh =
            self.issue(sub, TokenKind::Refresh, false, login, Seed::derived(replaced, "refresh", at));
        (access, refresh)
    }

    fn issue(&self, sub: &str, kind: TokenKind, fresh: bool, login: &str, seed: Seed) -> Issued {
        let Seed { iat, jti, csrf } = seed;
        let ttl = match kind {
            TokenKind::Access => self.access_ttl,
            TokenKind::Refresh => self.refresh_ttl,
        };
        let claims = Claims {
            sub: sub.to_owned(),
            exp: iat + ttl.as_secs() as i64,
            iat,
            nbf: iat,
            jti,
            kind,
            fresh,
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            fam: login.to_owned(),
            csrf,
            channels: Vec::new(),
        };
        let mut header = Header::new(self.alg);
        let token = match &self.signer {
            Signer::Hmac(secret) => {
                header.kid = Some(secret.kid.clone());
                jsonwebtoken::encode(&header, &claims, &secret.encoding)
            }
            Signer::Ring(ring) => {
                let key = ring.current();
                header.kid = Some(key.kid.clone());
                jsonwebtoken::encode(&header, &claims, &key.encoding)
            }
        };
        // Keys are checked to sign when loaded; claims always serialise.
        let token = token.expect("signing with a loaded key cannot fail");
        Issued { token, claims }
    }

    /// The asymmetric keys, when configured: for the JWKS and the periodic reload.
    pub fn ring(&self) -> Option<&KeyRing> {
        match &self.signer {
            Signer::Ring(ring) => Some(ring),
            Signer::Hmac(_) => None,
        }
    }

    /// The public keys as a JWK Set: empty with HS256, whose secret is never published.
    pub fn jwks(&self) -> Arc<serde_json::Value> {
        match self.ring() {
            Some(ring) => ring.jwks(),
            None => Arc::new(serde_json::json!({ "keys": [] })),
        }
    }

    /// Checks signature, algorithm, `kid`, time window, issuer, audience and kind. Revocation and
    /// the user's state are the caller's to check (see `auth::Authenticator`).
    pub fn verify(&self, token: &str, kind: TokenKind) -> Result<Claims, TokenError> {
        let decoding = self.decoding(token)?;
        let data =
            jsonwebtoken::decode::<Claims>(token, decoding.key(), &self.validation).map_err(refusal)?;
        if data.claims.kind != kind {
            return Err(TokenError::WrongKind);
        }
        Ok(data.claims)
    }

    /// A subscription token signed with wsguard's keys: its payload, once the signature,
    /// algorithm, `kid`, time window, issuer and audience are checked. The caller checks what it
    /// grants (`auth::subscription`).
    pub(crate) fn verify_payload(
        &self,
        token: &str,
    ) -> Result<serde_json::Map<String, serde_json::Value>, TokenError> {
        let decoding = self.decoding(token)?;
        let data =
            jsonwebtoken::decode(token, decoding.key(), &self.subscription_validation).map_err(refusal)?;
        Ok(data.claims)
    }

    /// The key that verifies `token`, chosen by its `kid` among those of the configured
    /// algorithm only.
    fn decoding(&self, token: &str) -> Result<Decoding<'_>, TokenError> {
        if token.is_empty() || token.len() > MAX_TOKEN_BYTES {
            return Err(TokenError::Malformed);
        }
        let header = jsonwebtoken::decode_header(token).map_err(|_| TokenError::Malformed)?;
        if header.alg != self.alg {
            return Err(TokenError::BadSignature);
        }
        match &self.signer {
            Signer::Hmac(secret) => {
                if header.kid.as_deref().is_some_and(|kid| kid != secret.kid) {
                    return Err(TokenError::BadSignature);
                }
                Ok(Decoding::Secret(&secret.decoding))
            }
            // The key comes from the `kid`, and only from the ring of the configured algorithm.
            Signer::Ring(ring) => {
                let key = header.kid.as_deref().and_then(|kid| ring.find(kid));
                Ok(Decoding::Ring(key.ok_or(TokenError::BadSignature)?))
            }
        }
    }
}

/// The key a token names: the secret, or one of the ring's.
enum Decoding<'a> {
    Secret(&'a jsonwebtoken::DecodingKey),
    Ring(Arc<super::keyring::LoadedKey>),
}

impl Decoding<'_> {
    fn key(&self) -> &jsonwebtoken::DecodingKey {
        match self {
            Decoding::Secret(key) => key,
            Decoding::Ring(loaded) => &loaded.decoding,
        }
    }
}

/// Why jsonwebtoken refused a token, as wsguard says it (for its own tokens and trusted issuers').
pub(crate) fn refusal(err: jsonwebtoken::errors::Error) -> TokenError {
    match err.kind() {
        ErrorKind::ExpiredSignature => TokenError::Expired,
        ErrorKind::ImmatureSignature => TokenError::Immature,
        ErrorKind::InvalidSignature | ErrorKind::InvalidAlgorithm => TokenError::BadSignature,
        ErrorKind::InvalidIssuer | ErrorKind::InvalidAudience => TokenError::WrongAudience,
        ErrorKind::MissingRequiredClaim(claim) if claim == "aud" || claim == "iss" => {
            TokenError::WrongAudience
        }
        _ => TokenError::Malformed,
    }
}

#[cfg(test)]
mod tests;
