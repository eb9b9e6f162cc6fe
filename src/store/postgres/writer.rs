//! PostgreSQL's publication writer: one transaction per batch (see `group_commit`) numbers them and
//! trims the histories. A channel's row is its counter and its lock is held to commit, so a
//! channel's publications commit in offset order, also across nodes, and a reader never sees a
//! later offset before an earlier; different channels' commit in parallel.

use super::super::group_commit::BatchWrite;
use super::super::numbering::{bumps, number, Request};
use super::super::{Position, StoreResult};
use async_trait::async_trait;
use sqlx::{PgConnection, PgPool};
use std::collections::HashMap;

#[async_trait]
impl BatchWrite for PgPool {
    /// Four round trips per batch, whatever its size: begin, bump the channels' rows, insert and
    /// trim in one statement, commit.
    async fn write(&self, requests: &[Request]) -> StoreResult<Vec<Position>> {
        let mut tx = self.begin().await?;
        let tops = bump(&mut tx, requests).await?;
        let numbered = number(requests, &tops)?;
        let kept = || numbered.kept.iter().map(|&i| &requests[i]);
        let offsets: Vec<i64> = numbered.kept.iter().map(|&i| numbered.positions[i].offset).collect();
        // A statement's snapshot is taken after the bump locked the rows: the delete sees every
        // publication committed before, also by other nodes.
        sqlx::query(
                "WITH trimmed AS ( \
                   DELETE FROM publications p USING unnest($7::text[], $8::bigint[]) AS t(channel, below) \
                   WHERE p.channel = t.channel AND p.seq <= t.below) \
                 INSERT INTO publications (channel, seq, sender, data, created_ms, expires_ms) \
                 SELECT * FROM unnest($1::text[], $2::bigint[], $3::text[], $4::text[], $5::bigint[], $6::bigint[])",
            )
            .bind(kept().map(|r| r.channel.as_str()).collect::<Vec<_>>())
            .bind(offsets)
            .bind(kept().map(|r| r.sender.as_deref()).collect::<Vec<_>>())
            .bind(kept().map(|r| r.data.as_str()).collect::<Vec<_>>())
            .bind(kept().map(|r| r.created_ms).collect::<Vec<_>>())
            .bind(kept().map(Request::expires_ms).collect::<Vec<_>>())
            .bind(numbered.trims.iter().map(|(channel, _)| *channel).collect::<Vec<_>>())
            .bind(numbered.trims.iter().map(|(_, below)| *below).collect::<Vec<_>>())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(numbered.positions)
    }
}

/// Counts the batch's publications on their channels' rows (made if missing), locking the rows
/// to commit in the order of [`bumps`]: each channel's new top offset and its epoch.
async fn bump(tx: &mut PgConnection, requests: &[Request]) -> sqlx::Result<HashMap<String, (i64, String)>> {
    let bumps = bumps(requests);
    let rows: Vec<(String, i64, String)> = sqlx::query_as(
        "INSERT INTO channels (name, epoch, top_offset, expires_ms) \
         SELECT name, epoch, count, expires_ms \
         FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bigint[]) \
              WITH ORDINALITY AS b(name, epoch, count, expires_ms, n) \
         ORDER BY n \
         ON CONFLICT (name) DO UPDATE SET top_offset = channels.top_offset + EXCLUDED.top_offset, \
         expires_ms = GREATEST(channels.expires_ms, EXCLUDED.expires_ms) \
         RETURNING name, top_offset, epoch",
    )
    .bind(bumps.iter().map(|b| b.channel).collect::<Vec<_>>())
    .bind(bumps.iter().map(|b| b.epoch.as_str()).collect::<Vec<_>>())
    .bind(bumps.iter().map(|b| b.count).collect::<Vec<_>>())
    .bind(bumps.iter().map(|b| b.expires_ms).collect::<Vec<_>>())
    .fetch_all(tx)
    .await?;
    Ok(rows.into_iter().map(|(name, top, epoch)| (name, (top, epoch))).collect())
}
