//! The schema's migrations: the ones this binary carries (`migrations/<database>/`), and which of
//! them a database has applied, read without changing anything (`wsguard migrate --check`,
//! `wsguard doctor`). Applying them is opening the store ([`super::connect`]), as `serve` does.

use anyhow::Context;
use sqlx::migrate::Migrator;
use sqlx::{Connection, Row};
use std::str::FromStr;
use std::time::Duration;

pub(super) static SQLITE: Migrator = sqlx::migrate!("migrations/sqlite");
pub(super) static POSTGRES: Migrator = sqlx::migrate!("migrations/postgres");

/// Where one migration this binary knows stands in a database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Applied,
    Pending,
    /// Started and never finished (sqlx marks it so): the schema is half way.
    Failed,
    /// Applied from a different file than this binary's: someone edited one of them.
    Changed,
}

/// One migration: `0008_webhooks`, as its file is named.
#[derive(Debug, Clone)]
pub struct Migration {
    pub name: String,
    pub state: State,
}

/// What a database has applied, against what this binary knows.
#[derive(Debug, Clone)]
pub struct Status {
    /// Every migration of this binary, in order.
    pub known: Vec<Migration>,
    /// Versions the database applied that this binary does not have: a newer wsguard ran on it.
    pub unknown: Vec<String>,
    /// False for a SQLite file not made yet (every migration pending).
    pub exists: bool,
}

impl Status {
    pub fn count(&self, state: State) -> usize {
        self.known.iter().filter(|m| m.state == state).count()
    }

    /// Whether `serve` would start on this database without applying anything.
    pub fn up_to_date(&self) -> bool {
        self.unknown.is_empty() && self.known.iter().all(|m| m.state == State::Applied)
    }
}

/// The name of a migration as its file has it (sqlx turns the `_` of descriptions into spaces).
fn file_name(version: i64, description: &str) -> String {
    format!("{version:04}_{}", description.replace(' ', "_"))
}

/// A row of sqlx's `_sqlx_migrations`.
struct Applied {
    version: i64,
    description: String,
    success: bool,
    checksum: Vec<u8>,
}

/// Reads which migrations the database at `url` applied, within `timeout` to connect. Creates
/// nothing: a SQLite file that does not exist is reported as such.
pub async fn status(url: &str, timeout: Duration) -> anyhow::Result<Status> {
    let (migrator, applied) = if url.starts_with("sqlite:") {
        let options = sqlx::sqlite::SqliteConnectOptions::from_str(url)?.create_if_missing(false);
        let file = options.get_filename();
        if !url.contains(":memory:") && !file.exists() {
            return Ok(compare(&SQLITE, Vec::new(), false));
        }
        let mut db = within(timeout, sqlx::SqliteConnection::connect_with(&options)).await?;
        let table = "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = '_sqlx_migrations'";
        let exists: i64 = sqlx::query_scalar(table).fetch_one(&mut db).await?;
        let rows = if exists > 0 { sqlx::query(APPLIED).fetch_all(&mut db).await? } else { Vec::new() };
        (&SQLITE, rows.iter().map(applied).collect::<sqlx::Result<_>>()?)
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let options = sqlx::postgres::PgConnectOptions::from_str(url).context("invalid PostgreSQL URL")?;
        let mut db = within(timeout, sqlx::PgConnection::connect_with(&options)).await?;
        // to_regclass follows the search path, as the migrations do.
        let table: Option<String> =
            sqlx::query_scalar("SELECT to_regclass('_sqlx_migrations')::text").fetch_one(&mut db).await?;
        let rows = if table.is_some() { sqlx::query(APPLIED).fetch_all(&mut db).await? } else { Vec::new() };
        (&POSTGRES, rows.iter().map(applied).collect::<sqlx::Result<_>>()?)
    } else {
        return Err(super::unsupported(url));
    };
    Ok(compare(migrator, applied, true))
}

const APPLIED: &str = "SELECT version, description, success, checksum FROM _sqlx_migrations ORDER BY version";

fn applied<R: Row>(row: &R) -> sqlx::Result<Applied>
where
    for<'r> i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> bool: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> Vec<u8>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> &'r str: sqlx::ColumnIndex<R>,
{
    Ok(Applied {
        version: row.try_get("version")?,
        description: row.try_get("description")?,
        success: row.try_get("success")?,
        checksum: row.try_get("checksum")?,
    })
}

async fn within<T>(
    timeout: Duration,
    connecting: impl std::future::Future<Output = sqlx::Result<T>>,
) -> anyhow::Result<T> {
    match tokio::time::timeout(timeout, connecting).await {
        Ok(result) => Ok(result?),
        Err(_) => anyhow::bail!("no answer within {} s", timeout.as_secs_f32()),
    }
}

fn compare(migrator: &Migrator, applied: Vec<Applied>, exists: bool) -> Status {
    let known = migrator
        .iter()
        .map(|migration| {
            let state = match applied.iter().find(|a| a.version == migration.version) {
                None => State::Pending,
                Some(a) if !a.success => State::Failed,
                Some(a) if a.checksum != *migration.checksum => State::Changed,
                Some(_) => State::Applied,
            };
            Migration { name: file_name(migration.version, &migration.description), state }
        })
        .collect();
    let unknown = applied
        .iter()
        .filter(|a| migrator.iter().all(|m| m.version != a.version))
        .map(|a| file_name(a.version, &a.description))
        .collect();
    Status { known, unknown, exists }
}
