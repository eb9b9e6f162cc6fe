//! SQLite's publication writer: each batch's transaction (see `group_commit`) runs synchronously
//! on a connection of its own (rusqlite), right where the group-commit task is. sqlx's SQLite
//! driver would hand every statement of the batch to a worker thread and back, each hand-off
//! waiting for a core on a busy machine, where the statements themselves take microseconds: in
//! WAL mode with `synchronous = NORMAL` a commit appends to the log and does not sync.
//!
//! The two things that could block are kept off the task. The write lock held by another
//! connection (the server's pool, the CLI, another process) sends the batch to a blocking thread
//! that waits for it. The log's checkpoints, which sync, run on a blocking thread through a second
//! connection while the writer goes on. A checkpoint racing the writer copies most of the log but
//! never all of it, and only a log copied to its end starts over: when the log has grown past a
//! bound anyway, or a checkpoint falls far behind the commits (a machine too busy to run it), the
//! next batch waits for one more checkpoint, short since the earlier ones did the copying.

use super::super::group_commit::BatchWrite;
use super::super::numbering::{bumps, number, Request};
use super::super::{Position, StoreError, StoreResult};
use async_trait::async_trait;
use rusqlite::{Connection, OpenFlags, TransactionBehavior};
use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::task::JoinHandle;

/// How long a batch waits for a write lock held elsewhere, as the server's pool does.
const LOCK_WAIT: Duration = Duration::from_secs(5);
/// Commits between checkpoints, at most: with a few pages each, about SQLite's own default of
/// 1,000 pages.
const CHECKPOINT_COMMITS: u32 = 256;
/// Bytes of publications between checkpoints, at most.
const CHECKPOINT_BYTES: usize = 4 << 20;
/// Pages in the log past which the writer pauses for a checkpoint, so that the log starts over
/// (16 MiB of 4 KiB pages).
const RESTART_PAGES: i64 = 4096;
/// Commits made while one checkpoint is still under way past which the writer waits for it: on a
/// machine too busy to run checkpoints as fast as commits come, the log stays bounded all the same.
const COMMITS_AHEAD: u32 = 4 * CHECKPOINT_COMMITS;

/// Where the writer's connections open: the database file, or the pool's shared in-memory database.
pub(in crate::store) struct Target<'a> {
    pub(in crate::store) filename: &'a Path,
    pub(in crate::store) in_memory: bool,
    pub(in crate::store) read_only: bool,
}

impl Target<'_> {
    /// Opens a connection set up as the pool's are but for checkpoints; it never waits for a lock
    /// unless told to.
    fn open(&self) -> rusqlite::Result<Connection> {
        let mut flags = OpenFlags::SQLITE_OPEN_URI | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        flags |= if self.read_only {
            OpenFlags::SQLITE_OPEN_READ_ONLY
        } else {
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE
        };
        if self.in_memory {
            flags |= OpenFlags::SQLITE_OPEN_MEMORY | OpenFlags::SQLITE_OPEN_SHARED_CACHE;
        }
        let connection = Connection::open_with_flags(self.filename, flags)?;
        // `synchronous` is per connection: without it every commit would sync.
        // Checkpoints are the writer's own (`Checkpoints`).
        connection.execute_batch(
            "PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON; PRAGMA wal_autocheckpoint = 0;",
        )?;
        connection.busy_timeout(Duration::ZERO)?;
        Ok(connection)
    }
}

pub(in crate::store) struct Writer {
    /// Used by one batch at a time (the group-commit task writes one after another), so never
    /// waited for on the task.
    connection: Arc<Mutex<Connection>>,
    checkpoints: Mutex<Checkpoints>,
}

impl Writer {
    pub(in crate::store) fn open(target: &Target<'_>) -> rusqlite::Result<Writer> {
        let checkpoints = Checkpoints {
            connection: Arc::new(Mutex::new(target.open()?)),
            commits: 0,
            bytes: 0,
            running: None,
            ahead: 0,
            restart: Arc::new(AtomicBool::new(false)),
        };
        Ok(Writer { connection: Arc::new(Mutex::new(target.open()?)), checkpoints: Mutex::new(checkpoints) })
    }
}

