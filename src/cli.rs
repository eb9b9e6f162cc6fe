//! The command line: `serve`, the user commands, and `demo`.

use crate::auth::password;
use crate::auth::tokens::now;
use crate::config::{self, Config, ServeArgs, StoreArgs};
use crate::store::{self, DynStore, StoreError, UserRecord};
use crate::users::{check_field, check_password, check_username};
use anyhow::{bail, Context};
use clap::{Args, Parser, Subcommand};
use serde::Deserialize;
use std::io::{BufRead, IsTerminal};
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "wsguard",
    version,
    about = "OAuth2 + JWT token service and WebSockets bound to their tokens"
)]
pub struct Cli {
    /// Configuration file; flags and WSGUARD_* variables override it
    #[arg(long, global = true, env = "WSGUARD_CONFIG", default_value = "wsguard.toml")]
    config: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server
    Serve(Box<ServeArgs>),
    /// Manage users
    #[command(subcommand)]
    User(UserCommand),
    /// Manage the RS256/ES256/EdDSA signing keys
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Add the demo users johndoe/secret, janedoe/secret2 and alice/secret3 (disabled). Not for production.
    Demo(StoreArgs),
}

/// Where the keys are and how long old ones are kept; as `serve` resolves them.
#[derive(Args)]
struct KeysArgs {
    /// Data folder [default: ./wsguard-data]
    #[arg(long, env = "WSGUARD_DATA_DIR", value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Keys folder [default: <data-dir>/keys]
    #[arg(long, env = "WSGUARD_JWT_KEYS_DIR", value_name = "DIR")]
    jwt_keys_dir: Option<PathBuf>,
    /// Algorithm of the keys [default: the configured one, else that of the newest key]
    #[arg(long, env = "WSGUARD_JWT_ALG", value_name = "ALG", value_parser = config::JWT_ALGS)]
    jwt_alg: Option<String>,
    /// Lifetime of refresh tokens: how long a replaced key still verifies [default: 14d]
    #[arg(long, env = "WSGUARD_REFRESH_TTL", value_parser = humantime::parse_duration)]
    refresh_ttl: Option<std::time::Duration>,
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Add a new signing key; servers sign with it within ~10 s, older keys verify until their
    /// tokens have expired
    Rotate {
        #[command(flatten)]
        keys: KeysArgs,
    },
    /// List the keys: kid, algorithm, created, signing or verifying until when
    List {
        #[command(flatten)]
        keys: KeysArgs,
    },
}

