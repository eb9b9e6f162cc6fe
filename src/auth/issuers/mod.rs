//! Trusted issuers (`[[trusted_issuers]]`): other applications whose tokens open sockets, such as
//! a FastAPI app signing `{"sub": "bob", "exp": …}` with HS256. A token is taken to be theirs by
//! its unverified `iss` (exactly equal), or by having no `iss` at all when one issuer is configured
//! without it; wsguard's own `iss` always takes wsguard's own path. Then everything is verified
//! with that issuer's key only: its HS256 secret, or its published JWKS, where the key a `kid`
//! names decides the algorithm. The identity is built from the token alone; the store is never
//! asked (see `Authenticator::check_trusted`).

mod jwks;
mod keyset;
mod verified;

pub(crate) use jwks::JwksKeys;

use super::credentials::check_username;
use super::secret::HmacSecret;
use super::tokens::{self, Claims, TokenError, TokenKind, LEEWAY_SECS, MAX_TOKEN_BYTES};
use super::AuthError;
use crate::config::IssuerSettings;
use anyhow::Context;
use base64::Engine;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use jwks::Miss;
use keyset::Fingerprint;
use serde::Deserialize;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// The algorithms a published key may verify.
const PUBLISHED_ALGS: [Algorithm; 3] = [Algorithm::RS256, Algorithm::ES256, Algorithm::EdDSA];

#[derive(Default)]
pub(crate) struct TrustedIssuers {
    issuers: Vec<TrustedIssuer>,
}

/// One application whose tokens are admitted.
pub(crate) struct TrustedIssuer {
    /// Its `iss`; empty for the issuer of tokens without `iss`.
    pub(crate) name: Arc<str>,
    keys: Keys,
    /// One per algorithm its keys verify, built once.
    validations: Vec<(Algorithm, Validation)>,
    /// The RS256 checks but the signature's, for a token whose signature ring verified: the same
    /// `exp`, `nbf`, `iss` and `aud` rules (see `check`).
    claims_only: Validation,
    username_claim: String,
    audience: Option<String>,
    /// Seconds.
    max_lifetime: i64,
}

enum Keys {
    Secret(HmacSecret),
    Published(Arc<JwksKeys>),
}

impl TrustedIssuers {
    /// Reads each issuer's secret file (checked as wsguard's own secret is: private, long enough,
    /// not a published one) or prepares its JWKS, which is fetched later (`follow`).
    pub(crate) fn load(settings: &[IssuerSettings]) -> anyhow::Result<TrustedIssuers> {
        let issuers = settings.iter().map(TrustedIssuer::load).collect::<anyhow::Result<_>>()?;
        Ok(TrustedIssuers { issuers })
    }

    /// The issuer `token` claims to come from, if it is a trusted one. `None` sends the token down
    /// wsguard's own path, which refuses whatever is not its own.
    pub(crate) fn select(&self, token: &str, own: &str) -> Option<&TrustedIssuer> {
        if self.issuers.is_empty() || token.len() > MAX_TOKEN_BYTES {
            return None;
        }
        match unverified_iss(token)? {
            Some(iss) if iss == own => None,
            Some(iss) => self.issuers.iter().find(|i| !i.name.is_empty() && *i.name == *iss),
            None => self.issuers.iter().find(|i| i.name.is_empty()),
        }
    }

    /// The issuers with published keys, and those keys.
    pub(crate) fn published(&self) -> impl Iterator<Item = (&TrustedIssuer, &Arc<JwksKeys>)> {
        self.issuers.iter().filter_map(|issuer| match &issuer.keys {
            Keys::Published(jwks) => Some((issuer, jwks)),
            Keys::Secret(_) => None,
        })
    }

    /// The longest any trusted issuer's token may live.
    pub(crate) fn longest_lifetime(&self) -> Duration {
        let longest = self.issuers.iter().map(|i| i.max_lifetime).max().unwrap_or(0);
        Duration::from_secs(longest.max(0) as u64)
    }
}

