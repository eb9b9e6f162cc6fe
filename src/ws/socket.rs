//! One socket's life, shared by every endpoint: the greeting, the loop (idle timeout with pings,
//! pushed frames written in batches), and the binding to a token: a warning before it expires,
//! a close when it does and when it is revoked (4001 and 4003 in wsguard's protocol). What the
//! client sends (limits, in-band refresh, the endpoint's frames) is `incoming`; what an endpoint
//! plugs in, and how its protocol speaks for the socket, is `endpoint`.

use super::close::Close;
use super::gate::Gated;
use crate::app::AppState;
use crate::auth::bindings::Binding;
use crate::auth::tokens::Claims;
use crate::auth::{Identity, Mode};
use crate::token_bucket::TokenBucket;
use axum::extract::ws::{Message, WebSocket};
use std::time::Duration;
use tokio::time::{sleep_until, Instant};

mod endpoint;
mod incoming;
mod prolong;
mod wire;

pub(crate) use endpoint::{Ending, Endpoint, Outgoing, RefreshRefusal, RefreshRequest};
pub(crate) use wire::Wire;

/// The most pushed frames written before one flush.
const PUSH_BATCH: usize = 64;

/// A socket bound to a token: who it is, and its place among the bindings that revocations reach.
pub(crate) struct Bound {
    pub(crate) identity: Identity,
    pub(crate) binding: Binding,
}

/// What a step of the loop decided.
enum Step {
    Continue,
    /// Close with this code and reason.
    Close(Close),
    /// The peer is gone: nothing more can be sent.
    Gone,
}

/// What woke the loop.
enum Woken {
    Shutdown,
    Revoked,
    Timer,
    Pushed(Outgoing),
    Received(Option<Result<Message, axum::Error>>),
}

/// The socket's deadlines, all on one timer: the next ping tick, and the token's expiry (with
/// its warning before).
struct Deadlines {
    ping_every: Duration,
    next_ping: Instant,
    /// The `exp` that `expiry` was computed for.
    armed_for: Option<i64>,
    expiry: Option<Instant>,
}

impl Deadlines {
    fn new(ping_every: Duration) -> Deadlines {
        Deadlines { ping_every, next_ping: Instant::now() + ping_every, armed_for: None, expiry: None }
    }

    /// When the timer must fire next: the ping tick, or the warning or expiry if sooner.
    fn earliest(&self, warned: bool, warning: Duration) -> Instant {
        let Some(expiry) = self.expiry else {
            return self.next_ping;
        };
        let warn_at = if warned { expiry } else { expiry.checked_sub(warning).unwrap_or(expiry) };
        self.next_ping.min(warn_at)
    }
}

/// A live socket and everything its loop keeps between frames: a WebSocket, or an emulated
/// connection's HTTP stream.
pub(crate) struct Socket<E, W = WebSocket> {
    ws: W,
    state: AppState,
    /// `None`: an anonymous socket (optional mode), with no token to expire or revoke.
    bound: Option<Bound>,
    mode: Mode,
    endpoint: E,
    /// `--max-messages-per-sec`, bursts up to as many.
    rate: TokenBucket,
    last_seen: Instant,
    /// The `expiring` warning went out for the current token.
    warned: bool,
}

impl<E: Endpoint, W: Wire> Socket<E, W> {
    pub(crate) fn new(ws: W, state: AppState, bound: Option<Bound>, mode: Mode, endpoint: E) -> Self {
        let per_sec = state.config.socket.max_messages_per_sec;
        let rate = TokenBucket::new(per_sec, per_sec, Instant::now());
        Socket { ws, state, bound, mode, endpoint, rate, last_seen: Instant::now(), warned: false }
    }

    /// Sends `greeting`, then runs the socket until it closes.
    pub(crate) async fn run(mut self, greeting: Vec<String>) {
        let metrics = self.state.clone();
        metrics.metrics.sockets_open.inc();
        metrics.metrics.sockets_total.inc();
        let _open = scopeguard(|| metrics.metrics.sockets_open.dec());
        for text in greeting {
            if !self.send(text).await {
                return;
            }
        }
        match self.serve().await {
            Step::Close(close) => {
                tracing::debug!(code = close.code, reason = %close.reason, "closing socket");
                self.ws.close(close).await;
            }
            Step::Gone | Step::Continue => {}
        }
    }