#[derive(Subcommand)]
enum UserCommand {
    /// Add a user; the password is read from a prompt, or from the first line of stdin
    Add {
        username: String,
        #[arg(long)]
        email: Option<String>,
        #[arg(long)]
        full_name: Option<String>,
        /// Create the user disabled
        #[arg(long)]
        disabled: bool,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// List users (never their hashes)
    List {
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Disable a user: logins are refused, tokens stop verifying, live sockets close (4003)
    Disable {
        username: String,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Enable a disabled user
    Enable {
        username: String,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Set a new password (prompt or stdin) and revoke the user's logins
    Passwd {
        username: String,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Import users as JSON lines on stdin: {"username", "hashed_password", "email", "full_name",
    /// "disabled"}, e.g. from a FastAPI app's user table; bcrypt hashes are upgraded on next login
    Import {
        #[command(flatten)]
        store: StoreArgs,
    },
}

impl Cli {
    pub async fn run(self) -> anyhow::Result<()> {
        let explicit = std::env::var_os("WSGUARD_CONFIG").is_some()
            || self.config != std::path::Path::new("wsguard.toml");
        let file = config::read_file(&self.config, explicit)?;
        match self.command {
            Command::Serve(args) => crate::app::serve(Config::resolve(*args, file)?).await,
            Command::User(command) => command.run(file.store).await,
            Command::Keys(command) => command.run(file),
            Command::Demo(args) => demo(args.merge(file.store)).await,
        }
    }
}

async fn open(args: StoreArgs, file: StoreArgs) -> anyhow::Result<DynStore> {
    let args = args.merge(file);
    crate::auth::keys::ensure_data_dir(&args.data_dir())?;
    store::connect(&args.database_url()).await
}

/// A password from a hidden prompt (asked twice), or the first line of piped stdin.
fn read_password() -> anyhow::Result<String> {
    let password = if std::io::stdin().is_terminal() {
        let first = rpassword::prompt_password("Password: ")?;
        let second = rpassword::prompt_password("Repeat password: ")?;
        if first != second {
            bail!("passwords do not match");
        }
        first
    } else {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line)?;
        line.trim_end_matches(['\n', '\r']).to_owned()
    };
    check_password(&password).map_err(anyhow::Error::msg)?;
    Ok(password)
}

fn check_profile(email: Option<&str>, full_name: Option<&str>) -> anyhow::Result<()> {
    if let Some(email) = email {
        check_field("email", email).map_err(anyhow::Error::msg)?;
    }
    if let Some(name) = full_name {
        check_field("full name", name).map_err(anyhow::Error::msg)?;
    }
    Ok(())
}

fn created(result: Result<(), StoreError>, username: &str) -> anyhow::Result<()> {
    match result {
        Err(StoreError::Conflict) => bail!("user {username} already exists"),
        other => other.with_context(|| format!("adding {username}")),
    }
}

impl UserCommand {
    async fn run(self, file: StoreArgs) -> anyhow::Result<()> {
        match self {
            UserCommand::Add { username, email, full_name, disabled, store } => {
                check_username(&username).map_err(anyhow::Error::msg)?;
                check_profile(email.as_deref(), full_name.as_deref())?;
                let store = open(store, file).await?;
                if store.user(&username).await?.is_some() {
                    bail!("user {username} already exists");
                }
                let password = read_password()?;
                let user = UserRecord {
                    username: username.clone(),
                    email,
                    full_name,
                    password_hash: password::hash(&password),
                    disabled,
                };
                created(store.create_user(&user).await, &username)?;
                println!("added {username}");
            }
            UserCommand::List { store } => {
                let store = open(store, file).await?;
                for user in store.list_users().await? {
                    println!(
                        "{}\t{}\t{}\t{}",
                        user.username,
                        if user.disabled { "disabled" } else { "active" },
                        user.email.unwrap_or_default(),
                        user.full_name.unwrap_or_default()
                    );
                }
            }
            UserCommand::Disable { username, store } => {
                let store = open(store, file).await?;
                if !store.set_disabled(&username, true).await? {
                    bail!("no user {username}");
                }
                let revoked = store.revoke_user(&username, now()).await?;
                println!("disabled {username} ({} logins revoked)", revoked.len());
            }
            UserCommand::Enable { username, store } => {
                let store = open(store, file).await?;
                if !store.set_disabled(&username, false).await? {
                    bail!("no user {username}");
                }
                println!("enabled {username}");
            }
            UserCommand::Passwd { username, store } => {
                let store = open(store, file).await?;
                if store.user(&username).await?.is_none() {
                    bail!("no user {username}");
                }
                let password = read_password()?;
                store.set_password_hash(&username, &password::hash(&password)).await?;
                let revoked = store.revoke_user(&username, now()).await?;
                println!("password changed for {username} ({} logins revoked)", revoked.len());
            }
            UserCommand::Import { store } => {
                let store = open(store, file).await?;
                let mut added = 0;
                for (number, line) in std::io::stdin().lock().lines().enumerate() {
                    let line = line?;
                    if line.trim().is_empty() {
                        continue;
                    }
                    let user = import_line(&line).with_context(|| format!("line {}", number + 1))?;
                    created(store.create_user(&user).await, &user.username)?;
                    added += 1;
                }
                println!("imported {added} users");
            }
        }
        Ok(())
    }
}

impl KeysCommand {
    fn run(self, file: ServeArgs) -> anyhow::Result<()> {
        use crate::auth::keyring::{self, KeyState};
        let (KeysCommand::Rotate { keys: args } | KeysCommand::List { keys: args }) = &self;
        let data_dir =
            StoreArgs { data_dir: args.data_dir.clone(), database_url: None }.merge(file.store).data_dir();
        let dir = args
            .jwt_keys_dir
            .clone()
            .or(file.jwt_keys_dir)
            .unwrap_or_else(|| data_dir.join(keyring::KEYS_DIR));
        let refresh_ttl =
            args.refresh_ttl.or(file.refresh_ttl).unwrap_or(std::time::Duration::from_secs(14 * 24 * 3600));
        let found = keyring::scan(&dir)?;
        let alg = match args.jwt_alg.clone().or(file.jwt_alg) {
            Some(name) => config::parse_jwt_alg(&name)?,
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ImportedUser {
    username: String,
    hashed_password: String,
    email: Option<String>,
    full_name: Option<String>,
    #[serde(default)]
    disabled: Option<bool>,
}

fn import_line(line: &str) -> anyhow::Result<UserRecord> {
    let user: ImportedUser = serde_json::from_str(line)?;
    check_username(&user.username).map_err(anyhow::Error::msg)?;
    check_profile(user.email.as_deref(), user.full_name.as_deref())?;
    let hash = &user.hashed_password;
    if !(hash.starts_with("$2b$")
        || hash.starts_with("$2a$")
        || hash.starts_with("$2y$")
        || hash.starts_with("$argon2"))
    {
        bail!("{}: hashed_password must be a bcrypt or argon2 hash", user.username);
    }
    Ok(UserRecord {
        username: user.username,
        email: user.email,
        full_name: user.full_name,
        password_hash: user.hashed_password,
        disabled: user.disabled.unwrap_or(false),
    })
}

async fn demo(args: StoreArgs) -> anyhow::Result<()> {
    eprintln!(
        "WARNING: adding demo users with well-known passwords. Never do this on a server others can reach."
    );
    crate::auth::keys::ensure_data_dir(&args.data_dir())?;
    let store = store::connect(&args.database_url()).await?;
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
        };
        store.create_user(&user).await?;
        println!("added {username} / {secret}{}", if disabled { " (disabled)" } else { "" });
    }
    Ok(())
}
