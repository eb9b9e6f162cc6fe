//! [`PublicationStore`] in SQL: publications are written by the database's own writer behind group
//! commit (`sqlite/writer.rs`, `postgres/writer.rs`) and read here.

use super::for_every_backend;
use crate::store::numbering::Request;
use crate::store::{NewPublication, Position, Publication, PublicationStore, Range, StoreResult};

/// A `publications` row.
#[derive(sqlx::FromRow)]
struct PublicationRow {
    channel: String,
    seq: i64,
    sender: Option<String>,
    data: String,
    created_ms: i64,
}

impl From<PublicationRow> for Publication {
    fn from(row: PublicationRow) -> Self {
        let PublicationRow { channel, seq, sender, data, created_ms } = row;
        Publication { channel, offset: seq, sender, data, created_ms }
    }
}

for_every_backend! {
    impl PublicationStore {
        async fn publish(&self, publication: NewPublication<'_>) -> StoreResult<(Publication, Position)> {
            self.publications.publish(Request::new(publication)).await
        }

        async fn publications(
            &self,
            channel: &str,
            range: Range,
            limit: i64,
            now_ms: i64,
        ) -> StoreResult<(Vec<Publication>, Option<Position>)> {
            // One read transaction: the page and the position agree.
            let mut tx = self.pool.begin().await?;
            let position: Option<(i64, String)> =
                sqlx::query_as("SELECT top_offset, epoch FROM channels WHERE name = $1")
                    .bind(channel)
                    .fetch_optional(&mut *tx)
                    .await?;
            let (statement, bound) = match range {
                Range::Before(before) => (
                    "SELECT * FROM publications WHERE channel = $1 AND seq < $2 AND expires_ms > $3 \
                     ORDER BY seq DESC LIMIT $4",
                    before,
                ),
                Range::After(after) => (
                    "SELECT * FROM publications WHERE channel = $1 AND seq > $2 AND expires_ms > $3 \
                     ORDER BY seq LIMIT $4",
                    after,
                ),
            };
            let mut rows: Vec<PublicationRow> = sqlx::query_as(statement)
                .bind(channel)
                .bind(bound)
                .bind(now_ms)
                .bind(limit)
                .fetch_all(&mut *tx)
                .await?;
            tx.commit().await?;
            if matches!(range, Range::Before(_)) {
                rows.reverse();
            }
            let position = position.map(|(offset, epoch)| Position { offset, epoch });
            Ok((rows.into_iter().map(Publication::from).collect(), position))
        }

        async fn remove_history(&self, channel: &str) -> StoreResult<u64> {
            // The channel's row stays: it keeps the numbering and expires as its publications would have.
            let done = sqlx::query("DELETE FROM publications WHERE channel = $1").bind(channel).execute(&self.pool).await?;
            Ok(DB::rows_affected(&done))
        }
    }
}