    /// The loop: whichever comes first of shutdown, revocation, the timer (the ping tick, the
    /// expiry warning, the expiry), a pushed frame and a received one. One timer serves all three
    /// deadlines and is re-armed only when the earliest moves, so a message costs no timer
    /// registration; shutdown and revocation are looked at through their flags (`Gated`), so a
    /// wake-up costs no lock.
    async fn serve(&mut self) -> Step {
        let state = self.state.clone();
        let cancelled = state.shutdown.cancelled();
        tokio::pin!(cancelled);
        let mut shutdown = Gated::new(cancelled, || state.shutdown.has_begun());
        let signal = self.bound.as_ref().map(|b| b.binding.signal.clone());
        let revocation = async {
            match &signal {
                Some(signal) => signal.revoked().await,
                None => std::future::pending().await,
            }
        };
        tokio::pin!(revocation);
        let mut revoked = Gated::new(revocation, || signal.as_ref().is_some_and(|s| s.is_revoked()));
        let mut deadlines = Deadlines::new(self.state.config.socket.ping_interval);
        let timer = sleep_until(deadlines.next_ping);
        tokio::pin!(timer);
        let mut fired = false;
        loop {
            let exp = self.bound.as_ref().map(|b| b.identity.claims.exp);
            if exp != deadlines.armed_for {
                deadlines.armed_for = exp;
                deadlines.expiry = self.bound.as_ref().map(|b| deadline(&b.identity.claims));
            }
            let at = deadlines.earliest(self.warned, self.state.config.socket.expiry_warning);
            if fired || at != timer.deadline() {
                timer.as_mut().reset(at);
                fired = false;
            }
            // Frames already queued go out without polling anything else for them; the select
            // below still checks shutdown, revocation and the timer after every batch.
            if let Some(pushed) = self.endpoint.ready() {
                let step = self.push(pushed).await;
                if !matches!(step, Step::Continue) {
                    return step;
                }
            }
            let woken = tokio::select! {
                biased;
                _ = &mut shutdown => Woken::Shutdown,
                _ = &mut revoked => Woken::Revoked,
                _ = &mut timer => Woken::Timer,
                pushed = self.endpoint.outgoing() => Woken::Pushed(pushed),
                received = self.ws.recv() => Woken::Received(received),
            };
            // Handled after the select, whose futures are gone by then: the socket's task is
            // sized by the largest of these, not by the select's futures and these together.
            let step = match woken {
                Woken::Shutdown => Step::Close(self.endpoint.close_for(Ending::Shutdown)),
                Woken::Revoked => self.revoked(),
                Woken::Timer => {
                    fired = true;
                    self.on_timer(&mut deadlines).await
                }
                Woken::Pushed(pushed) => self.push(pushed).await,
                Woken::Received(received) => self.receive(received).await,
            };
            if !matches!(step, Step::Continue) {
                return step;
            }
        }
    }

    /// The timer fired: whichever of expiry, its warning and the ping tick is due.
    async fn on_timer(&mut self, deadlines: &mut Deadlines) -> Step {
        let now = Instant::now();
        if let Some(expiry) = deadlines.expiry {
            if now >= expiry {
                if self.refreshed_by_proxy() {
                    return self.prolonged(&mut deadlines.expiry).await;
                }
                return self.expired();
            }
            let warning = self.state.config.socket.expiry_warning;
            if !self.warned && now >= expiry.checked_sub(warning).unwrap_or(now) {
                let step = self.warn(expiry).await;
                if !matches!(step, Step::Continue) {
                    return step;
                }
            }
        }
        if now >= deadlines.next_ping {
            // Like an interval that skips what it missed: at most one tick per period.
            deadlines.next_ping = (deadlines.next_ping + deadlines.ping_every).max(now);
            return self.tick().await;
        }
        Step::Continue
    }

    fn revoked(&self) -> Step {
        self.state.metrics.socket_closed_revoked.inc();
        Step::Close(self.endpoint.close_for(Ending::Revoked))
    }

    fn expired(&self) -> Step {
        self.state.metrics.socket_closed_expired.inc();
        Step::Close(self.endpoint.close_for(Ending::Expired))
    }

    /// The endpoint's warning (`{"type":"expiring","in_s":N}`), once per token; none for a
    /// connection of the connect proxy, which has no token to renew.
    async fn warn(&mut self, expiry: Instant) -> Step {
        self.warned = true;
        if self.bound.as_ref().is_some_and(|b| b.identity.issuer == crate::auth::Issuer::Proxy) {
            return Step::Continue;
        }
        let left = expiry.saturating_duration_since(Instant::now()).as_secs();
        match self.endpoint.expiring(left) {
            Some(frame) => self.sent(frame).await,
            None => Step::Continue,
        }
    }

    /// The ping tick: close a socket silent too long, ping one silent a while (or every tick,
    /// where the protocol pings with a frame of its own).
    async fn tick(&mut self) -> Step {
        let silent = self.last_seen.elapsed();
        if silent >= self.state.config.socket.idle_timeout {
            return Step::Close(self.endpoint.close_for(Ending::Idle));
        }
        let sent = match self.endpoint.ping() {
            Some(ping) => self.ws.send(Message::Text(ping.into())).await,
            None if silent >= self.state.config.socket.ping_interval => {
                self.ws.send(Message::Ping(Default::default())).await
            }
            None => Ok(()),
        };
        if sent.is_err() {
            return Step::Gone;
        }
        Step::Continue
    }

    /// Writes `pushed` and every frame the endpoint has ready behind it (up to a batch), then
    /// flushes once: a socket that fell behind catches up in few writes.
    async fn push(&mut self, pushed: Outgoing) -> Step {
        let mut next = Some(pushed);
        let mut written = 0;
        while let Some(pushed) = next {
            match pushed {
                Outgoing::Frame(frame) => {
                    if self.ws.feed(Message::Text(frame)).await.is_err() {
                        return Step::Gone;
                    }
                }
                // Closing writes out what was fed before it.
                Outgoing::Close(close) => return Step::Close(close),
            }
            written += 1;
            next = if written < PUSH_BATCH { self.endpoint.ready() } else { None };
        }
        match self.ws.flush().await {
            Ok(()) => Step::Continue,
            Err(_) => Step::Gone,
        }
    }

    async fn send(&mut self, text: String) -> bool {
        self.ws.send(Message::Text(text.into())).await.is_ok()
    }

    async fn sent(&mut self, text: String) -> Step {
        if self.send(text).await {
            Step::Continue
        } else {
            Step::Gone
        }
    }
}

/// The instant a token's `exp` falls, on the monotonic clock.
fn deadline(claims: &Claims) -> Instant {
    Instant::now() + crate::clock::until(claims.exp)
}

/// Runs `f` when dropped: keeps the open-sockets gauge right on every exit path.
fn scopeguard<F: FnOnce()>(f: F) -> impl Drop {
    struct Guard<F: FnOnce()>(Option<F>);
    impl<F: FnOnce()> Drop for Guard<F> {
        fn drop(&mut self) {
            if let Some(f) = self.0.take() {
                f();
            }
        }
    }
    Guard(Some(f))
}
