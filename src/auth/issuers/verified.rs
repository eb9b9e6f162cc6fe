//! A published-key issuer's tokens already verified, by their exact bytes. Presenting one again (a
//! reconnect, a second tab, the socket after a page load) skips the public-key arithmetic of the
//! signature check, most of what such a token costs (an RS256 check takes longer than the rest of a
//! handshake). Only that is skipped: `exp` is checked again on every use, and revocations after
//! this, as for any token. Emptied whenever the issuer's keys are fetched anew, so the tokens of a
//! withdrawn key go with it; bounded in size.

use crate::auth::tokens::{Claims, LEEWAY_SECS};
use std::collections::HashMap;
use std::sync::Mutex;

/// Entries kept at most; past it the cache starts over. Tokens are at most 4 KiB.
const CAPACITY: usize = 4096;

#[derive(Default)]
pub(crate) struct VerifiedTokens {
    entries: Mutex<HashMap<String, Claims>>,
}

impl VerifiedTokens {
    /// The claims `token` was verified with, unless it has expired since (then it is forgotten).
    pub(crate) fn get(&self, token: &str, now: i64) -> Option<Claims> {
        let mut entries = self.entries.lock().expect("verified tokens lock");
        let claims = entries.get(token)?;
        if claims.exp.saturating_add(LEEWAY_SECS as i64) < now {
            entries.remove(token);
            return None;
        }
        Some(claims.clone())
    }

    /// Remembers a token whose signature and claims were just verified.
    pub(crate) fn insert(&self, token: &str, claims: &Claims) {
        let mut entries = self.entries.lock().expect("verified tokens lock");
        if entries.len() >= CAPACITY {
            entries.clear();
        }
        entries.insert(token.to_owned(), claims.clone());
    }

    /// Forgets every token: the keys they were verified with may be gone.
    pub(crate) fn clear(&self) {
        self.entries.lock().expect("verified tokens lock").clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::tokens::TokenKind;

    fn claims(exp: i64) -> Claims {
        Claims {
            sub: "bob".into(),
            exp,
            iat: 0,
            nbf: 0,
            jti: "j".into(),
            kind: TokenKind::Access,
            fresh: false,
            iss: "https://id.example/".into(),
            aud: None,
            fam: String::new(),
            csrf: String::new(),
            channels: Vec::new(),
        }
    }

    #[test]
    fn a_token_is_found_by_its_exact_bytes_until_it_expires() {
        let verified = VerifiedTokens::default();
        verified.insert("a.b.c", &claims(1000));
        assert_eq!(verified.get("a.b.c", 1000).map(|c| c.exp), Some(1000));
        assert!(verified.get("a.b.C", 1000).is_none(), "another signature");
        assert!(verified.get("a.b.c", 1000 + LEEWAY_SECS as i64).is_some(), "within the leeway");
        assert!(verified.get("a.b.c", 1001 + LEEWAY_SECS as i64).is_none(), "expired");
        assert!(verified.get("a.b.c", 0).is_none(), "and forgotten");
        verified.insert("a.b.c", &claims(1000));
        verified.clear();
        assert!(verified.get("a.b.c", 0).is_none());
    }

    #[test]
    fn it_starts_over_when_full() {
        let verified = VerifiedTokens::default();
        for i in 0..CAPACITY {
            verified.insert(&i.to_string(), &claims(1000));
        }
        assert!(verified.get("0", 0).is_some());
        verified.insert("one more", &claims(1000));
        assert!(verified.get("0", 0).is_none());
        assert!(verified.get("one more", 0).is_some());
    }
}
