//! The default store: one SQLite file in the data folder, in WAL mode so the CLI can write while
//! the server runs. The file and its `-wal` and `-shm` companions are private (0600), whatever
//! the folder's mode and the umask: they hold password hashes and chat history.

mod api_keys;
mod publications;
mod writer;

use super::batch::Request;
use super::group_commit::PublicationWriter;
use super::rows::{PrincipalRow, RevocationRow, UserRow};
use super::{
    Position, Pruned, Publication, Range, Retention, Revocation, RevocationKind, Rotation, Store,
    StoreResult, UserRecord,
};
use crate::private_files;
use anyhow::Context;
use async_trait::async_trait;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::SqlitePool;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

pub struct SqliteStore {
    pool: SqlitePool,
    publications: PublicationWriter,
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
        sqlx::migrate!("migrations/sqlite").run(&pool).await?;
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

/// Appends `revocation` to the log inside the caller's transaction; returns its id.
async fn log_revocation(
    tx: &mut sqlx::SqliteConnection,
    revocation: &Revocation,
    now: i64,
) -> StoreResult<i64> {
    let done = sqlx::query(
        "INSERT INTO revocations (kind, subject, username, expires_at, created_at, issued_before) \
         VALUES (?, ?, ?, ?, ?, ?)",
    )
    .bind(revocation.kind.as_str())
    .bind(&revocation.subject)
    .bind(&revocation.username)
    .bind(revocation.expires_at)
    .bind(now)
    .bind(revocation.kind.issued_before())
    .execute(tx)
    .await?;
    Ok(done.last_insert_rowid())
}

#[async_trait]
impl Store for SqliteStore {
    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn user(&self, username: &str) -> StoreResult<Option<UserRecord>> {
        let row = sqlx::query_as::<_, UserRow>("SELECT * FROM users WHERE username = ?")
            .bind(username)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(UserRecord::from))
    }

