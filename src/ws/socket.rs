//! One socket's life, shared by every endpoint: the greeting, the loop (idle timeout with pings,
//! pushed frames written in batches), and the binding to a token: a warning before it expires,
//! close 4001 when it does, close 4003 when it is revoked. What the client sends (limits,
//! in-band refresh, the endpoint's frames) is `incoming`.

use super::close::{self, Close};
use super::gate::Gated;
use crate::app::AppState;
use crate::auth::bindings::Binding;
use crate::auth::tokens::Claims;
use crate::auth::{Identity, Mode};
use crate::token_bucket::TokenBucket;
use axum::extract::ws::{Message, Utf8Bytes, WebSocket};
use futures_util::SinkExt;
use serde_json::json;
use std::future::Future;
use std::time::Duration;
use tokio::time::{sleep_until, Instant};

mod incoming;

/// What an endpoint does with the frames its socket hands it.
pub(crate) trait Endpoint: Send {
    /// A text frame (control frames such as in-band refresh are handled before this). Returns
    /// the frames to send, or why to close.
    fn on_text(
        &mut self,
        text: &str,
        identity: Option<&Identity>,
    ) -> impl Future<Output = Result<Vec<String>, Close>> + Send;

    /// Whether text frames already waiting behind one are handed over together
    /// ([`Self::on_texts`]). Off by default: looking costs a read per frame.
    const TAKES_BATCHES: bool = false;

    /// Text frames that arrived together, answered in order; by default one by one. What it
    /// answered before a close is sent before closing.
    fn on_texts(
        &mut self,
        texts: Vec<Utf8Bytes>,
        identity: Option<&Identity>,
    ) -> impl Future<Output = (Vec<String>, Option<Close>)> + Send {
        async move {
            let mut replies = Vec::new();
            for text in texts {
                match self.on_text(text.as_str(), identity).await {
                    Ok(more) => replies.extend(more),
                    Err(close) => return (replies, Some(close)),
                }
            }
            (replies, None)
        }
    }

    /// The socket was bound to a new token (an in-band refresh): what it follows that
    /// `identity` no longer allows ends here. Returns the frames that say so.
    fn rebound(&mut self, identity: &Identity) -> impl Future<Output = Vec<String>> + Send {
        let _ = identity;
        std::future::ready(Vec::new())
    }

    /// A binary frame. Text protocols close with 1003.
    fn on_binary(&mut self) -> Result<Vec<String>, Close> {
        Err(Close::new(close::UNSUPPORTED_DATA, "binary frames are not accepted"))
    }

    /// How the socket says it ends for `ending`: wsguard's close codes by default.
    fn close_for(&self, ending: Ending) -> Close {
        match ending {
            Ending::Shutdown => Close::new(close::GOING_AWAY, "server shutting down"),
            Ending::Revoked => Close::new(close::REVOKED, "token revoked"),
            Ending::Expired => Close::new(close::EXPIRED, "token expired"),
            Ending::RateLimited => Close::new(close::RATE_LIMITED, "rate limited"),
            Ending::Idle => Close::new(close::NORMAL, "idle timeout"),
        }
    }

    /// The frame that warns the token expires in `in_s` seconds, once per token; `None` sends
    /// nothing (a protocol whose clients refresh on their own schedule).
    fn expiring(&self, in_s: u64) -> Option<String> {
        Some(json!({"type": "expiring", "in_s": in_s}).to_string())
    }

    /// The ping sent every ping interval as a text frame, whether or not the client was silent;
    /// `None`: a WebSocket ping, only to a client silent that long.
    fn ping(&self) -> Option<&'static str> {
        None
    }

    /// An in-band refresh among the client's frames: wsguard's `{"type":"refresh","token":…}`.
    fn refresh_request(&self, text: &str) -> Option<RefreshRequest> {
        incoming::refresh_request(text).map(|token| RefreshRequest { token, id: 0 })
    }

    /// The answer to a refresh: the socket now bound to `identity`, or why it stays on its token.
    fn refreshed(&self, request: &RefreshRequest, answer: Result<&Identity, RefreshRefusal>) -> String {
        let _ = request;
        match answer {
            Ok(identity) => json!({"type": "refreshed", "exp": identity.claims.exp}).to_string(),
            Err(refusal) => refusal.frame(),
        }
    }

    /// Frames from elsewhere (a channel's fan-out). The default never yields.
    fn outgoing(&mut self) -> impl Future<Output = Outgoing> + Send {
        std::future::pending()
    }

    /// What [`Self::outgoing`] would yield at once, without waiting: lets the socket write every
    /// frame already queued and flush once.
    fn ready(&mut self) -> Option<Outgoing> {
        None
    }
}

/// Why the socket layer ends a socket (its endpoint's protocol says how: [`Endpoint::close_for`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ending {
    Shutdown,
    Revoked,
    Expired,
    RateLimited,
    /// Silent past the idle timeout.
    Idle,
}

/// A client's in-band refresh: the new token, and the command's id where its protocol has one.
pub(crate) struct RefreshRequest {
    pub(crate) token: String,
    pub(crate) id: u32,
}

/// Why a refresh left the socket on its old token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RefreshRefusal {
    /// An anonymous socket has no token to refresh.
    Anonymous,
    OtherUser,
    OtherIssuer,
    /// Not a verdict on the token (the store or a trusted issuer's keys unavailable): try again.
    Unavailable(String),
    /// The token was refused: expired, or revoked or invalid.
    Refused {
        detail: String,
        expired: bool,
    },
}

impl RefreshRefusal {
    /// What the client is told.
    pub(crate) fn detail(&self) -> String {
        match self {
            RefreshRefusal::Anonymous => "anonymous sockets have no token to refresh".into(),
            RefreshRefusal::OtherUser => "token belongs to another user".into(),
            RefreshRefusal::OtherIssuer => "token from another issuer".into(),
            RefreshRefusal::Unavailable(detail) | RefreshRefusal::Refused { detail, .. } => detail.clone(),
        }
    }

    /// wsguard's error frame.
    pub(crate) fn frame(&self) -> String {
        let code = match self {
            RefreshRefusal::Anonymous => "bad_request",
            RefreshRefusal::Unavailable(_) => "unavailable",
            _ => "forbidden",
        };
        error_frame(code, &self.detail())
    }
}

/// What an endpoint pushes to its socket unprompted. A frame is shared by every socket it goes to.
pub(crate) enum Outgoing {
    Frame(Utf8Bytes),
    Close(Close),
}

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

/// A live socket and everything its loop keeps between frames.
pub(crate) struct Socket<E> {
    ws: WebSocket,
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

impl<E: Endpoint> Socket<E> {
    pub(crate) fn new(ws: WebSocket, state: AppState, bound: Option<Bound>, mode: Mode, endpoint: E) -> Self {
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
                close::close(self.ws, close).await;
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

    /// The endpoint's warning (`{"type":"expiring","in_s":N}`), once per token.
    async fn warn(&mut self, expiry: Instant) -> Step {
        self.warned = true;
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

pub(crate) fn error_frame(code: &str, detail: &str) -> String {
    json!({"type": "error", "code": code, "detail": detail}).to_string()
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
