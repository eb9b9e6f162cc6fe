//! Group commit: a store's publications are written by one task, which takes every request queued
//! when it gets to them (up to a bound), stores them in one transaction and then answers each.
//! Many concurrent publishers share a transaction's round trips and its commit; a lone publisher
//! waits for nothing but its own transaction (no timer, no batch to fill).
//!
//! An answer is given only after the commit. A failed batch answers every request in it with the
//! error, and its transaction leaves nothing behind. A publisher that stops waiting (its socket
//! closed) before its batch is taken is left out of it; later, it changes nothing for the others.

use super::numbering::Request;
use super::{Position, Publication, StoreError, StoreResult};
use async_trait::async_trait;
use futures_util::FutureExt;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};

/// Publications per transaction at most.
const MAX_BATCH: usize = 256;
/// Bytes of publications per transaction at most; a bigger publication goes alone.
const MAX_BATCH_BYTES: usize = 1 << 20;
/// Requests waiting at most; more publishers wait to join the queue.
const QUEUE: usize = 4096;

/// A backend's batch write.
#[async_trait]
pub(super) trait BatchWrite: Send + Sync + 'static {
    /// Stores `requests` in one transaction, each channel's numbered in queue order, and returns
    /// their places in order. On error nothing of them is stored.
    async fn write(&self, requests: &[Request]) -> StoreResult<Vec<Position>>;
}

type Answer = StoreResult<(Publication, Position)>;

struct Pending {
    request: Request,
    reply: oneshot::Sender<Answer>,
}

/// The queue in front of a store's writer task. The task ends when this is dropped.
pub(super) struct PublicationWriter {
    queue: mpsc::Sender<Pending>,
}

impl PublicationWriter {
    /// Starts the writer task on the current runtime.
    pub(super) fn start(backend: impl BatchWrite) -> Self {
        let (queue, requests) = mpsc::channel(QUEUE);
        tokio::spawn(run(backend, requests));
        PublicationWriter { queue }
    }

    /// Stores `request` with the next batch; returns once that batch is committed.
    pub(super) async fn publish(&self, request: Request) -> Answer {
        let (reply, answer) = oneshot::channel();
        self.queue.send(Pending { request, reply }).await.map_err(|_| writer_gone())?;
        answer.await.map_err(|_| writer_gone())?
    }
}

fn writer_gone() -> StoreError {
    StoreError::Other(Arc::new(sqlx::Error::WorkerCrashed))
}

async fn run(backend: impl BatchWrite, mut queue: mpsc::Receiver<Pending>) {
    let mut carried = None;
    loop {
        let first = match carried.take() {
            Some(pending) => pending,
            None => match queue.recv().await {
                Some(pending) => pending,
                None => return,
            },
        };
        let (batch, next) = take_batch(first, &mut queue);
        carried = next;
        write(&backend, batch).await;
    }
}

/// `first` and whatever is queued behind it, within the bounds; the request that would overflow
/// the byte budget comes back, for the next batch.
fn take_batch(first: Pending, queue: &mut mpsc::Receiver<Pending>) -> (Vec<Pending>, Option<Pending>) {
    let mut bytes = first.request.bytes();
    let mut batch = vec![first];
    while batch.len() < MAX_BATCH {
        let Ok(next) = queue.try_recv() else {
            break;
        };
        bytes += next.request.bytes();
        if bytes > MAX_BATCH_BYTES {
            return (batch, Some(next));
        }
        batch.push(next);
    }
    (batch, None)
}

/// Writes one batch and answers its publishers.
async fn write(backend: &impl BatchWrite, mut batch: Vec<Pending>) {
    // Publishers already gone were never acknowledged: nothing of theirs to store.
    batch.retain(|pending| !pending.reply.is_closed());
    if batch.is_empty() {
        return;
    }
    let (requests, replies): (Vec<Request>, Vec<_>) =
        batch.into_iter().map(|pending| (pending.request, pending.reply)).unzip();
    // A panic fails this batch (its transaction rolls back as it unwinds), not the writer.
    let written = AssertUnwindSafe(backend.write(&requests))
        .catch_unwind()
        .await
        .unwrap_or_else(|_| Err(writer_gone()));
    match written {
        Ok(positions) => {
            // A reply whose publisher left meanwhile fails to send: its publication is stored all
            // the same, as one whose socket closed right after the commit.
            for ((request, position), reply) in requests.into_iter().zip(positions).zip(replies) {
                let _ = reply.send(Ok((request.into_publication(position.offset), position)));
            }
        }
        Err(err) => {
            for reply in replies {
                let _ = reply.send(Err(err.clone()));
            }
        }
    }
}
