//! Records this node's member changes, and the events they cause, in the store; keeps this node
//! alive there, and removes the nodes that are not.

use super::{Edge, Shared};
use crate::channels::Engine;
use crate::clock::now_ms;
use crate::store::MemberChange;
use std::collections::BTreeSet;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// How often a node says it is alive, and how long another waits before taking it for dead and
/// its users for gone.
const HEARTBEAT: Duration = Duration::from_secs(2);
const NODE_TTL_MS: i64 = 15_000;

/// Changes recorded in one transaction, at most.
const BATCH: usize = 512;

pub(super) struct Recorder {
    pub(super) shared: Arc<Shared>,
    pub(super) engine: Arc<Engine>,
}

impl Recorder {
    pub(super) async fn run(self, mut edges: mpsc::Receiver<Edge>, finish: CancellationToken) {
        self.beat().await;
        let mut tick = tokio::time::interval(HEARTBEAT);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                () = finish.cancelled() => break,
                edge = edges.recv() => {
                    let Some(edge) = edge else { break };
                    let mut batch = vec![edge];
                    while batch.len() < BATCH {
                        let Ok(edge) = edges.try_recv() else { break };
                        batch.push(edge);
                    }
                    self.record(batch).await;
                }
                _ = tick.tick() => self.beat().await,
            }
        }
        // The sockets are closed: what they queued, then whoever is left leaves with this node.
        let mut batch = Vec::new();
        while let Ok(edge) = edges.try_recv() {
            batch.push(edge);
        }
        self.record(batch).await;
        let shared = &self.shared;
        match shared.store.retire_hook_node(&shared.node, shared.kinds, now_ms()).await {
            Ok(recorded) => shared.metrics.webhooks.recorded.inc_by(recorded),
            Err(err) => tracing::warn!(error = %err, "webhooks: recording this node's users leaving failed"),
        }
    }

    async fn record(&self, edges: Vec<Edge>) {
        let changes: Vec<MemberChange> = edges
            .into_iter()
            .map(|Edge { channel, user, joined }| {
                let presence = self.engine.tracks_presence(&channel);
                MemberChange { channel, user, joined, presence }
            })
            .collect();
        self.apply(&changes).await;
    }

    async fn apply(&self, changes: &[MemberChange]) {
        if changes.is_empty() {
            return;
        }
        let shared = &self.shared;
        match shared.store.record_members(&shared.node, changes, shared.kinds, now_ms()).await {
            Ok(recorded) => {
                shared.metrics.webhooks.recorded.inc_by(recorded);
                if recorded > 0 {
                    shared.recorded.notify_one();
                }
            }
            Err(err) => {
                tracing::warn!(error = %err, changes = changes.len(), "webhooks: recording member changes failed; their events are lost");
                shared.metrics.webhooks.unrecorded.inc_by(changes.len() as u64);
                shared.resync.store(true, Ordering::Relaxed);
            }
        }
    }

    /// Says this node is alive; removes dead nodes; makes the store match the hub again when it
    /// may not (a change lost, or this node taken for dead meanwhile).
    async fn beat(&self) {
        let shared = &self.shared;
        let now = now_ms();
        let known = match shared.store.hook_heartbeat(&shared.node, now).await {
            Ok(known) => known,
            Err(err) => {
                tracing::warn!(error = %err, "webhooks: heartbeat failed");
                return;
            }
        };
        // Alone on its database, a node knows every other one is a previous run of itself.
        let seen_before = if shared.single_node { i64::MAX } else { now - NODE_TTL_MS };
        match shared.store.reap_hook_nodes(&shared.node, seen_before, shared.kinds, now).await {
            Ok(0) => {}
            Ok(recorded) => {
                shared.metrics.webhooks.recorded.inc_by(recorded);
                shared.recorded.notify_one();
            }
            Err(err) => tracing::warn!(error = %err, "webhooks: removing dead nodes failed"),
        }
        if !known || shared.resync.swap(false, Ordering::Relaxed) {
            self.resync().await;
        }
    }

    /// Records the difference between the hub's members and the store's.
    async fn resync(&self) {
        let shared = &self.shared;
        let stored: BTreeSet<(String, String)> = match shared.store.hook_members(&shared.node).await {
            Ok(rows) => rows.into_iter().collect(),
            Err(err) => {
                tracing::warn!(error = %err, "webhooks: reading this node's members failed");
                shared.resync.store(true, Ordering::Relaxed);
                return;
            }
        };
        let live: BTreeSet<(String, String)> = self
            .engine
            .local_members()
            .into_iter()
            .flat_map(|(channel, users)| users.into_iter().map(move |user| (channel.clone(), user)))
            .collect();
        let change = |(channel, user): &(String, String), joined| MemberChange {
            presence: self.engine.tracks_presence(channel),
            channel: channel.clone(),
            user: user.clone(),
            joined,
        };
        let mut changes: Vec<MemberChange> = stored.difference(&live).map(|m| change(m, false)).collect();
        changes.extend(live.difference(&stored).map(|m| change(m, true)));
        self.apply(&changes).await;
    }
}
