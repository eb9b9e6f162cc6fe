//! One socket's life, shared by every endpoint: the greeting, the read loop with its limits
//! (message size, rate, idle timeout with pings), and the binding to a token: a warning before
//! it expires, close 4001 when it does, close 4003 when it is revoked, in-band refresh.

use super::registry::Registration;
use crate::app::AppState;
use crate::auth::tokens::Claims;
use crate::auth::transport::{Presented, Transport};
use crate::auth::{Identity, Mode};
use axum::extract::ws::{CloseFrame, Message, WebSocket};
use serde::Deserialize;
use serde_json::json;
use std::future::Future;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::time::{sleep_until, Instant};

pub const NORMAL: u16 = 1000;
pub const GOING_AWAY: u16 = 1001;
pub const UNSUPPORTED_DATA: u16 = 1003;
pub const INVALID_PAYLOAD: u16 = 1007;
pub const POLICY: u16 = 1008;
pub const TOO_BIG: u16 = 1009;
pub const EXPIRED: u16 = 4001;
pub const REVOKED: u16 = 4003;
pub const RATE_LIMITED: u16 = 4029;

/// Why and how the server closes a socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Close {
    pub code: u16,
    pub reason: String,
}

impl Close {
    pub fn new(code: u16, reason: impl Into<String>) -> Close {
        Close { code, reason: reason.into() }
    }
}

/// The socket's limits, from the configuration.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_message_bytes: usize,
    pub max_messages_per_sec: u32,
    pub idle_timeout: Duration,
    pub ping_interval: Duration,
    pub expiry_warning: Duration,
}

/// What an endpoint does with the frames the session hands it.
pub trait Endpoint: Send {
    /// A text frame (control frames such as in-band refresh are handled before this). Returns
    /// the frames to send, or why to close.
    fn on_text(
        &mut self,
        text: &str,
        identity: Option<&Identity>,
    ) -> impl Future<Output = Result<Vec<String>, Close>> + Send;

    /// A binary frame. Text protocols close with 1003.
    fn on_binary(&mut self) -> Result<Vec<String>, Close> {
        Err(Close::new(UNSUPPORTED_DATA, "binary frames are not accepted"))
    }

    /// Frames from elsewhere (a chat room's fan-out). The default never yields.
    fn outgoing(&mut self) -> impl Future<Output = Outgoing> + Send {
        std::future::pending()
    }
}

/// What an endpoint pushes to its socket unprompted.
pub enum Outgoing {
    Frame(std::sync::Arc<str>),
    Close(Close),
}

/// A socket bound to a token: the identity and its place in the registry.
pub struct Bound {
    pub identity: Identity,
    pub registration: Registration,
}

/// Frames a client may send on any endpoint, handled by the session itself.
#[derive(Deserialize)]
struct ControlFrame {
    #[serde(rename = "type")]
    kind: String,
    token: Option<String>,
}

/// Refill-per-second token bucket: `rate` messages a second, bursts up to `rate`.
struct RateLimit {
    rate: f64,
    tokens: f64,
    last: Instant,
}

impl RateLimit {
    fn new(rate: u32) -> RateLimit {
        RateLimit { rate: rate as f64, tokens: rate as f64, last: Instant::now() }
    }

