//! Centrifugo's error, unsubscribe and disconnect codes (its documentation's codes page), the
//! ones wsguard sends. Disconnect codes 3000-3499 tell an SDK to reconnect, 3500-3999 not to.
//! (The unsubscribe code is the engine's: `channels::push`.)

use crate::ws::close::Close;
use serde::Serialize;

/// An error in a reply, or in the server API's answer: `{"code", "message"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct Error {
    pub(crate) code: u32,
    pub(crate) message: String,
    /// Worth retrying: the SDK does, on its own.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub(crate) temporary: bool,
}

/// One of the codes, with its standard message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ErrorCode {
    pub(crate) code: u32,
    pub(crate) message: &'static str,
    pub(crate) temporary: bool,
}

impl ErrorCode {
    /// The error with the code's standard message, as Centrifugo sends it.
    pub(crate) fn error(self) -> Error {
        self.because(self.message)
    }

    /// The error with a message of wsguard's, saying what was wrong.
    pub(crate) fn because(self, message: impl Into<String>) -> Error {
        Error { code: self.code, message: message.into(), temporary: self.temporary }
    }
}

const fn code(code: u32, message: &'static str, temporary: bool) -> ErrorCode {
    ErrorCode { code, message, temporary }
}

pub(crate) const INTERNAL: ErrorCode = code(100, "internal server error", true);
pub(crate) const UNAUTHORIZED: ErrorCode = code(101, "unauthorized", false);
pub(crate) const UNKNOWN_CHANNEL: ErrorCode = code(102, "unknown channel", false);
pub(crate) const PERMISSION_DENIED: ErrorCode = code(103, "permission denied", false);
pub(crate) const METHOD_NOT_FOUND: ErrorCode = code(104, "method not found", false);
pub(crate) const ALREADY_SUBSCRIBED: ErrorCode = code(105, "already subscribed", false);
pub(crate) const BAD_REQUEST: ErrorCode = code(107, "bad request", false);
pub(crate) const NOT_AVAILABLE: ErrorCode = code(108, "not available", false);
pub(crate) const TOKEN_EXPIRED: ErrorCode = code(109, "token expired", false);
pub(crate) const TOO_MANY_REQUESTS: ErrorCode = code(111, "too many requests", true);
pub(crate) const UNRECOVERABLE_POSITION: ErrorCode = code(112, "unrecoverable position", false);

/// Why the server closes a connection, as a WebSocket close code and reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Disconnect {
    pub(crate) code: u16,
    pub(crate) reason: &'static str,
}

impl Disconnect {
    /// As the WebSocket layer closes with it.
    pub(crate) fn close(self) -> Close {
        Close::new(self.code, self.reason)
    }
}

/// Whether the SDKs reconnect after a disconnect with `code`: not for 3500-3999 and 4500-4999.
pub(crate) fn reconnects(code: u16) -> bool {
    !((3500..4000).contains(&code) || (4500..5000).contains(&code))
}

/// The disconnect push that ends an emulated connection's stream, where a WebSocket would close
/// with `close`.
pub(crate) fn farewell(close: &Close) -> String {
    let disconnect =
        serde_json::json!({"code": close.code, "reason": close.reason, "reconnect": reconnects(close.code)});
    serde_json::json!({"push": {"disconnect": disconnect}}).to_string()
}

pub(crate) const SHUTDOWN: Disconnect = Disconnect { code: 3001, reason: "shutdown" };
/// The token expired without a refresh: the SDK fetches a new one and reconnects.
pub(crate) const EXPIRED: Disconnect = Disconnect { code: 3005, reason: "connection expired" };
/// A subscription's token (or the application's `expire_at`) ran out without a `sub_refresh`.
pub(crate) const SUBSCRIPTION_EXPIRED: Disconnect = Disconnect { code: 3006, reason: "subscription expired" };
pub(crate) const SLOW: Disconnect = Disconnect { code: 3008, reason: "slow" };
pub(crate) const INSUFFICIENT_STATE: Disconnect = Disconnect { code: 3010, reason: "insufficient state" };
pub(crate) const NO_PONG: Disconnect = Disconnect { code: 3012, reason: "no pong" };
pub(crate) const TOO_MANY: Disconnect = Disconnect { code: 3013, reason: "too many requests" };
pub(crate) const INVALID_TOKEN: Disconnect = Disconnect { code: 3500, reason: "invalid token" };
pub(crate) const BAD_REQUEST_CLOSE: Disconnect = Disconnect { code: 3501, reason: "bad request" };
/// Revoked (the token, its login, the user), or disconnected through the API: no reconnecting.
pub(crate) const FORCE_NO_RECONNECT: Disconnect = Disconnect { code: 3503, reason: "force disconnect" };
pub(crate) const CONNECTION_LIMIT: Disconnect = Disconnect { code: 3504, reason: "connection limit" };
/// The protobuf codec: wsguard speaks JSON only.
pub(crate) const INAPPROPRIATE_PROTOCOL: Disconnect =
    Disconnect { code: 3506, reason: "inappropriate protocol" };
pub(crate) const PERMISSION_DENIED_CLOSE: Disconnect = Disconnect { code: 3507, reason: "permission denied" };
