//! Every close code the server sends, and why. Nothing else in the code writes a code as a number.

use axum::extract::ws::{CloseFrame, Message, WebSocket};
use std::time::Duration;

/// Normal closure, and the idle timeout.
pub(crate) const NORMAL: u16 = 1000;
/// The server is shutting down.
pub(crate) const GOING_AWAY: u16 = 1001;
/// The client broke the WebSocket protocol.
pub(crate) const PROTOCOL_ERROR: u16 = 1002;
/// A binary frame where text is expected.
pub(crate) const UNSUPPORTED_DATA: u16 = 1003;
/// A text frame that is not UTF-8.
pub(crate) const INVALID_PAYLOAD: u16 = 1007;
/// Authentication failed after the upgrade.
pub(crate) const POLICY: u16 = 1008;
/// A message over `--max-message-bytes`.
pub(crate) const TOO_BIG: u16 = 1009;
/// RFC 6455's "try again later": too slow to keep up with its channels (reconnect and fetch
/// what was missed), or a refusal that says nothing of the token (the database, or a trusted
/// issuer's keys, unavailable).
pub(crate) const TRY_AGAIN_LATER: u16 = 1013;
/// The token expired.
pub(crate) const EXPIRED: u16 = 4001;
/// The token or its login was revoked, or the user disabled.
pub(crate) const REVOKED: u16 = 4003;
/// Too many messages a second, or too many sockets for the user.
pub(crate) const RATE_LIMITED: u16 = 4029;

/// Why and how the server closes a socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Close {
    pub(crate) code: u16,
    pub(crate) reason: String,
}

/// The longest reason a close frame carries (RFC 6455 §5.5: 125 bytes of payload, 2 of them the
/// code); a longer one is cut at a character boundary.
const MAX_REASON_BYTES: usize = 123;

impl Close {
    pub(crate) fn new(code: u16, reason: impl Into<String>) -> Close {
        let mut reason = reason.into();
        if reason.len() > MAX_REASON_BYTES {
            let mut end = MAX_REASON_BYTES;
            while !reason.is_char_boundary(end) {
                end -= 1;
            }
            reason.truncate(end);
        }
        Close { code, reason }
    }
}

/// How long a closing socket waits for the client's close frame before dropping the connection.
const CLOSE_HANDSHAKE: Duration = Duration::from_secs(1);

/// Sends the close frame, then waits (bounded) for the client's reply, so that the connection
/// ends with a FIN after a complete close handshake rather than a reset that can swallow the
/// close frame on the client's side.
pub(crate) async fn close(mut socket: WebSocket, close: Close) {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_fit_a_close_frame() {
        assert_eq!(Close::new(NORMAL, "idle timeout").reason, "idle timeout");
        let long = Close::new(TRY_AGAIN_LATER, "é".repeat(100));
        assert_eq!(long.reason, "é".repeat(61), "122 bytes: a whole character fits, not half of one");
    }
}
