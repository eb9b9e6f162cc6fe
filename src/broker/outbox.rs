//! A socket's outbox: the deliveries the hub queued for it, bounded. Unlike a tokio channel,
//! which allocates a block of 32 slots when made, the queue holds nothing until something is
//! queued, grows with what is queued, and gives back what a burst made it grow to once drained:
//! an idle socket's outbox is one small allocation.
//!
//! Cheap per delivery, since a publication to a large channel goes through a thousand of them:
//! the socket takes everything queued under one lock, and is woken only by the delivery that
//! finds its queue empty (the ones behind it find the socket awake already).

use super::Delivery;
use futures_util::task::AtomicWaker;
use std::collections::VecDeque;
use std::future::poll_fn;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

/// Capacity an emptied queue keeps; more is given back.
pub(crate) const KEPT_CAPACITY: usize = 8;

struct Shared {
    queue: Mutex<VecDeque<Delivery>>,
    bound: usize,
    /// How many are queued, kept with the queue: lets the socket see an empty queue without
    /// taking the lock.
    queued: AtomicUsize,
    /// The sender is gone: once the queue is drained, the outbox is closed.
    closed: AtomicBool,
    /// The receiver's task, registered before it looks at the queue.
    waker: AtomicWaker,
}

/// The hub's end.
pub(crate) struct Sender(Arc<Shared>);

/// The socket's end.
pub(crate) struct Receiver(Arc<Shared>);

/// Why a delivery was not queued.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum TrySendError {
    /// `bound` deliveries are waiting already.
    Full,
    /// The socket is gone.
    Closed,
}

/// An outbox of at most `bound` deliveries.
pub(crate) fn channel(bound: usize) -> (Sender, Receiver) {
    let shared = Arc::new(Shared {
        queue: Mutex::new(VecDeque::new()),
        bound,
        queued: AtomicUsize::new(0),
        closed: AtomicBool::new(false),
        waker: AtomicWaker::new(),
    });
    (Sender(shared.clone()), Receiver(shared))
}

impl Sender {
    /// Queues `delivery` unless the outbox is full or its socket gone.
    #[cfg(test)]
    pub(crate) fn try_send(&self, delivery: Delivery) -> Result<(), TrySendError> {
        self.try_send_all(1, std::iter::once(delivery))
    }

    /// Queues the `count` `deliveries`, or none when they do not all fit (or the socket is
    /// gone): one lock and at most one wake-up for a batch.
    pub(crate) fn try_send_all(
        &self,
        count: usize,
        deliveries: impl Iterator<Item = Delivery>,
    ) -> Result<(), TrySendError> {
        if count == 0 {
            return Ok(());
        }
        if Arc::strong_count(&self.0) == 1 {
            return Err(TrySendError::Closed);
        }
        let mut queue = self.0.queue.lock().expect("outbox lock poisoned");
        if queue.len() + count > self.0.bound {
            return Err(TrySendError::Full);
        }
        let was_empty = queue.is_empty();
        queue.extend(deliveries);
        self.0.queued.store(queue.len(), Ordering::Release);
        drop(queue);
        // The receiver waits only after finding the queue empty, so what is queued behind
        // something finds it awake, or about to take both.
        if was_empty {
            self.0.waker.wake();
        }
        Ok(())
    }
}

impl Drop for Sender {
    fn drop(&mut self) {
        self.0.closed.store(true, Ordering::Release);
        self.0.waker.wake();
    }
}

impl Receiver {
    /// Moves every queued delivery to the back of `into`, under one lock; how many it moved.
    pub(crate) fn drain_into(&mut self, into: &mut VecDeque<Delivery>) -> usize {
        if self.0.queued.load(Ordering::Acquire) == 0 {
            return 0;
        }
        let mut queue = self.0.queue.lock().expect("outbox lock poisoned");
        let moved = queue.len();
        self.0.queued.store(0, Ordering::Release);
        if into.is_empty() {
            std::mem::swap(into, &mut queue);
        } else {
            into.extend(queue.drain(..));
        }
        if queue.capacity() > KEPT_CAPACITY {
            queue.shrink_to(KEPT_CAPACITY);
        }
        moved
    }

    /// Waits until something is queued and moves it all to `into` (`true`), or until the hub
    /// dropped the socket and the queue is drained (`false`). Cancel-safe: what it moved is in
    /// `into`, whenever it is dropped.
    pub(crate) async fn wait_into(&mut self, into: &mut VecDeque<Delivery>) -> bool {
        poll_fn(|cx| self.poll_drain(cx, into)).await
    }

