//! The command line: `serve`, `doctor` and `migrate`, the user and key commands, the server API's
//! keys, and `demo`.

mod apikeys;
mod doctor;
mod keys;
mod migrate;
mod users;

use crate::auth::password;
use crate::config::{Config, StoreSettings};
use crate::store::UserRecord;
use clap::{Parser, Subcommand};
use std::ffi::OsString;
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "wsguard",
    version,
    about = "OAuth2 + JWT token service and WebSockets bound to their tokens"
)]
struct Cli {
    /// Configuration file; flags and WSGUARD_* variables override it
    #[arg(long, global = true, env = "WSGUARD_CONFIG", default_value = "wsguard.toml")]
    config: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server
    #[command(after_help = MORE_SETTINGS)]
    Serve(Box<Config>),
    /// Check a configuration without serving (the same file, variables and flags as `serve`):
    /// files and their modes, the database and its migrations, Redis, trusted issuers' keys, the
    /// application's URLs, the address; one line per check. Exit status 1 on a problem
    #[command(after_help = MORE_SETTINGS)]
    Doctor(Box<Config>),
    /// Apply the database's pending migrations (`serve` applies them at start too); with
    /// --check, only list them. Forward only: back the database up first
    Migrate(migrate::MigrateCommand),
    /// Manage users
    #[command(subcommand)]
    User(users::UserCommand),
    /// Manage the RS256/ES256/EdDSA signing keys
    #[command(subcommand)]
    Keys(keys::KeysCommand),
    /// Manage the server API's keys (for application backends)
    #[command(subcommand, name = "apikey")]
    ApiKey(apikeys::ApiKeyCommand),
    /// Add the demo users johndoe/secret, janedoe/secret2 and alice/secret3 (disabled). Not for production.
    Demo(StoreSettings),
}

/// What `serve --help` cannot list as flags.
const MORE_SETTINGS: &str = "Also read: WSGUARD_LOG (log filter, e.g. debug or wsguard=debug), \
WSGUARD_LOG_FORMAT=json (one JSON object per line), and the configuration file's tables, which no \
flag carries: [[namespaces]], [[trusted_issuers]], [proxy], [webhooks] (README, Configuration). \
Every flag is also a key of the file: access_ttl = \"5m\".";

/// Runs the command `args` (the process's arguments) names.
pub async fn run(args: Vec<OsString>) -> anyhow::Result<()> {
    let (cli, sections): (Cli, _) = crate::config::parse(args)?;
    match cli.command {
        Command::Serve(mut config) => {
            config.sections = sections;
            crate::server::serve(*config).await
        }
        Command::Doctor(mut config) => {
            config.sections = sections;
            doctor::run(*config, &cli.config).await
        }
        Command::Migrate(command) => command.run().await,
        Command::User(command) => command.run(&sections).await,
        Command::Keys(command) => command.run(),
        Command::ApiKey(command) => command.run().await,
        Command::Demo(settings) => demo(settings).await,
    }
}

async fn demo(settings: StoreSettings) -> anyhow::Result<()> {
    eprintln!(
        "WARNING: adding demo users with well-known passwords. Never do this on a server others can reach."
    );
    let store = users::open(&settings).await?;
    let users = [
        ("johndoe", "secret", "John Doe", false),
        ("janedoe", "secret2", "Jane Doe", false),
        ("alice", "secret3", "Alice Disabled", true),
    ];
    for (username, secret, full_name, disabled) in users {
        if store.user(username).await?.is_some() {
            println!("{username} exists, left as it is");
            continue;
        }
        let user = UserRecord {
            username: username.into(),
            email: Some(format!("{username}@example.com")),
            full_name: Some(full_name.into()),
            password_hash: password::hash(secret),
            disabled,
            admin: false,
        };
        store.create_user(&user).await?;
        println!("added {username} / {secret}{}", if disabled { " (disabled)" } else { "" });
    }
    Ok(())
}