/// The `iss` of a token's payload, unverified: only to choose the key that will verify it.
/// `None` when the payload cannot be read; `Some(None)` when it has no `iss`.
fn unverified_iss(token: &str) -> Option<Option<String>> {
    #[derive(Deserialize)]
    struct Peek {
        iss: Option<String>,
    }
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).ok()?;
    serde_json::from_slice::<Peek>(&bytes).ok().map(|peek| peek.iss)
}

impl TrustedIssuer {
    fn load(settings: &IssuerSettings) -> anyhow::Result<TrustedIssuer> {
        let context = || format!("trusted_issuers: {}", settings.name());
        let (keys, algs) = match (&settings.secret_file, &settings.jwks_url) {
            (Some(file), _) => {
                // The data folder matters only without a configured file.
                let secret = HmacSecret::load(Some(file), Path::new(".")).with_context(context)?;
                (Keys::Secret(secret), vec![Algorithm::HS256])
            }
            (None, Some(url)) => {
                let jwks = JwksKeys::new(url).with_context(context)?;
                (Keys::Published(Arc::new(jwks)), PUBLISHED_ALGS.to_vec())
            }
            (None, None) => anyhow::bail!("{}: no secret_file and no jwks_url", context()),
        };
        Ok(TrustedIssuer {
            name: settings.issuer.as_deref().unwrap_or("").into(),
            keys,
            validations: algs.into_iter().map(|alg| (alg, validation(alg, settings))).collect(),
            claims_only: claims_validation(settings),
            username_claim: settings.username_claim.clone(),
            audience: settings.audience.clone(),
            max_lifetime: settings.max_token_lifetime.as_secs().min(i64::MAX as u64) as i64,
        })
    }

    /// How logs and metrics name it.
    pub(crate) fn label(&self) -> &str {
        if self.name.is_empty() {
            "(no iss)"
        } else {
            &self.name
        }
    }

    /// Verifies a token of this issuer: the key (and so the algorithm), the signature, `exp`
    /// (required), `nbf`, `iss` and `aud` as configured, the lifetime bound and the username.
    /// Returns its claims as wsguard reads them: an access token of no login (`fam` empty), `iat`
    /// 0 when absent, `jti` derived from the token when absent. A published-key issuer's token
    /// verified before is not checked again but for its `exp` (see `verified.rs`).
    /// While the issuer's keys cannot tell whether its `kid` exists (see `jwks.rs`), the token is
    /// neither admitted nor called forged: [`AuthError::KeysUnavailable`].
    pub(crate) async fn verify(&self, token: &str) -> Result<Claims, AuthError> {
        let now = crate::clock::now_secs();
        let Keys::Published(jwks) = &self.keys else {
            return Ok(self.check(token, now).await?.0);
        };
        if let Some(claims) = jwks.verified.get(token, now) {
            return Ok(claims);
        }
        let (claims, key) = self.check(token, now).await?;
        if let Some(key) = key {
            jwks.verified.insert(token, &claims, key);
        }
        Ok(claims)
    }

    /// The claims, and which published key verified them.
    async fn check(&self, token: &str, now: i64) -> Result<(Claims, Option<Fingerprint>), AuthError> {
        let (payload, key) = self.verified_payload(token).await?;
        // A subscription token grants one channel, never a connection.
        if payload.contains_key("channel") {
            return Err(TokenError::WrongKind.into());
        }
        Ok((self.claims(token, &payload, now)?, key))
    }

    async fn payload(&self, token: &str) -> Result<Map<String, Value>, AuthError> {
        Ok(self.verified_payload(token).await?.0)
    }

