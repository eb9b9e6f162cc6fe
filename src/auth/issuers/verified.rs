//! A published-key issuer's tokens already verified, by their exact bytes. Presenting one again (a
//! reconnect, a second tab, the socket after a page load) skips the public-key arithmetic of the
//! signature check, most of what such a token costs (an RS256 check takes longer than the rest of a
//! handshake). Only that is skipped: `exp` is checked again on every use, and revocations after
//! this, as for any token. Each token is kept with the key that verified it, and forgotten when a
//! new fetch of the issuer's keys no longer holds that key unchanged; bounded in size.

use super::keyset::{Fingerprint, KeySet};
use crate::auth::tokens::{Claims, LEEWAY_SECS};
use std::collections::HashMap;
use std::sync::Mutex;

/// Entries kept at most; past it the cache starts over. Tokens are at most 4 KiB.
const CAPACITY: usize = 4096;

#[derive(Default)]
pub(crate) struct VerifiedTokens {
    entries: Mutex<HashMap<String, (Claims, Fingerprint)>>,
}

impl VerifiedTokens {
    /// The claims `token` was verified with, unless it has expired since (then it is forgotten).
    pub(crate) fn get(&self, token: &str, now: i64) -> Option<Claims> {
        let mut entries = self.entries.lock().expect("verified tokens lock");
        let (claims, _) = entries.get(token)?;
        if claims.exp.saturating_add(LEEWAY_SECS as i64) < now {
            entries.remove(token);
            return None;
        }
        Some(claims.clone())
    }

    /// Remembers a token whose signature and claims the key `key` just verified.
    pub(crate) fn insert(&self, token: &str, claims: &Claims, key: Fingerprint) {
        let mut entries = self.entries.lock().expect("verified tokens lock");
        if entries.len() >= CAPACITY {
            entries.clear();
        }
        entries.insert(token.to_owned(), (claims.clone(), key));
    }

    /// Forgets the tokens whose key `keys` no longer holds unchanged.
    pub(crate) fn retain_keys(&self, keys: &KeySet) {
        self.entries.lock().expect("verified tokens lock").retain(|_, (_, key)| keys.holds(key));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(exp: i64) -> Claims {
        Claims { exp, ..Claims::test("bob", 0) }
    }

    #[test]
    fn a_token_is_found_by_its_exact_bytes_until_it_expires() {
        let verified = VerifiedTokens::default();
        verified.insert("a.b.c", &claims(1000), [1; 32]);
        assert_eq!(verified.get("a.b.c", 1000).map(|c| c.exp), Some(1000));
        assert!(verified.get("a.b.C", 1000).is_none(), "another signature");
        assert!(verified.get("a.b.c", 1000 + LEEWAY_SECS as i64).is_some(), "within the leeway");
        assert!(verified.get("a.b.c", 1001 + LEEWAY_SECS as i64).is_none(), "expired");
        assert!(verified.get("a.b.c", 0).is_none(), "and forgotten");
    }

    #[test]
    fn a_new_set_forgets_only_the_tokens_of_keys_it_no_longer_holds() {
        let set = |keys: &[&str]| {
            let n = base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, [0xc5u8; 256]);
            let keys: Vec<_> = keys
                .iter()
                .map(|kid| serde_json::json!({"kty": "RSA", "kid": kid, "n": n, "e": "AQAB"}))
                .collect();
            KeySet::parse(serde_json::json!({ "keys": keys }).to_string().as_bytes()).unwrap()
        };
        let first = set(&["a", "b"]);
        let verified = VerifiedTokens::default();
        verified.insert("by-a", &claims(1000), first.get(Some("a")).unwrap().fingerprint);
        verified.insert("by-b", &claims(1000), first.get(Some("b")).unwrap().fingerprint);
        verified.retain_keys(&set(&["a", "b"]));
        assert!(verified.get("by-a", 0).is_some() && verified.get("by-b", 0).is_some(), "same keys");
        verified.retain_keys(&set(&["a"]));
        assert!(verified.get("by-a", 0).is_some(), "its key is still published");
        assert!(verified.get("by-b", 0).is_none(), "its key was withdrawn");
    }

    #[test]
    fn it_starts_over_when_full() {
        let verified = VerifiedTokens::default();
        for i in 0..CAPACITY {
            verified.insert(&i.to_string(), &claims(1000), [0; 32]);
        }
        assert!(verified.get("0", 0).is_some());
        verified.insert("one more", &claims(1000), [0; 32]);
        assert!(verified.get("0", 0).is_none());
        assert!(verified.get("one more", 0).is_some());
    }
}
