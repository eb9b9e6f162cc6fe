//! A trusted issuer's JWK Set, read into verifying keys. Each key's algorithm comes from the key
//! itself (`alg` when given, else its `kty` and `crv`), never from a token: an RSA key verifies
//! RS256 only, a P-256 key ES256, an Ed25519 key EdDSA. Anything else in the set (symmetric `oct`
//! keys, encryption keys, other curves and algorithms, RSA under 2048 bits) is skipped.

use base64::Engine;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};
use ring::signature::RsaPublicKeyComponents;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

/// RSA moduli below this are refused: 1024-bit keys are within reach of factoring.
const MIN_RSA_BITS: usize = 2048;

/// One verifying key and the one algorithm it verifies.
pub(crate) struct SetKey {
    pub(crate) alg: Algorithm,
    pub(crate) decoding: DecodingKey,
    /// An RSA key's modulus and exponent (big-endian bytes), which verify its RS256 signatures
    /// with ring (see `TrustedIssuer::check`); `None` for the other kinds of key.
    pub(crate) rsa: Option<RsaPublicKeyComponents<Vec<u8>>>,
    /// What tells this key from any other: the same in the next fetch only if unchanged.
    pub(crate) fingerprint: Fingerprint,
}

/// The SHA-256 of a key's JWK as published (its members in sorted order).
pub(crate) type Fingerprint = [u8; 32];

/// The usable keys of one fetch of the set.
#[derive(Default)]
pub(crate) struct KeySet {
    by_kid: HashMap<String, Arc<SetKey>>,
    all: Vec<Arc<SetKey>>,
    /// `kid`s that earlier fetches held and this one does not: withdrawn, so a token naming one
    /// is refused without asking the issuer again.
    withdrawn: HashSet<String>,
}

/// Withdrawn `kid`s remembered at most.
const MAX_WITHDRAWN: usize = 64;

impl KeySet {
    /// The key a token names by `kid`; a token without `kid` gets the set's only key, if it has
    /// just one.
    pub(crate) fn get(&self, kid: Option<&str>) -> Option<Arc<SetKey>> {
        match kid {
            Some(kid) => self.by_kid.get(kid).cloned(),
            None if self.all.len() == 1 => self.all.first().cloned(),
            None => None,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.all.len()
    }

    /// Whether `kid` named a key of an earlier fetch that this one no longer holds.
    pub(crate) fn withdrew(&self, kid: Option<&str>) -> bool {
        kid.is_some_and(|kid| self.withdrawn.contains(kid))
    }

    /// This set, fetched after `previous`: remembers what `previous` held (or knew withdrawn)
    /// that this one does not.
    pub(crate) fn after(mut self, previous: &KeySet) -> KeySet {
        let gone = previous.by_kid.keys().chain(&previous.withdrawn);
        let gone = gone.filter(|kid| !self.by_kid.contains_key(*kid)).take(MAX_WITHDRAWN);
        self.withdrawn = gone.cloned().collect();
        self
    }

    /// Whether the set still holds the key `fingerprint` names, unchanged.
    pub(crate) fn holds(&self, fingerprint: &Fingerprint) -> bool {
        self.all.iter().any(|key| key.fingerprint == *fingerprint)
    }

    /// Reads a JWK Set document; keys wsguard cannot use are skipped (and logged), a document
    /// without any usable key is an error.
    pub(crate) fn parse(body: &[u8]) -> anyhow::Result<KeySet> {
        #[derive(Deserialize)]
        struct Document {
            keys: Vec<serde_json::Value>,
        }
        let document: Document =
            serde_json::from_slice(body).map_err(|_| anyhow::anyhow!("not a JWK Set (JSON with `keys`)"))?;
        let mut set = KeySet::default();
        for value in document.keys {
            match usable(value) {
                Ok((kid, key)) => {
                    let key = Arc::new(key);
                    if let Some(kid) = kid {
                        set.by_kid.insert(kid, key.clone());
                    }
                    set.all.push(key);
                }
                Err(why) => tracing::debug!(why, "skipping a key of a trusted issuer's JWK Set"),
            }
        }
        anyhow::ensure!(!set.all.is_empty(), "no RS256, ES256 or EdDSA signing key in the JWK Set");
        Ok(set)
    }
}

/// A key of the set, with its `kid`, or why it cannot verify tokens here.
fn usable(value: serde_json::Value) -> Result<(Option<String>, SetKey), &'static str> {
    // serde_json's maps are sorted: the same JWK always serializes the same.
    let fingerprint = Sha256::digest(value.to_string().as_bytes()).into();
    let jwk: Jwk = serde_json::from_value(value).map_err(|_| "not a JWK of a known type")?;
    if jwk.common.public_key_use.as_ref().is_some_and(|u| *u != PublicKeyUse::Signature) {
        return Err("not a signing key");
    }
    let declared = jwk.common.key_algorithm;
    let mut rsa_key = None;
    let alg = match &jwk.algorithm {
        AlgorithmParameters::RSA(rsa) if matches!(declared, None | Some(KeyAlgorithm::RS256)) => {
            let (Some(n), Some(e)) = (base64url(&rsa.n), base64url(&rsa.e)) else {
                return Err("unreadable key parameters");
            };
            if significant_bytes(&n) * 8 < MIN_RSA_BITS {
                return Err("an RSA key under 2048 bits");
            }
            rsa_key = Some(RsaPublicKeyComponents { n, e });
            Algorithm::RS256
        }
        AlgorithmParameters::EllipticCurve(ec)
            if ec.curve == EllipticCurve::P256 && matches!(declared, None | Some(KeyAlgorithm::ES256)) =>
        {
            Algorithm::ES256
        }
        AlgorithmParameters::OctetKeyPair(okp)
            if okp.curve == EllipticCurve::Ed25519
                && matches!(declared, None | Some(KeyAlgorithm::EdDSA)) =>
        {
            Algorithm::EdDSA
        }
        _ => return Err("not an RS256, ES256 or EdDSA public key"),
    };
    let decoding = DecodingKey::from_jwk(&jwk).map_err(|_| "unreadable key parameters")?;
    Ok((jwk.common.key_id, SetKey { alg, decoding, rsa: rsa_key, fingerprint }))
}