#[async_trait]
impl BatchWrite for Writer {
    async fn write(&self, requests: &[Request]) -> StoreResult<Vec<Position>> {
        let restart = self.checkpoints().restart_due();
        if let Some(restart) = restart {
            // Its failure is logged; the batch goes on.
            let _ = restart.await;
        }
        let inline = write_batch(&mut self.connection.lock().expect("writer lock poisoned"), requests);
        let positions = match inline {
            Err(err) if is_locked(&err) => self.write_waiting(requests.to_vec()).await?,
            written => written.map_err(store_error)?,
        };
        self.checkpoints().committed(requests.iter().map(Request::bytes).sum());
        Ok(positions)
    }
}

impl Writer {
    fn checkpoints(&self) -> std::sync::MutexGuard<'_, Checkpoints> {
        self.checkpoints.lock().expect("checkpoint lock poisoned")
    }

    /// The batch on a blocking thread, waiting for the write lock another connection holds.
    async fn write_waiting(&self, requests: Vec<Request>) -> StoreResult<Vec<Position>> {
        let connection = self.connection.clone();
        let waited = tokio::task::spawn_blocking(move || {
            let mut connection = connection.lock().expect("writer lock poisoned");
            connection.busy_timeout(LOCK_WAIT)?;
            let written = write_batch(&mut connection, &requests);
            connection.busy_timeout(Duration::ZERO)?;
            written
        })
        .await;
        match waited {
            Ok(written) => written.map_err(store_error),
            // Cancelled by the runtime's shutdown, or a bug: the batch is not known to be stored.
            Err(_) => Err(StoreError::Other(Arc::new(sqlx::Error::WorkerCrashed))),
        }
    }
}

/// Whether another connection holds the lock the batch needs.
fn is_locked(err: &rusqlite::Error) -> bool {
    matches!(
        err.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
    )
}

fn store_error(err: rusqlite::Error) -> StoreError {
    if is_locked(&err) {
        let timed_out = std::io::Error::new(std::io::ErrorKind::TimedOut, err);
        return StoreError::Unavailable(Arc::new(sqlx::Error::Io(timed_out)));
    }
    StoreError::Other(Arc::new(sqlx::Error::AnyDriverError(Box::new(err))))
}

/// One batch in one transaction, which takes the write lock at once (`IMMEDIATE`): a batch that
/// cannot have it fails before doing anything. Dropped on error, the transaction rolls back.
fn write_batch(connection: &mut Connection, requests: &[Request]) -> rusqlite::Result<Vec<Position>> {
    let tx = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let tops = bump(&tx, requests)?;
    // `number` fails only if the bump returned no row for a channel.
    let numbered = number(requests, &tops).map_err(|_| rusqlite::Error::QueryReturnedNoRows)?;
    if !numbered.kept.is_empty() {
        let sql = format!(
            "INSERT INTO publications (channel, seq, sender, data, created_ms, expires_ms) VALUES {}",
            rows(numbered.kept.len(), 6)
        );
        let mut insert = tx.prepare_cached(&sql)?;
        let mut at = 0;
        for &i in &numbered.kept {
            let request = &requests[i];
            bind(&mut insert, &mut at, &request.channel)?;
            bind(&mut insert, &mut at, numbered.positions[i].offset)?;
            bind(&mut insert, &mut at, &request.sender)?;
            bind(&mut insert, &mut at, &request.data)?;
            bind(&mut insert, &mut at, request.created_ms)?;
            bind(&mut insert, &mut at, request.expires_ms())?;
        }
        insert.raw_execute()?;
    }
    if !numbered.trims.is_empty() {
        // One lookup of the primary key per channel.
        let sql = format!(
            "DELETE FROM publications WHERE {}",
            vec!["(channel = ? AND seq <= ?)"; numbered.trims.len()].join(" OR ")
        );
        let mut delete = tx.prepare_cached(&sql)?;
        let mut at = 0;
        for (channel, below) in &numbered.trims {
            bind(&mut delete, &mut at, channel)?;
            bind(&mut delete, &mut at, below)?;
        }
        delete.raw_execute()?;
    }
    tx.commit()?;
    Ok(numbered.positions)
}