    fn poll_drain(&mut self, cx: &mut Context<'_>, into: &mut VecDeque<Delivery>) -> Poll<bool> {
        self.0.waker.register(cx.waker());
        if self.drain_into(into) > 0 {
            return Poll::Ready(true);
        }
        if self.0.closed.load(Ordering::Acquire) {
            // The sender may have queued one last delivery before closing.
            return Poll::Ready(self.drain_into(into) > 0);
        }
        Poll::Pending
    }

    /// The next delivery; `None` once the hub dropped the socket and the queue is drained.
    #[cfg(test)]
    pub(crate) async fn recv(&mut self) -> Option<Delivery> {
        poll_fn(|cx| {
            self.0.waker.register(cx.waker());
            // Read before the queue: once closed, nothing more is queued.
            let closed = self.0.closed.load(Ordering::Acquire);
            let mut queue = self.0.queue.lock().expect("outbox lock poisoned");
            let first = queue.pop_front();
            self.0.queued.store(queue.len(), Ordering::Release);
            match first {
                Some(delivery) => Poll::Ready(Some(delivery)),
                None if closed => Poll::Ready(None),
                None => Poll::Pending,
            }
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Event, Frames, View};
    use super::*;

    fn delivery(frame: &str) -> Delivery {
        let frames = Frames { room: Some(frame.into()), ..Frames::default() };
        Delivery { event: Arc::new(Event { channel: Arc::from("c"), frames }), view: View::Room }
    }

    fn text(delivery: Option<Delivery>) -> Option<String> {
        delivery.and_then(|d| d.frame().map(|f| f.to_string()))
    }

    #[tokio::test]
    async fn bounded_in_order_and_closed_once_drained() {
        let (outbox, mut inbox) = channel(2);
        assert_eq!(outbox.try_send(delivery("a")), Ok(()));
        assert_eq!(outbox.try_send(delivery("b")), Ok(()));
        assert_eq!(outbox.try_send(delivery("c")), Err(TrySendError::Full));
        assert_eq!(text(inbox.recv().await).as_deref(), Some("a"));
        assert_eq!(outbox.try_send(delivery("d")), Ok(()));
        drop(outbox);
        assert_eq!(text(inbox.recv().await).as_deref(), Some("b"));
        assert_eq!(text(inbox.recv().await).as_deref(), Some("d"));
        assert!(inbox.recv().await.is_none(), "closed once drained");
    }

    #[tokio::test]
    async fn a_waiting_receiver_wakes_and_a_gone_one_refuses() {
        let (outbox, mut inbox) = channel(4);
        let waiting = tokio::spawn(async move { text(inbox.recv().await) });
        tokio::task::yield_now().await;
        outbox.try_send(delivery("x")).unwrap();
        assert_eq!(waiting.await.unwrap().as_deref(), Some("x"));
        assert_eq!(outbox.try_send(delivery("y")), Err(TrySendError::Closed));
    }

    #[tokio::test]
    async fn what_queued_while_the_socket_was_busy_comes_in_one_take_and_it_wakes_again() {
        let (outbox, mut inbox) = channel(8);
        for frame in ["a", "b", "c"] {
            outbox.try_send(delivery(frame)).unwrap();
        }
        let mut taken = VecDeque::new();
        assert!(inbox.wait_into(&mut taken).await);
        let frames: Vec<_> = taken.drain(..).map(|d| text(Some(d)).unwrap()).collect();
        assert_eq!(frames, ["a", "b", "c"]);
        let waiting = tokio::spawn(async move {
            let mut taken = VecDeque::new();
            inbox.wait_into(&mut taken).await;
            taken.into_iter().map(|d| text(Some(d)).unwrap()).collect::<Vec<_>>()
        });
        tokio::task::yield_now().await;
        outbox.try_send(delivery("d")).unwrap();
        assert_eq!(waiting.await.unwrap(), ["d"]);
    }

    #[tokio::test]
    async fn a_drained_queue_gives_back_what_a_burst_grew() {
        let (outbox, mut inbox) = channel(256);
        for i in 0..256 {
            outbox.try_send(delivery(&i.to_string())).unwrap();
        }
        let mut drained = VecDeque::new();
        assert_eq!(inbox.drain_into(&mut drained), 256);
        let capacity = inbox.0.queue.lock().unwrap().capacity();
        assert!(capacity <= KEPT_CAPACITY, "capacity {capacity} kept after draining");
        assert_eq!(drained.len(), 256);
    }
}