    async fn principal(&self, username: &str, family: &str) -> StoreResult<Option<(UserRecord, bool)>> {
        let row = sqlx::query_as::<_, PrincipalRow>(
            "SELECT users.*, COALESCE((SELECT revoked FROM refresh_families WHERE id = ? AND username = users.username), 1) \
             AS family_revoked \
             FROM users WHERE username = ?",
        )
        .bind(family)
        .bind(username)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(Into::into))
    }

    async fn create_user(&self, user: &UserRecord) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO users (username, email, full_name, password_hash, disabled, created_at) \
             VALUES (?, ?, ?, ?, ?, unixepoch())",
        )
        .bind(&user.username)
        .bind(&user.email)
        .bind(&user.full_name)
        .bind(&user.password_hash)
        .bind(user.disabled as i64)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn list_users(&self) -> StoreResult<Vec<UserRecord>> {
        let rows = sqlx::query_as::<_, UserRow>("SELECT * FROM users ORDER BY username")
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.into_iter().map(UserRecord::from).collect())
    }

    async fn set_disabled(&self, username: &str, disabled: bool) -> StoreResult<bool> {
        let done = sqlx::query("UPDATE users SET disabled = ? WHERE username = ?")
            .bind(disabled as i64)
            .bind(username)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn set_password_hash(&self, username: &str, hash: &str) -> StoreResult<bool> {
        let done = sqlx::query("UPDATE users SET password_hash = ? WHERE username = ?")
            .bind(hash)
            .bind(username)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn create_family(
        &self,
        family: &str,
        username: &str,
        jti: &str,
        expires_at: i64,
    ) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO refresh_families (id, username, current_jti, expires_at) VALUES (?, ?, ?, ?)",
        )
        .bind(family)
        .bind(username)
        .bind(jti)
        .bind(expires_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn current_refresh(&self, family: &str, username: &str, now: i64) -> StoreResult<Option<String>> {
        let jti = sqlx::query_scalar(
            "SELECT current_jti FROM refresh_families \
             WHERE id = ? AND username = ? AND revoked = 0 AND expires_at > ?",
        )
        .bind(family)
        .bind(username)
        .bind(now)
        .fetch_optional(&self.pool)
        .await?;
        Ok(jti)
    }

    async fn replaced_at(
        &self,
        family: &str,
        username: &str,
        presented: &str,
        now: i64,
    ) -> StoreResult<Option<i64>> {
        let at = sqlx::query_scalar(
            "SELECT rotated_at FROM refresh_families \
             WHERE id = ? AND username = ? AND previous_jti = ? AND revoked = 0 AND expires_at > ?",
        )
        .bind(family)
        .bind(username)
        .bind(presented)
        .bind(now)
        .fetch_optional(&self.pool)
        .await?;
        Ok(at.flatten())
    }

    async fn rotate_family(
        &self,
        family: &str,
        presented: &str,
        next: &str,
        expires_at: i64,
        now: i64,
        grace_from: i64,
    ) -> StoreResult<Rotation> {
        let mut tx = self.pool.begin().await?;
        let rotated = sqlx::query(
            "UPDATE refresh_families SET current_jti = ?, expires_at = ?, previous_jti = ?, rotated_at = ? \
             WHERE id = ? AND current_jti = ? AND revoked = 0 AND expires_at > ?",
        )
        .bind(next)
        .bind(expires_at)
        .bind(presented)
        .bind(now)
        .bind(family)
        .bind(presented)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        if rotated.rows_affected() == 1 {
            tx.commit().await?;
            return Ok(Rotation::Rotated);
        }
        let repeated: Option<i64> = sqlx::query_scalar(
            "SELECT rotated_at FROM refresh_families \
             WHERE id = ? AND previous_jti = ? AND revoked = 0 AND expires_at > ? AND rotated_at >= ?",
        )
        .bind(family)
        .bind(presented)
        .bind(now)
        .bind(grace_from)
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(rotated_at) = repeated {
            tx.commit().await?;
            return Ok(Rotation::Repeated { rotated_at });
        }
        let live = sqlx::query_as::<_, (String, i64)>(
            "UPDATE refresh_families SET revoked = 1 \
             WHERE id = ? AND revoked = 0 AND expires_at > ? RETURNING username, expires_at",
        )
        .bind(family)
        .bind(now)
        .fetch_optional(&mut *tx)
        .await?;
        let Some((username, expires_at)) = live else {
            return Ok(Rotation::Dead);
        };
        log_revocation(&mut tx, &Revocation::family(family, username, expires_at), now).await?;
        tx.commit().await?;
        Ok(Rotation::Reused)
    }

    async fn revoke_user(&self, username: &str, now: i64) -> StoreResult<Vec<Revocation>> {
        let mut tx = self.pool.begin().await?;
        let families = sqlx::query_as::<_, (String, i64)>(
            "UPDATE refresh_families SET revoked = 1 \
             WHERE username = ? AND revoked = 0 AND expires_at > ? RETURNING id, expires_at",
        )
        .bind(username)
        .bind(now)
        .fetch_all(&mut *tx)
        .await?;
        let mut revoked = Vec::with_capacity(families.len());
        for (family, expires_at) in families {
            let revocation = Revocation::family(family, username, expires_at);
            log_revocation(&mut tx, &revocation, now).await?;
            revoked.push(revocation);
        }
        tx.commit().await?;
        Ok(revoked)
    }

    async fn revoke(&self, revocation: &Revocation, now: i64) -> StoreResult<i64> {
        let mut tx = self.pool.begin().await?;
        if revocation.kind == RevocationKind::Family {
            sqlx::query("UPDATE refresh_families SET revoked = 1 WHERE id = ?")
                .bind(&revocation.subject)
                .execute(&mut *tx)
                .await?;
        }
        let id = log_revocation(&mut tx, revocation, now).await?;
        tx.commit().await?;
        Ok(id)
    }

    async fn revocations_since(&self, after_id: i64, limit: i64) -> StoreResult<Vec<(i64, Revocation)>> {
        let rows =
            sqlx::query_as::<_, RevocationRow>("SELECT * FROM revocations WHERE id > ? ORDER BY id LIMIT ?")
                .bind(after_id)
                .bind(limit)
                .fetch_all(&self.pool)
                .await?;
        Ok(rows.into_iter().filter_map(RevocationRow::into_entry).collect())
    }

    async fn live_revocations(&self, now: i64) -> StoreResult<(i64, Vec<Revocation>)> {
        let newest: i64 =
            sqlx::query_scalar("SELECT COALESCE(MAX(id), 0) FROM revocations").fetch_one(&self.pool).await?;
        let rows = sqlx::query_as::<_, RevocationRow>(
            "SELECT * FROM revocations WHERE id <= ? AND expires_at > ? AND kind <> 'disconnect'",
        )
        .bind(newest)
        .bind(now)
        .fetch_all(&self.pool)
        .await?;
        let live = rows.into_iter().filter_map(RevocationRow::into_entry).map(|(_, r)| r).collect();
        Ok((newest, live))
    }

    async fn prune(&self, now: i64) -> StoreResult<Pruned> {
        let logins = sqlx::query("DELETE FROM refresh_families WHERE expires_at <= ?")
            .bind(now)
            .execute(&self.pool)
            .await?
            .rows_affected();
        let revocations = sqlx::query("DELETE FROM revocations WHERE expires_at <= ?")
            .bind(now)
            .execute(&self.pool)
            .await?
            .rows_affected();
        let publications = publications::prune(&self.pool, now.saturating_mul(1000)).await?;
        Ok(Pruned { logins, revocations, publications })
    }

    async fn publish(
        &self,
        channel: &str,
        sender: Option<&str>,
        data: &str,
        created_ms: i64,
        retention: Retention,
    ) -> StoreResult<(Publication, Position)> {
        self.publications.publish(Request::new(channel, sender, data, created_ms, retention)).await
    }

    async fn publications(
        &self,
        channel: &str,
        range: Range,
        limit: i64,
        now_ms: i64,
    ) -> StoreResult<(Vec<Publication>, Option<Position>)> {
        publications::publications(&self.pool, channel, range, limit, now_ms).await
    }
}