/// Counts the batch's publications on their channels' rows (made if missing): each channel's new
/// top offset and its epoch. The upsert writes first, as the transaction's first statement.
fn bump(tx: &Connection, requests: &[Request]) -> rusqlite::Result<HashMap<String, (i64, String)>> {
    let bumps = bumps(requests);
    let sql = format!(
        "INSERT INTO channels (name, epoch, top_offset, expires_ms) VALUES {} \
         ON CONFLICT (name) DO UPDATE SET top_offset = top_offset + excluded.top_offset, \
         expires_ms = max(expires_ms, excluded.expires_ms) \
         RETURNING name, top_offset, epoch",
        rows(bumps.len(), 4)
    );
    let mut upsert = tx.prepare_cached(&sql)?;
    let mut at = 0;
    for bump in &bumps {
        bind(&mut upsert, &mut at, bump.channel)?;
        bind(&mut upsert, &mut at, &bump.epoch)?;
        bind(&mut upsert, &mut at, bump.count)?;
        bind(&mut upsert, &mut at, bump.expires_ms)?;
    }
    let mut tops = HashMap::with_capacity(bumps.len());
    let mut returned = upsert.raw_query();
    while let Some(row) = returned.next()? {
        tops.insert(row.get(0)?, (row.get(1)?, row.get(2)?));
    }
    Ok(tops)
}

/// `count` rows of `width` placeholders: `(?, ?), (?, ?)`.
fn rows(count: usize, width: usize) -> String {
    let row = format!("({})", vec!["?"; width].join(", "));
    vec![row; count].join(", ")
}

/// Binds `value` to the next parameter (`at` counts them, from 0).
fn bind(
    statement: &mut rusqlite::CachedStatement<'_>,
    at: &mut usize,
    value: impl rusqlite::ToSql,
) -> rusqlite::Result<()> {
    *at += 1;
    statement.raw_bind_parameter(*at, value)
}

/// The log's checkpoints: what was committed since the last began, the one under way, and whether
/// the log has grown past [`RESTART_PAGES`] all the same.
struct Checkpoints {
    connection: Arc<Mutex<Connection>>,
    commits: u32,
    bytes: usize,
    running: Option<JoinHandle<()>>,
    /// Commits since the one under way began.
    ahead: u32,
    restart: Arc<AtomicBool>,
}

impl Checkpoints {
    /// Counts a commit, and starts a checkpoint if one is due and none is under way.
    fn committed(&mut self, bytes: usize) {
        self.commits += 1;
        self.bytes += bytes;
        self.ahead += 1;
        let due = self.commits >= CHECKPOINT_COMMITS || self.bytes >= CHECKPOINT_BYTES;
        let idle = self.running.as_ref().is_none_or(JoinHandle::is_finished);
        if due && idle {
            (self.commits, self.bytes, self.ahead) = (0, 0, 0);
            self.running = Some(self.start());
        } else if !idle && self.ahead >= COMMITS_AHEAD {
            self.ahead = 0;
            self.restart.store(true, Ordering::Release);
        }
    }

    /// When the log must start over: a checkpoint to wait for before the next batch (after the
    /// one under way, if any).
    fn restart_due(&mut self) -> Option<impl std::future::Future<Output = ()> + use<>> {
        if !self.restart.swap(false, Ordering::AcqRel) {
            return None;
        }
        let running = self.running.take();
        let connection = self.connection.clone();
        Some(async move {
            if let Some(running) = running {
                let _ = running.await;
            }
            // With the writer waiting, the log is copied to its end, and the next commit starts
            // it over.
            let _ = tokio::task::spawn_blocking(move || checkpoint(&connection, None)).await;
        })
    }

    fn start(&self) -> JoinHandle<()> {
        let (connection, restart) = (self.connection.clone(), self.restart.clone());
        tokio::task::spawn_blocking(move || checkpoint(&connection, Some(&restart)))
    }
}

/// Copies the log into the database, passively: neither waiting for the writer or readers nor
/// making them wait. With `restart`, raises it if the log is past [`RESTART_PAGES`].
fn checkpoint(connection: &Mutex<Connection>, restart: Option<&AtomicBool>) {
    let connection = connection.lock().expect("checkpoint lock poisoned");
    // (busy, pages in the log, pages copied); -1s when the database is not in WAL mode.
    match connection.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |row| row.get::<_, i64>(1)) {
        Ok(pages) if pages > RESTART_PAGES => {
            if let Some(restart) = restart {
                restart.store(true, Ordering::Release);
            }
        }
        Ok(_) => {}
        Err(err) => tracing::warn!(error = %err, "checkpointing the database's log failed"),
    }
}