    /// The payload, once key, algorithm, signature and the configured claims are checked, and
    /// which published key verified it.
    async fn verified_payload(
        &self,
        token: &str,
    ) -> Result<(Map<String, Value>, Option<Fingerprint>), AuthError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| TokenError::Malformed)?;
        let published;
        let mut key = None;
        let mut rsa = None;
        let (alg, decoding): (Algorithm, &DecodingKey) = match &self.keys {
            Keys::Secret(secret) => (Algorithm::HS256, &secret.decoding),
            // Not one of the published algorithms: no key could verify it, no need to refetch.
            Keys::Published(_) if !PUBLISHED_ALGS.contains(&header.alg) => {
                return Err(TokenError::BadSignature.into())
            }
            Keys::Published(jwks) => {
                published = jwks.find(header.kid.as_deref()).await.map_err(|miss| match miss {
                    Miss::Unknown => AuthError::Token(TokenError::BadSignature),
                    Miss::Unavailable { retry_after_secs } => {
                        AuthError::KeysUnavailable { issuer: self.label().to_owned(), retry_after_secs }
                    }
                })?;
                key = Some(published.fingerprint);
                rsa = published.rsa.as_ref();
                (published.alg, &published.decoding)
            }
        };
        // The key decides: a header naming another algorithm (HS256 keyed with a public key, the
        // classic confusion) is refused before anything is checked.
        if header.alg != alg {
            return Err(TokenError::BadSignature.into());
        }
        let validation = self.validations.iter().find(|(a, _)| *a == alg).map(|(_, v)| v);
        let mut validation = validation.ok_or(TokenError::BadSignature)?;
        // An RSA key's signature is checked with ring, several times faster than jsonwebtoken's
        // RustCrypto backend at the public-key arithmetic (most of what a first RS256 token
        // costs), then everything else by jsonwebtoken as for any token, with this key's RS256
        // rules but for the signature, already verified.
        if let Some(rsa) = rsa.filter(|_| alg == Algorithm::RS256) {
            verify_rs256(token, rsa)?;
            validation = &self.claims_only;
        }
        let data = jsonwebtoken::decode::<Map<String, Value>>(token, decoding, validation)
            .map_err(tokens::refusal)?;
        Ok((data.claims, key))
    }

    /// A subscription token of this issuer: its payload and its user (`username_claim`), once the
    /// key, signature, `exp` (required), `nbf`, `iss`, `aud` and the lifetime bound are checked.
    pub(crate) async fn subscription(&self, token: &str) -> Result<(String, Map<String, Value>), AuthError> {
        let now = crate::clock::now_secs();
        let payload = self.payload(token).await?;
        let sub = match payload.get(&self.username_claim) {
            Some(Value::String(sub)) => sub.clone(),
            _ => return Err(TokenError::Malformed.into()),
        };
        let seconds = |name: &str| payload.get(name).and_then(Value::as_i64);
        let exp = seconds("exp").ok_or(TokenError::Malformed)?;
        if seconds("iat").is_some_and(|iat| iat > now + LEEWAY_SECS as i64) {
            return Err(TokenError::Immature.into());
        }
        if exp.saturating_sub(seconds("iat").unwrap_or(now)) > self.max_lifetime {
            return Err(TokenError::Malformed.into());
        }
        Ok((sub, payload))
    }

    /// The claims wsguard relies on, from a verified payload.
    fn claims(&self, token: &str, payload: &Map<String, Value>, now: i64) -> Result<Claims, TokenError> {
        let text = |name: &str| match payload.get(name) {
            None => Ok(None),
            Some(Value::String(text)) => Ok(Some(text.clone())),
            Some(_) => Err(TokenError::Malformed),
        };
        let seconds = |name: &str| match payload.get(name) {
            None => Ok(None),
            Some(value) => value
                .as_i64()
                .or_else(|| value.as_f64().filter(|f| f.is_finite()).map(|f| f as i64))
                .map(Some)
                .ok_or(TokenError::Malformed),
        };
        let sub = text(&self.username_claim)?.filter(|name| check_username(name).is_ok());
        let sub = sub.ok_or(TokenError::Malformed)?;
        let exp = seconds("exp")?.ok_or(TokenError::Malformed)?;
        let (iat, nbf) = (seconds("iat")?, seconds("nbf")?);
        let leeway = LEEWAY_SECS as i64;
        // Issued in the future would slip past a user revocation, whose cutoff is an `iat`.
        if iat.is_some_and(|iat| iat > now + leeway) {
            return Err(TokenError::Immature);
        }
        if exp.saturating_sub(iat.unwrap_or(now)) > self.max_lifetime {
            return Err(TokenError::Malformed);
        }
        let jti = text("jti")?.filter(|jti| !jti.is_empty()).unwrap_or_else(|| derived_id(token));
        // No `iat`: issued at the epoch, as far as user revocations go (before any of them).
        let iat = iat.unwrap_or(0);
        Ok(Claims {
            sub,
            exp,
            iat,
            nbf: nbf.unwrap_or(iat),
            jti,
            kind: TokenKind::Access,
            fresh: false,
            iss: text("iss")?.unwrap_or_default(),
            aud: self.audience.clone(),
            fam: String::new(),
            csrf: text("csrf")?.unwrap_or_default(),
            channels: channels_claim(payload.get("channels"))?,
        })
    }
}

