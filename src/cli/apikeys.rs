//! `wsguard apikey`: the server API's keys from the command line. `add` prints the new key, and
//! nothing else, on stdout (`KEY=$(wsguard apikey add …)`): it is shown this once, only its hash
//! is kept. Running nodes take up an added or revoked key within a second or two.

use super::users::{open, print_row};
use crate::auth::api_keys::{check_name, digest_hex, generate, Scope, Scopes};
use crate::clock::now_secs as now;
use crate::config::StoreSettings;
use crate::store::{ApiKeyRecord, StoreError};
use anyhow::{bail, Context};
use clap::Subcommand;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

#[derive(Subcommand)]
pub(super) enum ApiKeyCommand {
    /// Add a key and print it, alone, on stdout: it is shown this once (only its hash is stored)
    Add {
        name: String,
        /// What the key may do, comma-separated: publish, disconnect, read, admin
        #[arg(long, value_delimiter = ',', required = true, value_name = "SCOPES")]
        scopes: Vec<Scope>,
        #[command(flatten)]
        store: StoreSettings,
    },
    /// List keys: name, scopes, created, last used (to the minute); never a key or its hash
    List {
        #[command(flatten)]
        store: StoreSettings,
    },
    /// Revoke a key: every node refuses it within a second or two
    Revoke {
        name: String,
        #[command(flatten)]
        store: StoreSettings,
    },
}

/// Unix seconds as RFC 3339 UTC.
fn date(secs: i64) -> String {
    OffsetDateTime::from_unix_timestamp(secs).ok().and_then(|t| t.format(&Rfc3339).ok()).unwrap_or_default()
}

impl ApiKeyCommand {
    pub(super) async fn run(self) -> anyhow::Result<()> {
        match self {
            ApiKeyCommand::Add { name, scopes, store } => {
                check_name(&name).map_err(anyhow::Error::msg)?;
                let scopes: Scopes = scopes.into_iter().collect();
                let store = open(&store).await?;
                let key = generate();
                let record = ApiKeyRecord {
                    name: name.clone(),
                    key_hash: digest_hex(&key),
                    scopes: scopes.names(),
                    created_at: now(),
                    last_used_at: None,
                };
                match store.create_api_key(&record).await {
                    Err(StoreError::Conflict) => bail!("API key {name} already exists"),
                    other => other.with_context(|| format!("adding API key {name}"))?,
                }
                println!("{key}");
                eprintln!(
                    "added API key {name} (scopes: {}); the key above is shown this once",
                    record.scopes.join(",")
                );
            }
            ApiKeyCommand::List { store } => {
                let store = open(&store).await?;
                for key in store.api_keys().await? {
                    print_row([
                        &key.name,
                        &key.scopes.join(","),
                        &date(key.created_at),
                        &key.last_used_at.map_or_else(|| "never".to_owned(), date),
                    ]);
                }
            }
            ApiKeyCommand::Revoke { name, store } => {
                let store = open(&store).await?;
                if !store.delete_api_key(&name).await? {
                    bail!("no API key {name}");
                }
                println!("revoked API key {name}");
            }
        }
        Ok(())
    }
}
