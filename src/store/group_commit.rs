//! Group commit: a store's publications are written by one task, which takes every request queued
//! when it gets to them (up to a bound), stores them in one transaction and then answers each.
//! Many concurrent publishers share a transaction's round trips and its commit; a lone publisher
//! waits for nothing but its own transaction (no timer, no batch to fill).
//!
//! A backend that can write without waiting (SQLite, in process) lets a publisher who finds nothing
//! queued and no batch being written store its publication itself, at once: the hand-off to the
//! task and back (two wake-ups, often across threads) cost a lone publisher as much as its commit.
//! Whoever comes while it writes queues, and the task takes them together after it.
//!
//! An answer is given only after the commit. A failed batch answers every request in it with the
//! error, and its transaction leaves nothing behind. A publisher that stops waiting (its socket
//! closed) before its batch is taken is left out of it; later, it changes nothing for the others.

use super::numbering::Request;
use super::{Position, Publication, StoreError, StoreResult};
use async_trait::async_trait;
use futures_util::FutureExt;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicUsize, Ordering};
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

    /// [`Self::write`] at once on the caller's thread, where that needs no waiting; `None`, having
    /// done nothing, where it would wait (another batch being written, a lock held elsewhere, a
    /// checkpoint due). A backend that always waits (a network round trip) keeps this default.
    fn write_now(&self, _requests: &[Request]) -> Option<StoreResult<Vec<Position>>> {
        None
    }
}

type Answer = StoreResult<(Publication, Position)>;

struct Pending {
    request: Request,
    reply: oneshot::Sender<Answer>,
}

/// The queue in front of a store's writer task. The task ends when this is dropped.
pub(super) struct PublicationWriter {
    queue: mpsc::Sender<Pending>,
    backend: Arc<dyn BatchWrite>,
    /// Requests queued or in the task's batch, not yet answered: while any is, a publisher queues
    /// behind them rather than write its own first.
    unanswered: Arc<AtomicUsize>,
}

impl PublicationWriter {
    /// Starts the writer task on the current runtime.
    pub(super) fn start(backend: impl BatchWrite) -> Self {
        let (queue, requests) = mpsc::channel(QUEUE);
        let backend: Arc<dyn BatchWrite> = Arc::new(backend);
        let unanswered = Arc::new(AtomicUsize::new(0));
        tokio::spawn(run(backend.clone(), requests, unanswered.clone()));
        PublicationWriter { queue, backend, unanswered }
    }

    /// Stores `request` with the next batch, or at once when nothing is ahead of it; returns once
    /// it is committed.
    pub(super) async fn publish(&self, request: Request) -> Answer {
        if self.unanswered.load(Ordering::Acquire) == 0 {
            // Synchronous: no await between its start and its answer, so nothing can cancel it.
            if let Some(written) = self.backend.write_now(std::slice::from_ref(&request)) {
                return written.map(|mut positions| {
                    let position = positions.pop().expect("one position per request");
                    (request.into_publication(position.offset), position)
                });
            }
        }
        let (reply, answer) = oneshot::channel();
        let ticket = Ticket::take(&self.unanswered);
        self.queue.send(Pending { request, reply }).await.map_err(|_| writer_gone())?;
        ticket.hand_over();
        answer.await.map_err(|_| writer_gone())?
    }
}

/// A request counted in [`PublicationWriter::unanswered`] on its way into the queue; uncounted
/// again should it never get there (the publisher gave up waiting for room, the task is gone).
struct Ticket<'a>(Option<&'a AtomicUsize>);

impl<'a> Ticket<'a> {
    fn take(unanswered: &'a AtomicUsize) -> Self {
        unanswered.fetch_add(1, Ordering::AcqRel);
        Ticket(Some(unanswered))
    }

    /// Queued: the writer task uncounts it once it has answered.
    fn hand_over(mut self) {
        self.0 = None;
    }
}

