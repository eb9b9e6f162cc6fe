//! The server's shutdown: a token that long-running tasks wait on, and a flag that each socket
//! reads on every wake-up. The token's own `is_cancelled` takes a lock that all its clones share,
//! and at a thousand socket wake-ups per publication that lock was contended on every one.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use tokio_util::sync::{CancellationToken, WaitForCancellationFuture};

#[derive(Clone, Default)]
pub(crate) struct Shutdown {
    token: CancellationToken,
    begun: Arc<AtomicBool>,
}

impl Shutdown {
    /// Starts the shutdown: the flag first, so that whatever the token wakes sees it up.
    pub(crate) fn begin(&self) {
        self.begun.store(true, Ordering::Release);
        self.token.cancel();
    }

    /// Without a lock.
    pub(crate) fn has_begun(&self) -> bool {
        self.begun.load(Ordering::Acquire)
    }

    /// Completes once the shutdown has begun.
    pub(crate) fn cancelled(&self) -> WaitForCancellationFuture<'_> {
        self.token.cancelled()
    }

    /// A token cancelled with the shutdown, which cannot itself start it.
    pub(crate) fn token(&self) -> CancellationToken {
        self.token.child_token()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_flag_and_every_token_follow_the_shutdown() {
        let shutdown = Shutdown::default();
        let token = shutdown.token();
        token.cancel();
        assert!(!shutdown.has_begun(), "a token cannot start the shutdown");
        let other = shutdown.token();
        assert!(!other.is_cancelled());
        shutdown.begin();
        assert!(shutdown.has_begun());
        assert!(other.is_cancelled());
        shutdown.cancelled().await;
    }
}
