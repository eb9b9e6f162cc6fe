//! [`WebhookStore`] in SQL. Every transaction that changes members takes the backend's webhook
//! lock first ([`Backend::lock_webhooks`](super::Backend::lock_webhooks)): the nodes' changes
//! are applied one transaction at a time, so "the channel's first member" is decided once for the
//! whole cluster, and event ids are taken and become visible in the order events happened (which
//! lets delivery forget "everything up to the last id delivered").

use super::for_every_backend;
use crate::store::{HookEvent, HookKind, HookKinds, MemberChange, StoreResult, WebhookStore};

impl HookKind {
    fn parse(name: &str) -> Option<HookKind> {
        HookKind::ALL.into_iter().find(|kind| kind.name() == name)
    }
}

for_every_backend! {
    impl {
        /// Applies one change; records the events it causes. Returns how many.
        async fn apply_member(
            connection: &mut DB::Connection,
            node: &str,
            change: &MemberChange,
            kinds: HookKinds,
            now_ms: i64,
        ) -> sqlx::Result<u64> {
            let MemberChange { channel, user, joined, presence } = change;
            let statement = if *joined {
                "INSERT INTO webhook_members (channel, username, node, presence) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT DO NOTHING"
            } else {
                "DELETE FROM webhook_members WHERE channel = $1 AND username = $2 AND node = $3"
            };
            // Every statement here is about this member: $1 channel, $2 user, $3 node.
            let member = |statement| sqlx::query::<DB>(statement).bind(channel.as_str()).bind(user.as_str()).bind(node);
            let query = member(statement);
            let query = if *joined { query.bind(*presence) } else { query };
            let done = query.execute(&mut *connection).await?;
            if DB::rows_affected(&done) == 0 {
                return Ok(0);
            }
            let others =
                member("SELECT 1 FROM webhook_members WHERE channel = $1 AND NOT (username = $2 AND node = $3) LIMIT 1")
                    .fetch_optional(&mut *connection)
                    .await?
                    .is_some();
            let elsewhere =
                member("SELECT 1 FROM webhook_members WHERE channel = $1 AND username = $2 AND node <> $3 LIMIT 1")
                    .fetch_optional(&mut *connection)
                    .await?
                    .is_some();
            // Occupied before the first join, the last leave before vacated.
            let events = match joined {
                true => [(!others).then_some(HookKind::ChannelOccupied), (*presence && !elsewhere).then_some(HookKind::PresenceJoin)],
                false => [(*presence && !elsewhere).then_some(HookKind::PresenceLeave), (!others).then_some(HookKind::ChannelVacated)],
            };
            let mut recorded = 0;
            for kind in events.into_iter().flatten().filter(|kind| kinds.contains(*kind)) {
                let user = if matches!(kind, HookKind::PresenceJoin | HookKind::PresenceLeave) { user.as_str() } else { "" };
                sqlx::query("INSERT INTO webhook_events (name, channel, username, time_ms) VALUES ($1, $2, $3, $4)")
                    .bind(kind.name())
                    .bind(channel.as_str())
                    .bind(user)
                    .bind(now_ms)
                    .execute(&mut *connection)
                    .await?;
                recorded += 1;
            }
            Ok(recorded)
        }

        /// `node`'s users leave every channel, in a stable order. Returns the events recorded.
        async fn leave_all(connection: &mut DB::Connection, node: &str, kinds: HookKinds, now_ms: i64) -> sqlx::Result<u64> {
            let rows: Vec<(String, String, bool)> = sqlx::query_as(
                "SELECT channel, username, presence FROM webhook_members WHERE node = $1",
            )
            .bind(node)
            .fetch_all(&mut *connection)
            .await?;
            let mut rows = rows;
            // Byte order, whatever the database's collation.
            rows.sort_unstable();
            let mut recorded = 0;
            for (channel, user, presence) in rows {
                let change = MemberChange { channel, user, joined: false, presence };
                recorded += Self::apply_member(connection, node, &change, kinds, now_ms).await?;
            }
            Ok(recorded)
        }
    }
}

