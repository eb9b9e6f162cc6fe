//! `wsguard user`: users from the command line. Revocations go to the log; running nodes apply
//! them within a second.

use crate::auth::credentials::{check_field, check_password, check_username};
use crate::auth::{logins, password};
use crate::config::{Sections, StoreSettings, TokenSettings};
use crate::store::{self, AuditEntry, DynStore, Store, StoreError, UserRecord};
use anyhow::{bail, Context};
use clap::Subcommand;
use serde::Deserialize;
use std::io::{BufRead, IsTerminal};

#[derive(Subcommand)]
pub(super) enum UserCommand {
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
        /// Give the user the admin role (the admin console at /admin)
        #[arg(long)]
        admin: bool,
        #[command(flatten)]
        store: StoreSettings,
    },
    /// Grant (--on) or withdraw (--off) the admin role. The admin console and API read it on every
    /// request: a withdrawal takes effect at the user's next request. Recorded in the audit log
    Admin {
        username: String,
        /// Grant the role
        #[arg(long, conflicts_with = "off", required_unless_present = "off")]
        on: bool,
        /// Withdraw the role
        #[arg(long)]
        off: bool,
        #[command(flatten)]
        store: StoreSettings,
    },
    /// List users (never their hashes): name, active or disabled, email, full name, admin or -
    List {
        #[command(flatten)]
        store: StoreSettings,
    },
    /// Disable a user: logins are refused, tokens stop verifying, live sockets close (4003)
    Disable {
        username: String,
        #[command(flatten)]
        store: StoreSettings,
    },
    /// Enable a disabled user
    Enable {
        username: String,
        #[command(flatten)]
        store: StoreSettings,
    },
    /// Revoke every token of a user issued before now, wsguard's and trusted issuers': refused
    /// everywhere, their sockets closed (4003) on every node within a second, their logins ended.
    /// Works for users without a row (a trusted issuer's). Reads the same --refresh-ttl and
    /// [[trusted_issuers]] as `serve`: the revocation lasts as long as such a token may live
    Revoke {
        username: String,
        #[command(flatten)]
        store: StoreSettings,
        #[command(flatten)]
        tokens: TokenSettings,
    },
    /// Set a new password (prompt or stdin) and revoke the user's logins
    Passwd {
        username: String,
        #[command(flatten)]
        store: StoreSettings,
    },
    /// Import users as JSON lines on stdin: {"username", "hashed_password", "email", "full_name",
    /// "disabled"}, e.g. from a FastAPI app's user table; bcrypt hashes are upgraded on next login
    Import {
        #[command(flatten)]
        store: StoreSettings,
    },
}

/// Opens the store the settings name, creating the data folder first.
pub(super) async fn open(settings: &StoreSettings) -> anyhow::Result<DynStore> {
    crate::config::ensure_data_dir(&settings.data_dir)?;
    store::connect(&settings.database_url()).await
}

/// One record of a list command: its fields on a line, tab-separated.
pub(super) fn print_row<const N: usize>(fields: [&str; N]) {
    println!("{}", fields.join("\t"));
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
    /// Runs the command; `sections` are the configuration file's (its trusted issuers).
    // Long: one arm per command, each short.
    pub(super) async fn run(self, sections: &Sections) -> anyhow::Result<()> {
        match self {
            UserCommand::Add { username, email, full_name, disabled, admin, store } => {
                check_username(&username).map_err(anyhow::Error::msg)?;
                check_profile(email.as_deref(), full_name.as_deref())?;
                let store = open(&store).await?;
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
                    admin,
                };
                created(store.create_user(&user).await, &username)?;
                if admin {
                    audit_role(store.as_ref(), &username, true).await?;
                }
                println!("added {username}{}", if admin { " (admin)" } else { "" });
            }
            UserCommand::Admin { username, on, off: _, store } => {
                let store = open(&store).await?;
                if !store.set_admin(&username, on).await? {
                    bail!("no user {username}");
                }
                audit_role(store.as_ref(), &username, on).await?;
                println!(
                    "{} the admin role {} {username}",
                    if on { "granted" } else { "withdrew" },
                    if on { "to" } else { "from" }
                );
            }
            UserCommand::List { store } => {
                let store = open(&store).await?;
                for user in store.list_users().await? {
                    print_row([
                        &user.username,
                        if user.disabled { "disabled" } else { "active" },
                        user.email.as_deref().unwrap_or_default(),
                        user.full_name.as_deref().unwrap_or_default(),
                        if user.admin { "admin" } else { "-" },
                    ]);
                }
            }
            UserCommand::Disable { username, store } => {
                let store = open(&store).await?;
                if !store.set_disabled(&username, true).await? {
                    bail!("no user {username}");
                }
                let revoked = logins::end_all(store.as_ref(), None, &username).await?;
                println!("disabled {username} ({revoked} logins revoked)");
            }
            UserCommand::Enable { username, store } => {
                let store = open(&store).await?;
                if !store.set_disabled(&username, false).await? {
                    bail!("no user {username}");
                }
                println!("enabled {username}");
            }
            UserCommand::Revoke { username, store, tokens } => {
                check_username(&username).map_err(anyhow::Error::msg)?;
                let store = open(&store).await?;
                let longest = sections.trusted_issuers.iter().map(|i| i.max_token_lifetime).max();
                let window = logins::user_revocation_window(tokens.refresh_ttl, longest.unwrap_or_default());
                let revoked = logins::log_user_revocation(store.as_ref(), None, &username, window).await?;
                println!(
                    "revoked {username}: tokens issued before {} refused until {} ({} logins ended); \
                     their sockets close within a second on every node",
                    stamp(revoked.issued_before),
                    stamp(revoked.until),
                    revoked.logins
                );
            }
            UserCommand::Passwd { username, store } => {
                let store = open(&store).await?;
                if store.user(&username).await?.is_none() {
                    bail!("no user {username}");
                }
                let password = read_password()?;
                let hash = password::hash(&password);
                let Some(revoked) = logins::change_password(store.as_ref(), None, &username, &hash).await?
                else {
                    bail!("no user {username}");
                };
                println!("password changed for {username} ({revoked} logins revoked)");
            }
            UserCommand::Import { store } => {
                let store = open(&store).await?;
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

/// Records a role change made here in the audit log, as the console's actions are.
async fn audit_role(store: &dyn Store, username: &str, granted: bool) -> anyhow::Result<()> {
    let entry = AuditEntry {
        id: 0,
        at_ms: crate::clock::now_ms(),
        actor: "cli".into(),
        via: "cli".into(),
        action: if granted { "admin.grant" } else { "admin.withdraw" }.into(),
        target: username.into(),
        address: "local".into(),
        detail: String::new(),
    };
    store.append_audit(&entry).await.context("recording the role change in the audit log")?;
    Ok(())
}

/// Unix seconds as RFC 3339, for what the commands print.
fn stamp(at: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(at)
        .ok()
        .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_else(|| at.to_string())
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
        admin: false,
    })
}
