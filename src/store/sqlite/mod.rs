//! The default store: one SQLite file in the data folder, in WAL mode so the CLI can write while
//! the server runs. The file and its `-wal` and `-shm` companions are private (0600), whatever
//! the folder's mode and the umask: they hold password hashes and chat history.

mod writer;

use super::group_commit::PublicationWriter;
use super::sql::Backend;
use super::SqliteStore;
use crate::private_files;
use anyhow::Context;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteQueryResult, SqliteSynchronous,
};
use sqlx::{Sqlite, SqliteConnection};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

impl Backend for Sqlite {
    fn rows_affected(done: &SqliteQueryResult) -> u64 {
        done.rows_affected()
    }

    /// Nothing to do: SQLite has one writer at a time, so log ids become visible in order.
    fn lock_revocation_log(_: &mut SqliteConnection) -> impl Future<Output = sqlx::Result<()>> + Send {
        std::future::ready(Ok(()))
    }

    /// One writer at a time already; a write first takes the write lock, so that the reads after
    /// it cannot be outdated by another connection's write (which SQLite would refuse to upgrade).
    fn lock_webhooks(connection: &mut SqliteConnection) -> impl Future<Output = sqlx::Result<()>> + Send {
        let write = sqlx::query("UPDATE webhook_lease SET until_ms = until_ms WHERE name = ''");
        async move { write.execute(connection).await.map(drop) }
    }
}

impl SqliteStore {
    pub async fn connect(url: &str) -> anyhow::Result<Self> {
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(5))
            .foreign_keys(true);
        let file = database_file(url, &options);
        let read_only = url.contains("mode=ro");
        if let Some(file) = &file {
            make_private(file, !read_only)?;
        }
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .acquire_timeout(Duration::from_secs(5))
            .connect_with(options.clone())
            .await?;
        super::migrations::SQLITE.run(&pool).await?;
        if let Some(file) = &file {
            // SQLite creates its companions with the database file's mode; ones left behind with
            // another mode (by a crash, or an older version) are tightened now they are open.
            for suffix in ["-wal", "-shm", "-journal"] {
                let mut companion = file.as_os_str().to_owned();
                companion.push(suffix);
                tighten_logged(Path::new(&companion));
            }
        }
        let target =
            writer::Target { filename: options.get_filename(), in_memory: file.is_none(), read_only };
        let writer = writer::Writer::open(&target).context("opening the publication writer")?;
        Ok(SqliteStore { publications: PublicationWriter::start(writer), pool })
    }
}

/// The database file `url` names, unless the database lives in memory.
fn database_file(url: &str, options: &SqliteConnectOptions) -> Option<PathBuf> {
    if url.contains(":memory:") || url.contains("mode=memory") {
        return None;
    }
    Some(options.get_filename().to_owned())
}

/// Creates the database file empty with mode 0600 before SQLite opens it (SQLite would create it
/// with the umask's mode, typically 0644), or tightens an existing one to 0600.
fn make_private(file: &Path, create: bool) -> anyhow::Result<()> {
    if create
        && private_files::create_owner_only(file).with_context(|| format!("creating {}", file.display()))?
    {
        return Ok(());
    }
    tighten_logged(file);
    Ok(())
}

/// Sets `path` to 0600 if group or others had access, and says so. A file wsguard may not chmod
/// (another owner) is left as it is, with a warning.
fn tighten_logged(path: &Path) {
    match private_files::tighten(path) {
        Ok(Some(was)) => tracing::warn!(
            path = %path.display(),
            was = format!("{was:03o}"),
            "the database file was open to group or others; tightened to 0600"
        ),
        Ok(None) => {}
        Err(err) => tracing::warn!(
            path = %path.display(),
            error = %err,
            "the database file is open to group or others and could not be made private; `chmod 600` it"
        ),
    }
}
