//! Channels' publications in SQLite: one write transaction per publication numbers it (the
//! channel's row is the counter) and trims the history.

use super::super::rows::{new_epoch, trim_below, PublicationRow};
use super::super::{Position, Publication, Range, Retention, StoreResult};
use sqlx::SqlitePool;

pub(super) async fn publish(
    pool: &SqlitePool,
    channel: &str,
    sender: Option<&str>,
    data: &str,
    created_ms: i64,
    retention: Retention,
) -> StoreResult<(Publication, Position)> {
    let expires_ms = retention.expires_ms(created_ms);
    // The upsert writes first, so the transaction holds the write lock from its first statement.
    let mut tx = pool.begin().await?;
    let (offset, epoch): (i64, String) = sqlx::query_as(
        "INSERT INTO channels (name, epoch, top_offset, expires_ms) VALUES (?, ?, 1, ?) \
         ON CONFLICT (name) DO UPDATE SET top_offset = top_offset + 1, \
         expires_ms = max(expires_ms, excluded.expires_ms) \
         RETURNING top_offset, epoch",
    )
    .bind(channel)
    .bind(new_epoch())
    .bind(expires_ms)
    .fetch_one(&mut *tx)
    .await?;
    sqlx::query(
        "INSERT INTO publications (channel, seq, sender, data, created_ms, expires_ms) \
         VALUES (?, ?, ?, ?, ?, ?)",
    )
    .bind(channel)
    .bind(offset)
    .bind(sender)
    .bind(data)
    .bind(created_ms)
    .bind(expires_ms)
    .execute(&mut *tx)
    .await?;
    if let Some(below) = trim_below(offset, &retention) {
        sqlx::query("DELETE FROM publications WHERE channel = ? AND seq <= ?")
            .bind(channel)
            .bind(below)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    let publication = Publication {
        channel: channel.to_owned(),
        offset,
        sender: sender.map(str::to_owned),
        data: data.to_owned(),
        created_ms,
    };
    Ok((publication, Position { offset, epoch }))
}

pub(super) async fn publications(
    pool: &SqlitePool,
    channel: &str,
    range: Range,
    limit: i64,
    now_ms: i64,
) -> StoreResult<(Vec<Publication>, Option<Position>)> {
    // One read transaction: the page and the position agree.
    let mut tx = pool.begin().await?;
    let position: Option<(i64, String)> =
        sqlx::query_as("SELECT top_offset, epoch FROM channels WHERE name = ?")
            .bind(channel)
            .fetch_optional(&mut *tx)
            .await?;
    let rows: Vec<PublicationRow> = match range {
        Range::Before(before) => {
            let mut rows: Vec<PublicationRow> = sqlx::query_as(
                "SELECT * FROM publications WHERE channel = ? AND seq < ? AND expires_ms > ? \
                 ORDER BY seq DESC LIMIT ?",
            )
            .bind(channel)
            .bind(before)
            .bind(now_ms)
            .bind(limit)
            .fetch_all(&mut *tx)
            .await?;
            rows.reverse();
            rows
        }
        Range::After(after) => {
            sqlx::query_as(
                "SELECT * FROM publications WHERE channel = ? AND seq > ? AND expires_ms > ? \
                 ORDER BY seq LIMIT ?",
            )
            .bind(channel)
            .bind(after)
            .bind(now_ms)
            .bind(limit)
            .fetch_all(&mut *tx)
            .await?
        }
    };
    tx.commit().await?;
    let position = position.map(|(offset, epoch)| Position { offset, epoch });
    Ok((rows.into_iter().map(Publication::from).collect(), position))
}

/// Deletes expired publications, then the channels none of whose publications are left.
pub(super) async fn prune(pool: &SqlitePool, now_ms: i64) -> StoreResult<u64> {
    let gone = sqlx::query("DELETE FROM publications WHERE expires_ms <= ?")
        .bind(now_ms)
        .execute(pool)
        .await?
        .rows_affected();
    sqlx::query("DELETE FROM channels WHERE expires_ms <= ?").bind(now_ms).execute(pool).await?;
    Ok(gone)
}
