//! Channels' publications in SQLite, as the pool reads and prunes them; the writer (`writer`)
//! numbers and stores them.

use super::super::rows::PublicationRow;
use super::super::{Position, Publication, Range, StoreResult};
use sqlx::SqlitePool;

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
