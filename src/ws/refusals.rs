//! Refused WebSocket handshakes, counted and logged with their reason, for every endpoint and both
//! protocols. A browser shows only a closed socket (1006, or a close code), so the log is where an
//! operator learns why; and since anyone can knock, at most one line per kind of refusal every
//! [`EVERY`], which says how many of that kind went unlogged before it.

use crate::app::AppState;
use crate::connections::ClientAddr;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// At most one line per kind of refusal this often.
const EVERY: Duration = Duration::from_secs(10);

/// When each kind of refusal was last logged, and how many of it were not since.
#[derive(Default)]
pub(crate) struct Refusals(Mutex<HashMap<&'static str, Logged>>);

struct Logged {
    at: Instant,
    unlogged: u64,
}

impl Refusals {
    /// `Some(refusals of this kind not logged since the last line)` when this one gets a line.
    fn take_turn(&self, kind: &'static str, now: Instant) -> Option<u64> {
        let mut kinds = self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        match kinds.get_mut(kind) {
            Some(logged) if now.duration_since(logged.at) < EVERY => {
                logged.unlogged += 1;
                None
            }
            Some(logged) => Some(std::mem::replace(logged, Logged { at: now, unlogged: 0 }).unlogged),
            None => {
                kinds.insert(kind, Logged { at: now, unlogged: 0 });
                Some(0)
            }
        }
    }
}

/// Counts a refused handshake of `client` and logs it when its kind's turn comes. `kind` names the
/// refusal (`origin`, an authentication reason of `/metrics` such as `expired`, `user_socket_cap`,
/// `anonymous_cap`, `connect_proxy`, `bad_connect`); `reason` says what the client was told, made
/// only for a line.
pub(crate) fn refused(
    state: &AppState,
    kind: &'static str,
    client: ClientAddr,
    reason: impl FnOnce() -> String,
) {
    state.metrics.socket_rejections.inc();
    if let Some(unlogged) = state.refusals.take_turn(kind, Instant::now()) {
        let reason = reason();
        tracing::info!(kind, reason, %client, unlogged_since_last = unlogged, "WebSocket refused");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_kind_per_interval_saying_how_many_went_unlogged() {
        let refusals = Refusals::default();
        let start = Instant::now();
        assert_eq!(refusals.take_turn("expired", start), Some(0));
        assert_eq!(refusals.take_turn("origin", start), Some(0), "each kind has its own turn");
        for _ in 0..3 {
            assert_eq!(refusals.take_turn("expired", start + Duration::from_secs(1)), None);
        }
        assert_eq!(refusals.take_turn("expired", start + EVERY), Some(3));
        assert_eq!(refusals.take_turn("expired", start + EVERY + Duration::from_secs(1)), None);
        assert_eq!(refusals.take_turn("origin", start + EVERY), Some(0));
    }
}
