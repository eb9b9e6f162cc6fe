//! Channels' publications in SQLite: one write transaction per batch (see `group_commit`) numbers
//! them (each channel's row is its counter) and trims the histories.

use super::super::batch::{bumps, number, Request};
use super::super::group_commit::BatchWrite;
use super::super::rows::PublicationRow;
use super::super::{Position, Publication, Range, StoreResult};
use async_trait::async_trait;
use sqlx::{QueryBuilder, Sqlite, SqliteConnection, SqlitePool};
use std::collections::HashMap;

#[async_trait]
impl BatchWrite for SqlitePool {
    async fn write(&self, requests: &[Request]) -> StoreResult<Vec<Position>> {
        // The upsert writes first, so the transaction holds the write lock from its first statement.
        let mut tx = self.begin().await?;
        let tops = bump(&mut tx, requests).await?;
        let numbered = number(requests, &tops)?;
        let kept: Vec<(&Request, i64)> =
            numbered.kept.iter().map(|&i| (&requests[i], numbered.positions[i].offset)).collect();
        if !kept.is_empty() {
            let mut insert = QueryBuilder::<Sqlite>::new(
                "INSERT INTO publications (channel, seq, sender, data, created_ms, expires_ms) ",
            );
            insert.push_values(kept, |mut row, (request, offset)| {
                row.push_bind(&request.channel)
                    .push_bind(offset)
                    .push_bind(&request.sender)
                    .push_bind(&request.data)
                    .push_bind(request.created_ms)
                    .push_bind(request.expires_ms());
            });
            insert.build().execute(&mut *tx).await?;
        }
        if !numbered.trims.is_empty() {
            // One lookup of the primary key per channel.
            let mut delete = QueryBuilder::<Sqlite>::new("DELETE FROM publications WHERE ");
            for (i, (channel, below)) in numbered.trims.iter().enumerate() {
                delete.push(if i == 0 { "(channel = " } else { " OR (channel = " });
                delete.push_bind(*channel).push(" AND seq <= ").push_bind(*below).push(")");
            }
            delete.build().execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(numbered.positions)
    }
}

/// Counts the batch's publications on their channels' rows (made if missing): each channel's new
/// top offset and its epoch.
async fn bump(
    tx: &mut SqliteConnection,
    requests: &[Request],
) -> StoreResult<HashMap<String, (i64, String)>> {
    let mut upsert =
        QueryBuilder::<Sqlite>::new("INSERT INTO channels (name, epoch, top_offset, expires_ms) ");
    upsert.push_values(bumps(requests), |mut row, bump| {
        row.push_bind(bump.channel).push_bind(bump.epoch).push_bind(bump.count).push_bind(bump.expires_ms);
    });
    upsert.push(
        " ON CONFLICT (name) DO UPDATE SET top_offset = top_offset + excluded.top_offset, \
         expires_ms = max(expires_ms, excluded.expires_ms) \
         RETURNING name, top_offset, epoch",
    );
    let rows: Vec<(String, i64, String)> = upsert.build_query_as().fetch_all(tx).await?;
    Ok(rows.into_iter().map(|(name, top, epoch)| (name, (top, epoch))).collect())
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
