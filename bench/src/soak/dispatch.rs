//! What drives the load: publications and churn.

use super::board::C;
use super::*;
use crate::common::secs;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use tokio::time::Instant;

// --- dispatchers --------------------------------------------------------------------------------

/// A random joined member slot, if one is found in a few tries.
pub(super) fn pick_joined(ctx: &Ctx) -> Option<usize> {
    (0..32).map(|_| random_below(ctx.slots.len())).find(|&i| ctx.slots[i].joined.load(Ordering::Relaxed))
}

/// `--rate` publications a second from random members, until `until`.
pub(super) async fn publish(ctx: Arc<Ctx>, until: Instant) {
    let mut ticks = tokio::time::interval(secs(1.0 / ctx.args.rate));
    for seq in 0u64.. {
        ticks.tick().await;
        if Instant::now() >= until {
            break;
        }
        let sent = pick_joined(&ctx).is_some_and(|i| ctx.slots[i].cmds.try_send(Cmd::Send(seq)).is_ok());
        if !sent {
            ctx.board.add(C::sends_skipped);
        }
    }
}

/// `--churn` client closes a second, of random members, until `until`.
pub(super) async fn churn(ctx: Arc<Ctx>, until: Instant) {
    let mut ticks = tokio::time::interval(secs(1.0 / ctx.args.churn));
    loop {
        ticks.tick().await;
        if Instant::now() >= until {
            break;
        }
        if let Some(i) = pick_joined(&ctx) {
            let _ = ctx.slots[i].cmds.try_send(Cmd::Churn);
        }
    }
}