for_every_backend! {
    impl WebhookStore {
        async fn record_members(&self, node: &str, changes: &[MemberChange], kinds: HookKinds, now_ms: i64) -> StoreResult<u64> {
            let mut tx = self.pool.begin().await?;
            DB::lock_webhooks(&mut tx).await?;
            let mut recorded = 0;
            for change in changes {
                recorded += Self::apply_member(&mut tx, node, change, kinds, now_ms).await?;
            }
            tx.commit().await?;
            Ok(recorded)
        }

        async fn hook_members(&self, node: &str) -> StoreResult<Vec<(String, String)>> {
            let rows = sqlx::query_as("SELECT channel, username FROM webhook_members WHERE node = $1")
                .bind(node)
                .fetch_all(&self.pool)
                .await?;
            Ok(rows)
        }

        async fn hook_heartbeat(&self, node: &str, now_ms: i64) -> StoreResult<bool> {
            let done = sqlx::query("UPDATE webhook_nodes SET seen_ms = $2 WHERE node = $1")
                .bind(node)
                .bind(now_ms)
                .execute(&self.pool)
                .await?;
            if DB::rows_affected(&done) == 1 {
                return Ok(true);
            }
            sqlx::query(
                "INSERT INTO webhook_nodes (node, seen_ms) VALUES ($1, $2) \
                 ON CONFLICT (node) DO UPDATE SET seen_ms = excluded.seen_ms",
            )
            .bind(node)
            .bind(now_ms)
            .execute(&self.pool)
            .await?;
            Ok(false)
        }

        async fn reap_hook_nodes(&self, node: &str, seen_before_ms: i64, kinds: HookKinds, now_ms: i64) -> StoreResult<u64> {
            let mut tx = self.pool.begin().await?;
            DB::lock_webhooks(&mut tx).await?;
            sqlx::query("DELETE FROM webhook_nodes WHERE seen_ms < $1 AND node <> $2")
                .bind(seen_before_ms)
                .bind(node)
                .execute(&mut *tx)
                .await?;
            let dead: Vec<String> = sqlx::query_scalar(
                "SELECT DISTINCT node FROM webhook_members \
                 WHERE node <> $1 AND node NOT IN (SELECT node FROM webhook_nodes)",
            )
            .bind(node)
            .fetch_all(&mut *tx)
            .await?;
            let mut recorded = 0;
            for gone in dead {
                recorded += Self::leave_all(&mut tx, &gone, kinds, now_ms).await?;
                tracing::info!(node = gone, "webhooks: a node gone, its users left their channels");
            }
            tx.commit().await?;
            Ok(recorded)
        }

        async fn retire_hook_node(&self, node: &str, kinds: HookKinds, now_ms: i64) -> StoreResult<u64> {
            let mut tx = self.pool.begin().await?;
            DB::lock_webhooks(&mut tx).await?;
            let recorded = Self::leave_all(&mut tx, node, kinds, now_ms).await?;
            sqlx::query("DELETE FROM webhook_nodes WHERE node = $1").bind(node).execute(&mut *tx).await?;
            tx.commit().await?;
            Ok(recorded)
        }

        async fn take_hook_lease(&self, node: &str, now_ms: i64, until_ms: i64) -> StoreResult<bool> {
            let done = sqlx::query(
                "UPDATE webhook_lease SET node = $1, until_ms = $2 \
                 WHERE name = 'delivery' AND (node = $1 OR until_ms < $3)",
            )
            .bind(node)
            .bind(until_ms)
            .bind(now_ms)
            .execute(&self.pool)
            .await?;
            Ok(DB::rows_affected(&done) == 1)
        }

        async fn release_hook_lease(&self, node: &str) -> StoreResult<()> {
            sqlx::query("UPDATE webhook_lease SET until_ms = 0 WHERE name = 'delivery' AND node = $1")
                .bind(node)
                .execute(&self.pool)
                .await?;
            Ok(())
        }

        async fn hook_events(&self, limit: i64) -> StoreResult<Vec<HookEvent>> {
            let rows: Vec<(i64, String, String, String, i64)> = sqlx::query_as(
                "SELECT id, name, channel, username, time_ms FROM webhook_events ORDER BY id LIMIT $1",
            )
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
            let events = rows.into_iter().filter_map(|(id, name, channel, user, time_ms)| {
                let Some(kind) = HookKind::parse(&name) else {
                    tracing::warn!(id, name, "webhooks: an event of an unknown kind skipped");
                    return None;
                };
                let user = (!user.is_empty()).then_some(user);
                Some(HookEvent { id, kind, channel, user, time_ms })
            });
            Ok(events.collect())
        }

        async fn delete_hook_events(&self, last_id: i64) -> StoreResult<()> {
            sqlx::query("DELETE FROM webhook_events WHERE id <= $1").bind(last_id).execute(&self.pool).await?;
            Ok(())
        }

        async fn hook_backlog(&self) -> StoreResult<(u64, Option<i64>)> {
            let (count, oldest): (i64, Option<i64>) =
                sqlx::query_as("SELECT COUNT(*), MIN(time_ms) FROM webhook_events").fetch_one(&self.pool).await?;
            Ok((count.max(0) as u64, oldest))
        }
    }
}