/// Most entries of a `channels` claim, and longest entry.
const MAX_CHANNEL_CLAIMS: usize = 64;
const MAX_CHANNEL_CLAIM_CHARS: usize = 128;

/// The `channels` claim: the channels (globs) the token lets its user subscribe to in namespaces
/// with `subscribe = "claim"`. Absent: none. Anything but a short list of short strings is a
/// malformed token.
fn channels_claim(claim: Option<&Value>) -> Result<Vec<String>, TokenError> {
    let Some(claim) = claim else { return Ok(Vec::new()) };
    let list =
        claim.as_array().filter(|list| list.len() <= MAX_CHANNEL_CLAIMS).ok_or(TokenError::Malformed)?;
    list.iter()
        .map(|entry| match entry.as_str() {
            Some(text) if !text.is_empty() && text.len() <= MAX_CHANNEL_CLAIM_CHARS => Ok(text.to_owned()),
            _ => Err(TokenError::Malformed),
        })
        .collect()
}

/// What checks a token of an issuer configured as `settings` under `alg`.
fn validation(alg: Algorithm, settings: &IssuerSettings) -> Validation {
    let mut validation = Validation::new(alg);
    validation.leeway = LEEWAY_SECS;
    validation.validate_nbf = true;
    let mut required = vec!["exp"];
    if let Some(iss) = &settings.issuer {
        validation.set_issuer(&[iss]);
        required.push("iss");
    }
    match &settings.audience {
        Some(aud) => {
            validation.set_audience(&[aud]);
            required.push("aud");
        }
        None => validation.validate_aud = false,
    }
    validation.set_required_spec_claims(&required);
    validation
}

/// The checks of an RS256 token of an issuer configured as `settings` once ring has verified its
/// signature: the claims' only.
fn claims_validation(settings: &IssuerSettings) -> Validation {
    let mut validation = validation(Algorithm::RS256, settings);
    // Deprecated for fear of use without a signature check; only `check` uses this, and only
    // after `verify_rs256` passed.
    #[allow(deprecated)]
    validation.insecure_disable_signature_validation();
    validation
}

/// Checks an RS256 signature (RSASSA-PKCS1-v1_5 with SHA-256, moduli of 2,048 to 8,192 bits) of
/// `token` with `key`, as jsonwebtoken would: over the header and payload as sent, the signature
/// base64url. A signature that is not base64url is a malformed token, one that does not verify a
/// bad signature, both refused before the claims are read.
fn verify_rs256(
    token: &str,
    key: &ring::signature::RsaPublicKeyComponents<Vec<u8>>,
) -> Result<(), TokenError> {
    let (message, signature) = token.rsplit_once('.').ok_or(TokenError::Malformed)?;
    let signature = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(signature)
        .map_err(|_| TokenError::Malformed)?;
    key.verify(&ring::signature::RSA_PKCS1_2048_8192_SHA256, message.as_bytes(), &signature)
        .map_err(|_| TokenError::BadSignature)
}

/// An id for a token without `jti`, so that it can be revoked by itself: a hash of the token.
fn derived_id(token: &str) -> String {
    hex::encode(&Sha256::digest(token.as_bytes())[..16])
}

#[cfg(test)]
mod tests;
