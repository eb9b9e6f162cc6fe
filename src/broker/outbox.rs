//! A socket's outbox: the deliveries the hub queued for it, bounded. Unlike a tokio channel,
//! which allocates a block of 32 slots when made, the queue holds nothing until something is
//! queued, grows with what is queued, and gives back what a burst made it grow to once drained:
//! an idle socket's outbox is one small allocation.

use super::Delivery;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::Notify;

/// Capacity an emptied queue keeps; more is given back.
const KEPT_CAPACITY: usize = 8;

struct Shared {
    queue: Mutex<VecDeque<Delivery>>,
    bound: usize,
    /// The sender is gone: once the queue is drained, the outbox is closed.
    closed: AtomicBool,
    /// Wakes the receiver; a wake-up given while it is not waiting is kept for its next wait.
    wake: Notify,
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
        closed: AtomicBool::new(false),
        wake: Notify::new(),
    });
    (Sender(shared.clone()), Receiver(shared))
}

impl Sender {
    /// Queues `delivery` unless the outbox is full or its socket gone.
    pub(crate) fn try_send(&self, delivery: Delivery) -> Result<(), TrySendError> {
        if Arc::strong_count(&self.0) == 1 {
            return Err(TrySendError::Closed);
        }
        let mut queue = self.0.queue.lock().expect("outbox lock poisoned");
        if queue.len() >= self.0.bound {
            return Err(TrySendError::Full);
        }
        queue.push_back(delivery);
        drop(queue);
        self.0.wake.notify_one();
        Ok(())
    }
}

impl Drop for Sender {
    fn drop(&mut self) {
        self.0.closed.store(true, Ordering::Release);
        self.0.wake.notify_one();
    }
}

impl Receiver {
    /// The next delivery; `None` once the hub dropped the socket and the queue is drained.
    /// Cancel-safe: dropped before it completes, it takes nothing from the queue.
    pub(crate) async fn recv(&mut self) -> Option<Delivery> {
        loop {
            if let Some(delivery) = self.try_recv() {
                return Some(delivery);
            }
            if self.0.closed.load(Ordering::Acquire) {
                // The sender may have queued one last delivery before closing.
                return self.try_recv();
            }
            self.0.wake.notified().await;
        }
    }

    /// The next delivery if one is queued.
    pub(crate) fn try_recv(&mut self) -> Option<Delivery> {
        let mut queue = self.0.queue.lock().expect("outbox lock poisoned");
        let delivery = queue.pop_front();
        if queue.is_empty() && queue.capacity() > KEPT_CAPACITY {
            queue.shrink_to(KEPT_CAPACITY);
        }
        delivery
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Event, Frames, View};
    use super::*;

    fn delivery(frame: &str) -> Delivery {
        let frames = Frames { room: Some(frame.into()), channel: None, numbered: None };
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
    async fn a_drained_queue_gives_back_what_a_burst_grew() {
        let (outbox, mut inbox) = channel(256);
        for i in 0..256 {
            outbox.try_send(delivery(&i.to_string())).unwrap();
        }
        while inbox.try_recv().is_some() {}
        let capacity = inbox.0.queue.lock().unwrap().capacity();
        assert!(capacity <= KEPT_CAPACITY, "capacity {capacity} kept after draining");
    }
}