impl Drop for Ticket<'_> {
    fn drop(&mut self) {
        if let Some(unanswered) = self.0 {
            unanswered.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

fn writer_gone() -> StoreError {
    StoreError::Other(Arc::new(sqlx::Error::WorkerCrashed))
}

async fn run(backend: Arc<dyn BatchWrite>, mut queue: mpsc::Receiver<Pending>, unanswered: Arc<AtomicUsize>) {
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
        let taken = batch.len();
        write(backend.as_ref(), batch).await;
        unanswered.fetch_sub(taken, Ordering::AcqRel);
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
async fn write(backend: &dyn BatchWrite, mut batch: Vec<Pending>) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Retention;
    use std::sync::atomic::AtomicBool;
    use std::sync::Mutex;
    use tokio::sync::Semaphore;

    /// Writes nothing anywhere: logs how each request came (`now`, or in which batch) and numbers
    /// them 1, 2, 3…; a batch waits for a permit of `gate`, and `busy` refuses writing at once.
    #[derive(Clone)]
    struct Logged {
        log: Arc<Mutex<Vec<String>>>,
        gate: Arc<Semaphore>,
        busy: Arc<AtomicBool>,
    }

    impl Logged {
        fn new() -> Self {
            Logged { log: Arc::default(), gate: Arc::new(Semaphore::new(0)), busy: Arc::default() }
        }

        fn record(&self, how: &str, requests: &[Request]) -> Vec<Position> {
            let mut log = self.log.lock().unwrap();
            let names: Vec<_> = requests.iter().map(|r| r.channel.as_str()).collect();
            log.push(format!("{how} {}", names.join(",")));
            let top = log.len() as i64;
            requests.iter().map(|_| Position { offset: top, epoch: String::new() }).collect()
        }
    }

    #[async_trait]
    impl BatchWrite for Logged {
        async fn write(&self, requests: &[Request]) -> StoreResult<Vec<Position>> {
            self.gate.acquire().await.unwrap().forget();
            Ok(self.record("batch", requests))
        }

        fn write_now(&self, requests: &[Request]) -> Option<StoreResult<Vec<Position>>> {
            (!self.busy.load(Ordering::Acquire)).then(|| Ok(self.record("now", requests)))
        }
    }

    fn request(channel: &str) -> Request {
        Request::new(channel, None, "{}", 1, Retention::ALL)
    }

    async fn settle() {
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
    }

    /// A lone publisher writes at once; one who comes while a batch is queued or written queues
    /// behind it, so that nobody overtakes what was queued first; then writing at once resumes.
    #[tokio::test]
    async fn a_lone_publisher_writes_at_once_and_nobody_overtakes_the_queue() {
        let backend = Logged::new();
        let writer = Arc::new(PublicationWriter::start(backend.clone()));
        writer.publish(request("a")).await.unwrap();

        backend.busy.store(true, Ordering::Release);
        let queued = tokio::spawn({
            let writer = writer.clone();
            async move { writer.publish(request("b")).await }
        });
        settle().await;
        assert_eq!(writer.unanswered.load(Ordering::Acquire), 1);
        backend.busy.store(false, Ordering::Release);
        let behind = tokio::spawn({
            let writer = writer.clone();
            async move { writer.publish(request("c")).await }
        });
        settle().await;
        backend.gate.add_permits(2);
        queued.await.unwrap().unwrap();
        behind.await.unwrap().unwrap();
        assert_eq!(writer.unanswered.load(Ordering::Acquire), 0);
        writer.publish(request("d")).await.unwrap();
        assert_eq!(*backend.log.lock().unwrap(), ["now a", "batch b", "batch c", "now d"]);
    }

    /// A publisher who gives up while waiting for room in the queue is not counted as queued:
    /// the next one still writes at once.
    #[tokio::test]
    async fn giving_up_on_the_way_in_leaves_nothing_counted() {
        let unanswered = AtomicUsize::new(0);
        let ticket = Ticket::take(&unanswered);
        assert_eq!(unanswered.load(Ordering::Acquire), 1);
        drop(ticket);
        assert_eq!(unanswered.load(Ordering::Acquire), 0);
        Ticket::take(&unanswered).hand_over();
        assert_eq!(unanswered.load(Ordering::Acquire), 1, "a queued request is the task's to uncount");
    }
}
