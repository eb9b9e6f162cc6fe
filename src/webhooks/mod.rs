//! Webhooks: the application is told when a channel gains its first subscriber or loses its last
//! (`channel_occupied`, `channel_vacated`) and, where the namespace tracks presence, when a user's
//! first socket enters a channel or their last leaves it (`presence_join`, `presence_leave`), for
//! the whole cluster.
//!
//! - The hub tells of each user's first and last socket in a channel on this node, under its
//!   lock, in its order; that goes on a bounded queue (never waiting: the socket path is not
//!   slowed; a full queue loses the change, counted, and the store is resynced from the hub).
//! - `recorder`: applies those changes to the members table of the store, and records the events
//!   they cause for the cluster, in one transaction serialized across nodes (the store's webhook
//!   lock): a channel is occupied when its first row appears, whichever node writes it. Rows of a
//!   node that stops heartbeating are removed by another node, whose users then leave.
//! - `delivery`: one node at a time (a lease in the store) POSTs the stored events in order,
//!   signed (`body`), and forgets them on a 2xx; on a failure it retries the same events with
//!   backoff, so nothing later overtakes them. Events are stored before delivery: a restart loses
//!   none. At least once: a POST whose 2xx is not recorded (a crash, the store down) is sent again.
//!
//! Why the store rather than Redis's presence: the events must be stored anyway, and deciding the
//! edge in the same transaction that stores it makes "first subscriber in the cluster" a single
//! decision (Redis's presence is written, then read, by each node apart: two nodes may both, or
//! neither, see themselves first), and it works on one node without Redis.

mod body;
mod delivery;
mod metrics;
mod recorder;

pub(crate) use metrics::WebhookMetrics;

use crate::broker::Watcher;
use crate::channels::Engine;
use crate::config::WebhookSettings;
use crate::metrics::Metrics;
use crate::store::{DynStore, HookKind, HookKinds};
use anyhow::Context;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, Notify};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Member changes waiting to be recorded, at most.
const QUEUE: usize = 65_536;

/// A user's first socket on this node entering `channel` (`joined`), or their last leaving it.
#[derive(Debug)]
struct Edge {
    channel: String,
    user: String,
    joined: bool,
}

/// What the recorder and the delivery share.
struct Shared {
    /// This process among the nodes, new at each start.
    node: String,
    store: DynStore,
    metrics: Arc<Metrics>,
    kinds: HookKinds,
    settings: WebhookSettings,
    secret: Vec<u8>,
    /// Whether this node, alone on SQLite, may take every other node's rows for dead at once.
    single_node: bool,
    /// A change was lost: the recorder makes the store match the hub again.
    resync: AtomicBool,
    /// Events were recorded here: delivery need not wait for its next poll.
    recorded: Notify,
}

/// The running webhooks: stopped last, after the sockets, so that their leaving is recorded.
pub(crate) struct Webhooks {
    shared: Arc<Shared>,
    edges: Mutex<Option<mpsc::Receiver<Edge>>>,
    finish: CancellationToken,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl Webhooks {
    /// Loads the secret (a file open to others stops the start) and makes the hub's watcher.
    pub(crate) fn new(
        settings: &WebhookSettings,
        store: DynStore,
        metrics: Arc<Metrics>,
        single_node: bool,
    ) -> anyhow::Result<(Webhooks, Watcher)> {
        let secret = crate::auth::secret::load_shared(&settings.secret_file, "webhook secret")
            .context("webhooks: secret_file")?;
        let kinds = HookKinds::of(HookKind::ALL.into_iter().filter(|kind| settings.wants(kind.name())));
        let (sender, edges) = mpsc::channel(QUEUE);
        let shared = Arc::new(Shared {
            node: uuid::Uuid::new_v4().simple().to_string(),
            store,
            metrics,
            kinds,
            settings: settings.clone(),
            secret,
            single_node,
            resync: AtomicBool::new(false),
            recorded: Notify::new(),
        });
        let watching = shared.clone();
        let watcher: Watcher = Box::new(move |channel, user, joined| {
            let edge = Edge { channel: channel.to_owned(), user: user.to_owned(), joined };
            if let Err(mpsc::error::TrySendError::Full(_)) = sender.try_send(edge) {
                watching.metrics.webhooks.unrecorded.inc();
                watching.resync.store(true, Ordering::Relaxed);
            }
        });
        let webhooks = Webhooks {
            shared,
            edges: Mutex::new(Some(edges)),
            finish: CancellationToken::new(),
            tasks: Mutex::default(),
        };
        Ok((webhooks, watcher))
    }

    /// Starts recording the engine's member changes, and delivering.
    pub(crate) fn start(&self, engine: Arc<Engine>) {
        let Some(edges) = self.edges.lock().expect("webhooks lock").take() else { return };
        let recorder = recorder::Recorder { shared: self.shared.clone(), engine };
        let tasks = [
            tokio::spawn(recorder.run(edges, self.finish.clone())),
            tokio::spawn(delivery::run(self.shared.clone(), self.finish.clone())),
        ];
        self.tasks.lock().expect("webhooks lock").extend(tasks);
        tracing::info!(url = %self.shared.settings.url, "webhooks on");
    }

    /// At shutdown, once the sockets are closed: records what is queued and this node's users
    /// leaving, and lets the delivery lease go. Within `within`; what is not done by then is not.
    pub(crate) async fn finish(&self, within: Duration) {
        self.finish.cancel();
        let tasks = std::mem::take(&mut *self.tasks.lock().expect("webhooks lock"));
        let deadline = tokio::time::Instant::now() + within;
        for mut task in tasks {
            if tokio::time::timeout_at(deadline, &mut task).await.is_err() {
                task.abort();
            }
        }
    }
}
