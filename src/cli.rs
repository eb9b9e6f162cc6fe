//! The command line: `serve`, the user commands, and `demo`.

use crate::auth::password;
use crate::auth::tokens::now;
use crate::config::{self, Config, ServeArgs, StoreArgs};
use crate::store::{self, DynStore, StoreError, UserRecord};
use crate::users::{check_field, check_password, check_username};
use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
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
    /// Add the demo users johndoe/secret, janedoe/secret2 and alice/secret3 (disabled). Not for production.
    Demo(StoreArgs),
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
