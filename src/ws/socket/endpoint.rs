//! What an endpoint plugs into a socket's loop: its frames answered, and how its protocol speaks
//! for the socket (close codes, pings, the expiry warning, in-band refresh). wsguard's own
//! protocol is the default; Centrifugo's overrides it.

use crate::auth::Identity;
use crate::ws::close::{self, Close};
use axum::extract::ws::Utf8Bytes;
use serde::Deserialize;
use serde_json::json;
use std::future::Future;

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
        refresh_request(text).map(|token| RefreshRequest { token, id: 0 })
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

/// wsguard's control frames, handled by the socket itself.
#[derive(Deserialize)]
struct ControlFrame {
    #[serde(rename = "type")]
    kind: String,
    token: Option<String>,
}

/// The token of a `{"type":"refresh","token":...}` frame. Cheap to reject: most frames are not.
fn refresh_request(text: &str) -> Option<String> {
    if !text.starts_with('{') || !text.contains("\"refresh\"") {
        return None;
    }
    let frame: ControlFrame = serde_json::from_str(text).ok()?;
    (frame.kind == "refresh").then(|| frame.token.unwrap_or_default())
}

/// wsguard's error frame.
fn error_frame(code: &str, detail: &str) -> String {
    json!({"type": "error", "code": code, "detail": detail}).to_string()
}