/// A JWK parameter's bytes (base64url, padding tolerated).
fn base64url(value: &str) -> Option<Vec<u8>> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(value.trim_end_matches('=')).ok()
}

/// The length of a big-endian number, leading zero bytes not counted.
fn significant_bytes(bytes: &[u8]) -> usize {
    bytes.iter().skip_while(|b| **b == 0).count()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn b64(bytes: &[u8]) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    }

    fn rsa(kid: &str, bytes: usize) -> serde_json::Value {
        let mut n = vec![0xc5u8; bytes];
        n[bytes - 1] = 0x01;
        json!({"kty": "RSA", "kid": kid, "n": b64(&n), "e": "AQAB"})
    }

    #[test]
    fn the_algorithm_comes_from_the_key() {
        let ed = json!({"kty": "OKP", "crv": "Ed25519", "kid": "ed", "x": b64(&[7; 32])});
        let ec = json!({"kty": "EC", "crv": "P-256", "kid": "ec", "alg": "ES256", "use": "sig",
            "x": b64(&[1; 32]), "y": b64(&[2; 32])});
        let body = json!({"keys": [rsa("rs", 256), ed, ec]}).to_string();
        let set = KeySet::parse(body.as_bytes()).unwrap();
        assert_eq!(set.len(), 3);
        assert_eq!(set.get(Some("rs")).unwrap().alg, Algorithm::RS256);
        assert_eq!(set.get(Some("ed")).unwrap().alg, Algorithm::EdDSA);
        assert_eq!(set.get(Some("ec")).unwrap().alg, Algorithm::ES256);
        assert!(set.get(Some("other")).is_none());
        assert!(set.get(None).is_none(), "no kid, several keys: no guess");
    }

    #[test]
    fn unusable_keys_are_skipped() {
        let keys = json!({"keys": [
            {"kty": "oct", "kid": "secret", "k": b64(b"0123456789abcdef0123456789abcdef")},
            rsa("short", 128),
            {"kty": "RSA", "kid": "enc", "use": "enc", "n": b64(&[0xc5; 256]), "e": "AQAB"},
            {"kty": "RSA", "kid": "ps", "alg": "PS256", "n": b64(&[0xc5; 256]), "e": "AQAB"},
            {"kty": "EC", "crv": "P-384", "kid": "p384", "x": b64(&[1; 48]), "y": b64(&[2; 48])},
            {"kty": "EC", "crv": "P-256", "kid": "mislabelled", "alg": "RS256", "x": b64(&[1; 32]), "y": b64(&[2; 32])},
            {"kty": "what", "kid": "unknown"},
            rsa("good", 256),
        ]});
        let set = KeySet::parse(keys.to_string().as_bytes()).unwrap();
        assert_eq!(set.len(), 1);
        assert_eq!(set.get(None).unwrap().alg, Algorithm::RS256, "the only key serves tokens without kid");
        for skipped in ["secret", "short", "enc", "ps", "p384", "mislabelled", "unknown"] {
            assert!(set.get(Some(skipped)).is_none(), "{skipped}");
        }
    }

    #[test]
    fn a_key_is_held_by_the_next_set_only_if_unchanged() {
        let first = KeySet::parse(json!({"keys": [rsa("a", 256), rsa("b", 256)]}).to_string().as_bytes());
        let first = first.unwrap();
        let a = first.get(Some("a")).unwrap().fingerprint;
        let b = first.get(Some("b")).unwrap().fingerprint;
        assert_ne!(a, b);
        let mut changed = rsa("b", 256);
        changed["n"] = json!(b64(&[0xc7; 256]));
        let next = KeySet::parse(json!({"keys": [rsa("a", 256), changed]}).to_string().as_bytes()).unwrap();
        assert!(next.holds(&a), "the same JWK, fetched again");
        assert!(!next.holds(&b), "another key under the same kid");
    }

    #[test]
    fn a_later_set_knows_which_kids_were_withdrawn() {
        let parse = |keys: Vec<serde_json::Value>| {
            KeySet::parse(json!({ "keys": keys }).to_string().as_bytes()).unwrap()
        };
        let first = parse(vec![rsa("a", 256), rsa("b", 256)]);
        let second = parse(vec![rsa("b", 256), rsa("c", 256)]).after(&first);
        assert!(second.withdrew(Some("a")));
        assert!(!second.withdrew(Some("b")) && !second.withdrew(Some("c")), "still held");
        assert!(!second.withdrew(Some("new")) && !second.withdrew(None), "never seen: not known");
        let third = parse(vec![rsa("c", 256)]).after(&second);
        assert!(third.withdrew(Some("a")) && third.withdrew(Some("b")), "remembered across fetches");
        let fourth = parse(vec![rsa("a", 256)]).after(&third);
        assert!(!fourth.withdrew(Some("a")), "published again");
    }

    #[test]
    fn documents_without_usable_keys_are_errors() {
        for body in ["", "{}", "[]", r#"{"keys": []}"#, r#"{"keys": [{"kty": "oct", "k": "AAAA"}]}"#] {
            assert!(KeySet::parse(body.as_bytes()).is_err(), "{body}");
        }
    }
}
