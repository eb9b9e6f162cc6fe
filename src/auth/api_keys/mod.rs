//! Server-API keys: what a key is, how it is kept, the scopes it grants, this node's copy of the
//! key table ([`ApiKeys`], reread every second) and each key's request budget ([`Budgets`]).
//!
//! A key is `wsg_` and 32 random bytes in base64url: 256 bits from the OS's generator. Only its
//! SHA-256 is stored. A fast hash is right here, unlike for passwords: a password hash must be slow
//! because passwords are guessable, but no amount of hashing speed makes a 256-bit random value
//! guessable, and a slow hash would cost every API call for nothing.

mod budget;
mod table;

use crate::auth::credentials::check_plain_name;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
pub(crate) use budget::Budgets;
use rand::RngCore;
use sha2::{Digest, Sha256};
use std::fmt;
pub(crate) use table::{ApiKeys, Caller};

/// What every key starts with: tells a leaked key for what it is (secret scanners, logs).
pub(crate) const KEY_PREFIX: &str = "wsg_";
/// Longest key name.
pub(crate) const MAX_NAME_CHARS: usize = 64;

/// What a key may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, clap::ValueEnum)]
pub(crate) enum Scope {
    /// Publish to channels.
    Publish,
    /// Disconnect users and revoke their tokens.
    Disconnect,
    /// Read channels, presence and history.
    Read,
    /// The admin API (`/api/admin/*`): everything the admin console shows and does, audited.
    Admin,
}

impl Scope {
    pub(crate) const ALL: [Scope; 4] = [Scope::Publish, Scope::Disconnect, Scope::Read, Scope::Admin];

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Scope::Publish => "publish",
            Scope::Disconnect => "disconnect",
            Scope::Read => "read",
            Scope::Admin => "admin",
        }
    }

    fn bit(self) -> u8 {
        1 << self as u8
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A set of scopes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Scopes(u8);

impl Scopes {
    pub(crate) fn contains(self, scope: Scope) -> bool {
        self.0 & scope.bit() != 0
    }

    pub(crate) fn iter(self) -> impl Iterator<Item = Scope> {
        Scope::ALL.into_iter().filter(move |scope| self.contains(*scope))
    }

    /// The scopes among `names`; names of no scope (written by a later version) grant nothing.
    pub(crate) fn from_names<'a>(names: impl IntoIterator<Item = &'a str>) -> Scopes {
        let bits = names
            .into_iter()
            .filter_map(|name| Scope::ALL.into_iter().find(|scope| scope.as_str() == name))
            .fold(0, |bits, scope| bits | scope.bit());
        Scopes(bits)
    }

    /// The names, in the order of [`Scope::ALL`].
    pub(crate) fn names(self) -> Vec<String> {
        self.iter().map(|scope| scope.as_str().to_owned()).collect()
    }
}

impl FromIterator<Scope> for Scopes {
    fn from_iter<I: IntoIterator<Item = Scope>>(scopes: I) -> Self {
        Scopes(scopes.into_iter().fold(0, |bits, scope| bits | scope.bit()))
    }
}

/// A new key, from the OS's random generator.
pub(crate) fn generate() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    format!("{KEY_PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes))
}

/// The key's SHA-256: what is stored, and what a presented key is compared by.
pub(crate) fn digest(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

/// [`digest`] in lowercase hex, as the store keeps it.
pub(crate) fn digest_hex(key: &str) -> String {
    hex::encode(digest(key))
}

/// 1-64 of `[A-Za-z0-9_.-]`: names appear in logs and metric labels as they are.
pub(crate) fn check_name(name: &str) -> Result<(), String> {
    check_plain_name(name, MAX_NAME_CHARS, "API key names")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_random_256_bit_and_prefixed() {
        let (a, b) = (generate(), generate());
        assert_ne!(a, b);
        assert!(a.starts_with(KEY_PREFIX));
        let bytes = URL_SAFE_NO_PAD.decode(&a[KEY_PREFIX.len()..]).unwrap();
        assert_eq!(bytes.len(), 32);
        assert_eq!(digest_hex(&a).len(), 64);
        assert_eq!(digest_hex(&a), digest_hex(&a.clone()));
    }

    #[test]
    fn names_are_checked() {
        for good in ["backend", "a", "billing-v2.prod_1", &"x".repeat(64)] {
            assert!(check_name(good).is_ok(), "{good}");
        }
        for bad in ["", "with space", "tab\t", "é", "a/b", "a,b", &"x".repeat(65)] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn scopes_round_trip_and_unknown_names_grant_nothing() {
        let scopes = Scopes::from_names(["read", "publish", "superuser"]);
        assert!(scopes.contains(Scope::Read) && scopes.contains(Scope::Publish));
        assert!(!scopes.contains(Scope::Disconnect) && !scopes.contains(Scope::Admin));
        assert_eq!(scopes.names(), ["publish", "read"]);
        assert_eq!(Scopes::from_names(["everything"]), Scopes::default());
        assert_eq!([Scope::Read, Scope::Read].into_iter().collect::<Scopes>(), Scopes::from_names(["read"]));
    }
}
