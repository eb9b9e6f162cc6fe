//! Channels' publications in PostgreSQL: one transaction per publication numbers it and trims the
//! history. The channel's row is the counter and its lock is held to commit, so a channel's
//! publications commit in offset order and a reader never sees a later offset before an earlier.

use super::super::rows::{new_epoch, trim_below, PublicationRow};
use super::super::{Position, Publication, Range, Retention};
use sqlx::PgPool;

pub(super) async fn publish(
    pool: &PgPool,
    channel: &str,
    sender: Option<&str>,
    data: &str,
    created_ms: i64,
    retention: Retention,
) -> sqlx::Result<(Publication, Position)> {
    let expires_ms = retention.expires_ms(created_ms);
    let mut tx = pool.begin().await?;
    let (offset, epoch): (i64, String) = sqlx::query_as(
        "INSERT INTO channels (name, epoch, top_offset, expires_ms) VALUES ($1, $2, 1, $3) \
         ON CONFLICT (name) DO UPDATE SET top_offset = channels.top_offset + 1, \
         expires_ms = GREATEST(channels.expires_ms, EXCLUDED.expires_ms) \
         RETURNING top_offset, epoch",
    )
    .bind(channel)
    .bind(new_epoch())
    .bind(expires_ms)
    .fetch_one(&mut *tx)
    .await?;
    sqlx::query(
        "INSERT INTO publications (channel, seq, sender, data, created_ms, expires_ms) \
         VALUES ($1, $2, $3, $4, $5, $6)",
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
        sqlx::query("DELETE FROM publications WHERE channel = $1 AND seq <= $2")
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
    pool: &PgPool,
    channel: &str,
    range: Range,
    limit: i64,
    now_ms: i64,
) -> sqlx::Result<(Vec<Publication>, Option<Position>)> {
    // One read transaction: the page and the position agree.
    let mut tx = pool.begin().await?;
    let position: Option<(i64, String)> =
        sqlx::query_as("SELECT top_offset, epoch FROM channels WHERE name = $1")
            .bind(channel)
            .fetch_optional(&mut *tx)
            .await?;
    let rows: Vec<PublicationRow> = match range {
        Range::Before(before) => {
            let mut rows: Vec<PublicationRow> = sqlx::query_as(
                "SELECT * FROM publications WHERE channel = $1 AND seq < $2 AND expires_ms > $3 \
                 ORDER BY seq DESC LIMIT $4",
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
                "SELECT * FROM publications WHERE channel = $1 AND seq > $2 AND expires_ms > $3 \
                 ORDER BY seq LIMIT $4",
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
pub(super) async fn prune(pool: &PgPool, now_ms: i64) -> sqlx::Result<u64> {
    let gone = sqlx::query("DELETE FROM publications WHERE expires_ms <= $1")
        .bind(now_ms)
        .execute(pool)
        .await?
        .rows_affected();
    sqlx::query("DELETE FROM channels WHERE expires_ms <= $1").bind(now_ms).execute(pool).await?;
    Ok(gone)
}