    fn take(&mut self) -> bool {
        let now = Instant::now();
        self.tokens = (self.tokens + now.duration_since(self.last).as_secs_f64() * self.rate).min(self.rate);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// The instant a token's `exp` falls, on the monotonic clock.
fn deadline(claims: &Claims) -> Instant {
    let exp = UNIX_EPOCH + Duration::from_secs(claims.exp.max(0) as u64);
    let left = exp.duration_since(SystemTime::now()).unwrap_or_default();
    Instant::now() + left
}

/// A read error as a close: too big (1009), bad UTF-8 (1007), or the peer is gone (`None`).
fn read_failure(err: axum::Error) -> Option<Close> {
    let inner = err.into_inner();
    match inner.downcast_ref::<tungstenite::Error>() {
        Some(tungstenite::Error::Capacity(_)) => Some(Close::new(TOO_BIG, "message too big")),
        Some(tungstenite::Error::Utf8(_)) => Some(Close::new(INVALID_PAYLOAD, "invalid UTF-8")),
        Some(tungstenite::Error::Protocol(_)) => Some(Close::new(1002, "protocol error")),
        _ => None,
    }
}

pub async fn send_text(socket: &mut WebSocket, text: String) -> bool {
    socket.send(Message::Text(text.into())).await.is_ok()
}

/// How long a closing socket waits for the client's close frame before dropping the connection.
const CLOSE_HANDSHAKE: Duration = Duration::from_secs(1);

/// Sends the close frame, then waits (bounded) for the client's reply, so that the connection
/// ends with a FIN after a complete close handshake rather than a reset that can swallow the
/// close frame on the client's side.
pub async fn close(mut socket: WebSocket, close: Close) {
    let frame = CloseFrame { code: close.code, reason: close.reason.into() };
    if socket.send(Message::Close(Some(frame))).await.is_err() {
        return;
    }
    let _ = tokio::time::timeout(CLOSE_HANDSHAKE, async {
        while let Some(Ok(message)) = socket.recv().await {
            if matches!(message, Message::Close(_)) {
                break;
            }
        }
    })
    .await;
}

/// Runs a socket until it closes. `greeting` is sent first; `bound` is `None` for an anonymous
/// socket (optional mode), which has no token to expire or revoke.
pub async fn run<E: Endpoint>(
    mut socket: WebSocket,
    state: AppState,
    mut bound: Option<Bound>,
    mode: Mode,
    greeting: Vec<String>,
    mut endpoint: E,
) {
    let limits = state.limits;
    state.metrics.sockets_open.inc();
    state.metrics.sockets_total.inc();
    let _open = scopeguard(|| state.metrics.sockets_open.dec());

    for text in greeting {
        if !send_text(&mut socket, text).await {
            return;
        }
    }
    let mut rate = RateLimit::new(limits.max_messages_per_sec);
    let mut last_seen = Instant::now();
    let mut ping = tokio::time::interval_at(Instant::now() + limits.ping_interval, limits.ping_interval);
    let mut warned = false;

    // The timers and signals live across iterations (re-armed only when the token changes), so
    // a message costs no timer registration.
    let far = Instant::now() + Duration::from_secs(100 * 365 * 24 * 3600);
    let expiry = sleep_until(far);
    let warning = sleep_until(far);
    tokio::pin!(expiry, warning);
    let mut armed_for: Option<i64> = None;
    let shutdown = state.shutdown.clone();
    let shutdown = shutdown.cancelled();
    tokio::pin!(shutdown);
    let signal = bound.as_ref().map(|b| b.registration.signal.clone());
    let revoked = async move {
        match signal {
            Some(signal) => signal.wait().await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(revoked);

    let close = loop {
        let exp = bound.as_ref().map(|b| b.identity.claims.exp);
        if exp != armed_for {
            armed_for = exp;
            let at = bound.as_ref().map_or(far, |b| deadline(&b.identity.claims));
            expiry.as_mut().reset(at);
            warning.as_mut().reset(at.checked_sub(limits.expiry_warning).unwrap_or_else(Instant::now));
        }
        tokio::select! {
            biased;
            _ = &mut shutdown => break Close::new(GOING_AWAY, "server shutting down"),
            _ = &mut revoked => {
                state.metrics.socket_closed_revoked.inc();
                break Close::new(REVOKED, "token revoked");
            }
            _ = &mut expiry, if armed_for.is_some() => {
                state.metrics.socket_closed_expired.inc();
                break Close::new(EXPIRED, "token expired");
            }
            _ = &mut warning, if armed_for.is_some() && !warned => {
                warned = true;
                let left = expiry.deadline().saturating_duration_since(Instant::now()).as_secs();
                if !send_text(&mut socket, json!({"type": "expiring", "in_s": left}).to_string()).await {
                    return;
                }
            }
            _ = ping.tick() => {
                let silent = last_seen.elapsed();
                if silent >= limits.idle_timeout {
                    break Close::new(NORMAL, "idle timeout");
                }
                if silent >= limits.ping_interval && socket.send(Message::Ping(Default::default())).await.is_err() {
                    return;
                }
            }
            pushed = endpoint.outgoing() => match pushed {
                Outgoing::Frame(frame) => {
                    if socket.send(Message::Text(frame.as_ref().into())).await.is_err() {
                        return;
                    }
                }
                Outgoing::Close(close) => break close,
            },
            received = socket.recv() => {
                let message = match received {
                    None => return,
                    Some(Err(err)) => match read_failure(err) {
                        Some(close) => break close,
                        None => return,
                    },
                    Some(Ok(message)) => message,
                };
                last_seen = Instant::now();
                let replies = match message {
                    Message::Text(text) => {
                        state.metrics.messages_in.inc();
                        if !rate.take() {
                            break Close::new(RATE_LIMITED, "rate limited");
                        }
                        match refresh_request(text.as_str()) {
                            Some(token) => Ok(vec![refresh(&state, bound.as_mut(), mode, token, &mut warned).await]),
                            None => endpoint.on_text(text.as_str(), bound.as_ref().map(|b| &b.identity)).await,
                        }
                    }
                    Message::Binary(_) => {
                        state.metrics.messages_in.inc();
                        if !rate.take() {
                            break Close::new(RATE_LIMITED, "rate limited");
                        }
                        endpoint.on_binary()
                    }
                    Message::Ping(_) | Message::Pong(_) => Ok(Vec::new()),
                    Message::Close(_) => {
                        // tungstenite queued the close reply; write it out before dropping.
                        let _ = futures_util::SinkExt::flush(&mut socket).await;
                        return;
                    }
                };
                match replies {
                    Ok(replies) => {
                        for reply in replies {
                            if !send_text(&mut socket, reply).await {
                                return;
                            }
                        }
                    }
                    Err(close) => break close,
                }
            }
        }
    };
    tracing::debug!(code = close.code, reason = %close.reason, "closing socket");
    self::close(socket, close).await;
}

/// The token of a `{"type":"refresh","token":...}` frame. Cheap to reject: most frames are not.
fn refresh_request(text: &str) -> Option<String> {
    if !text.starts_with('{') || !text.contains("\"refresh\"") {
        return None;
    }
    let frame: ControlFrame = serde_json::from_str(text).ok()?;
    (frame.kind == "refresh").then(|| frame.token.unwrap_or_default())
}

/// Rebinds the socket to a new token of the same user; answers `refreshed` or an error frame.
async fn refresh(
    state: &AppState,
    bound: Option<&mut Bound>,
    mode: Mode,
    token: String,
    warned: &mut bool,
) -> String {
    let Some(bound) = bound else {
        return error_frame("bad_request", "anonymous sockets have no token to refresh");
    };
    let presented = Presented { token, transport: Transport::Frame, csrf: None };
    let mode = if mode == Mode::Optional { Mode::Required } else { mode };
    match state.auth.authenticate(Some(&presented), mode).await {
        Ok(Some(identity)) if identity.user.username == bound.identity.user.username => {
            bound.registration.rebind(&identity.claims.jti, &identity.claims.fam);
            let exp = identity.claims.exp;
            bound.identity = identity;
            *warned = false;
            json!({"type": "refreshed", "exp": exp}).to_string()
        }
        Ok(_) => error_frame("forbidden", "token belongs to another user"),
        Err(err) => error_frame("forbidden", &err.to_string()),
    }
}

pub fn error_frame(code: &str, detail: &str) -> String {
    json!({"type": "error", "code": code, "detail": detail}).to_string()
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
