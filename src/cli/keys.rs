//! `wsguard keys`: the RS256/ES256/EdDSA signing keys in the keys folder.

use crate::auth::keyring::{self, KeyState};
use crate::clock::now_secs as now;
use crate::config::{SigningSettings, StoreSettings, TokenSettings};
use anyhow::{bail, Context};
use clap::{Args, Subcommand};

/// Where the keys are and how long old ones are kept: the same settings as `serve`'s.
#[derive(Args)]
pub(super) struct KeysSettings {
    #[command(flatten)]
    store: StoreSettings,
    #[command(flatten)]
    signing: SigningSettings,
    #[command(flatten)]
    tokens: TokenSettings,
}

#[derive(Subcommand)]
pub(super) enum KeysCommand {
    /// Add a new signing key; servers sign with it within ~10 s, older keys verify until their
    /// tokens have expired
    Rotate {
        #[command(flatten)]
        keys: KeysSettings,
    },
    /// List the keys: kid, algorithm, created, signing or verifying until when
    List {
        #[command(flatten)]
        keys: KeysSettings,
    },
}

impl KeysCommand {
    pub(super) fn run(self) -> anyhow::Result<()> {
        let (KeysCommand::Rotate { keys } | KeysCommand::List { keys }) = &self;
        let dir = keys.signing.keys_dir(&keys.store.data_dir);
        let refresh_ttl = keys.tokens.refresh_ttl;
        let found = keyring::scan(&dir)?;
        let alg = match keys.signing.jwt_alg {
            Some(alg) => alg.into(),
            None => match found.last() {
                Some(newest) => newest.alg,
                None => bail!("no keys in {}; give the algorithm with --jwt-alg", dir.display()),
            },
        };
        if !keyring::is_asymmetric(alg) {
            bail!("HS256 has one secret, not keys: rotate it by replacing --jwt-secret-file");
        }
        match self {
            KeysCommand::Rotate { .. } => {
                let key = keyring::generate(&dir, alg)?;
                // Keys no server verifies with any more: their tokens have all expired.
                for (old, state) in keyring::states(&keyring::scan(&dir)?, alg, refresh_ttl, now()) {
                    if state == KeyState::Expired {
                        std::fs::remove_file(&old.path)
                            .with_context(|| format!("removing {}", old.path.display()))?;
                        println!("removed expired key {}", old.kid);
                    }
                }
                println!("added {} ({alg:?}); servers sign with it within 10 s", key.kid);
            }
            KeysCommand::List { .. } => {
                let stamp = |t: i64| {
                    time::OffsetDateTime::from_unix_timestamp(t)
                        .ok()
                        .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
                        .unwrap_or_else(|| t.to_string())
                };
                for (key, state) in keyring::states(&found, alg, refresh_ttl, now()) {
                    let state = match state {
                        KeyState::Signing => "signing".to_owned(),
                        KeyState::Verifying(until) => format!("verifying until {}", stamp(until)),
                        KeyState::Expired => "expired".to_owned(),
                    };
                    println!("{}\t{:?}\t{}\t{state}", key.kid, key.alg, stamp(key.created));
                }
            }
        }
        Ok(())
    }
}
