//! A future that a socket's loop polls on every wake-up, but that is rarely ready (shutdown, a
//! revocation), polled again only once its flag says it may be. Polling a waiting `Notified`
//! takes its lock, and the shutdown token's lock is shared by every socket on the node: at a
//! thousand deliveries per publication, that lock was paid a thousand times over for nothing.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

/// `future`, polled when `may_be_ready` says so or when the task's waker is not the one it
/// registered (so its wake-up always reaches whoever polls it).
pub(crate) struct Gated<'a, F, R> {
    future: Pin<&'a mut F>,
    may_be_ready: R,
    registered: Option<Waker>,
}

impl<'a, F: Future, R: Fn() -> bool> Gated<'a, F, R> {
    /// `may_be_ready` must turn true before whatever wakes `future` does.
    pub(crate) fn new(future: Pin<&'a mut F>, may_be_ready: R) -> Self {
        Gated { future, may_be_ready, registered: None }
    }
}

impl<F: Future, R: Fn() -> bool + Unpin> Future for Gated<'_, F, R> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.get_mut();
        let registered = this.registered.as_ref().is_some_and(|waker| waker.will_wake(cx.waker()));
        if registered && !(this.may_be_ready)() {
            return Poll::Pending;
        }
        let poll = this.future.as_mut().poll(cx);
        if poll.is_pending() && !registered {
            this.registered = Some(cx.waker().clone());
        }
        poll
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::poll_fn;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::time::Duration;
    use tokio::sync::Notify;

    #[tokio::test]
    async fn leaves_the_future_alone_until_its_flag_is_up_then_completes() {
        let (flag, notify) = (Arc::new(AtomicBool::new(false)), Arc::new(Notify::new()));
        let polls = AtomicUsize::new(0);
        let notified = notify.notified();
        tokio::pin!(notified);
        let counted = poll_fn(|cx| {
            polls.fetch_add(1, Ordering::Relaxed);
            notified.as_mut().poll(cx)
        });
        tokio::pin!(counted);
        let flag_read = flag.clone();
        let mut gated = Gated::new(counted, move || flag_read.load(Ordering::Acquire));
        for _ in 0..3 {
            let pending = poll_fn(|cx| Poll::Ready(Pin::new(&mut gated).poll(cx).is_pending())).await;
            assert!(pending);
        }
        assert_eq!(polls.load(Ordering::Relaxed), 1, "registered once, then left alone");
        let notifier = notify.clone();
        tokio::spawn(async move {
            flag.store(true, Ordering::Release);
            notifier.notify_one();
        });
        tokio::time::timeout(Duration::from_secs(5), gated).await.expect("woken, and then polled");
        assert_eq!(polls.load(Ordering::Relaxed), 2);
    }
}
