//! What a client of the JSON sockets may send (`/chat/ws`, `/connect`): the commands, parsed
//! strictly, the limits on what they carry, and how a refused one is answered (`Refusal`).

use crate::auth::credentials::check_plain_name;
use serde::Deserialize;
use serde_json::{json, Value};

pub const MAX_TEXT_CHARS: usize = 4096;
pub const MAX_ROOM_CHARS: usize = 64;
/// A whole channel name, `namespace:name`.
pub const MAX_CHANNEL_CHARS: usize = 128;
pub const MAX_REF_CHARS: usize = 64;
pub(crate) const DEFAULT_HISTORY: i64 = 50;
pub(crate) const MAX_HISTORY: i64 = 100;

/// A client's command. Unknown types and missing fields fail to parse.
#[derive(Debug, Deserialize, PartialEq)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum Command {
    Join {
        room: String,
        /// Recover the messages sent after this position.
        since: Option<Since>,
    },
    Leave {
        room: String,
    },
    Send {
        room: String,
        text: String,
        #[serde(rename = "ref")]
        reference: Option<String>,
    },
    History {
        room: String,
        before: Option<i64>,
        limit: Option<i64>,
    },
    Subscribe {
        channel: String,
        /// Recover what was published after this position.
        since: Option<Since>,
        /// A subscription token, for channels that need one; subscribing again with a new one
        /// renews the subscription.
        token: Option<String>,
        /// For the application's subscribe proxy.
        data: Option<Value>,
    },
    Unsubscribe {
        channel: String,
    },
    Publish {
        channel: String,
        data: Value,
        #[serde(rename = "ref")]
        reference: Option<String>,
    },
    /// A call to the application's RPC proxy, answered with an `rpc` frame.
    Rpc {
        method: String,
        data: Option<Value>,
        #[serde(rename = "ref")]
        reference: Option<String>,
    },
    Ping,
}

/// A position a client has seen: the offset of the last publication it has, in the channel's epoch.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Since {
    pub offset: i64,
    pub epoch: String,
}

/// An error frame's `code`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    BadRequest,
    Forbidden,
    TooBig,
    RateLimited,
    Unavailable,
    /// A subscription token expired: the client may fetch a new one.
    TokenExpired,
    /// The application refused (its proxy's `error`), with its code, which the client sees.
    Application(u32),
    /// The application closes the connection (its proxy's `disconnect`) with this code; the
    /// refusal's detail is the reason.
    Disconnect(u16),
}

impl ErrorCode {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::TooBig => "too_big",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::TokenExpired => "token_expired",
            ErrorCode::Application(_) | ErrorCode::Disconnect(_) => "forbidden",
        }
    }
}

/// A refused command: answered with an error frame, the socket stays open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub code: ErrorCode,
    pub detail: String,
}

impl Refusal {
    pub fn new(code: ErrorCode, detail: impl Into<String>) -> Refusal {
        Refusal { code, detail: detail.into() }
    }

    pub fn frame(&self) -> String {
        self.frame_about(None)
    }

    /// The error frame of a refused command that names a room or a channel (`about`: `("room",
    /// name)` or `("channel", name)`), which the frame names too: a client with several commands
    /// in flight, some answered only when refused (`leave`, `unsubscribe`), tells which one it
    /// answers.
    pub fn frame_about(&self, about: Option<(&str, &str)>) -> String {
        let mut frame = json!({"type": "error", "code": self.code.as_str(), "detail": self.detail});
        if let ErrorCode::Application(code) = self.code {
            frame["app_code"] = code.into();
        }
        if let Some((key, name)) = about {
            frame[key] = name.into();
        }
        frame.to_string()
    }

    /// The close the application asked for, if this refusal is one.
    pub(crate) fn close(&self) -> Option<crate::ws::close::Close> {
        match self.code {
            ErrorCode::Disconnect(code) => Some(crate::ws::close::Close::new(code, &self.detail)),
            _ => None,
        }
    }
}

impl Command {
    /// The room or channel the command names, keyed as its frames key it.
    pub fn about(&self) -> Option<(&'static str, &str)> {
        match self {
            Command::Join { room, .. }
            | Command::Leave { room }
            | Command::Send { room, .. }
            | Command::History { room, .. } => Some(("room", room)),
            Command::Subscribe { channel, .. }
            | Command::Unsubscribe { channel }
            | Command::Publish { channel, .. } => Some(("channel", channel)),
            Command::Rpc { .. } | Command::Ping => None,
        }
    }
}

pub fn parse(text: &str) -> Result<Command, Refusal> {
    serde_json::from_str(text).map_err(|e| {
        let message = e.to_string();
        let message = message.split(" at line ").next().unwrap_or(&message).to_owned();
        Refusal::new(ErrorCode::BadRequest, format!("invalid command: {message}"))
    })
}

/// 1–64 of `[A-Za-z0-9_.-]`.
pub fn check_room(room: &str) -> Result<(), Refusal> {
    check_plain_name(room, MAX_ROOM_CHARS, "room names").map_err(|e| Refusal::new(ErrorCode::BadRequest, e))
}

/// 1–4096 characters.
pub fn check_text(text: &str) -> Result<(), Refusal> {
    if text.is_empty() {
        return Err(Refusal::new(ErrorCode::BadRequest, "text must not be empty"));
    }
    if text.chars().count() > MAX_TEXT_CHARS {
        return Err(Refusal::new(ErrorCode::TooBig, format!("text longer than {MAX_TEXT_CHARS} characters")));
    }
    Ok(())
}

pub fn check_ref(reference: Option<&str>) -> Result<(), Refusal> {
    match reference {
        Some(r) if r.chars().count() > MAX_REF_CHARS => {
            Err(Refusal::new(ErrorCode::BadRequest, format!("ref longer than {MAX_REF_CHARS} characters")))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_parse_and_garbage_is_refused() {
        assert_eq!(
            parse(r#"{"type":"join","room":"general"}"#),
            Ok(Command::Join { room: "general".into(), since: None })
        );
        assert_eq!(
            parse(r#"{"type":"join","room":"general","since":{"offset":4,"epoch":"e"}}"#),
            Ok(Command::Join { room: "general".into(), since: Some(Since { offset: 4, epoch: "e".into() }) })
        );
        assert_eq!(
            parse(r#"{"type":"send","room":"a","text":"hi","ref":"c1"}"#),
            Ok(Command::Send { room: "a".into(), text: "hi".into(), reference: Some("c1".into()) })
        );
        assert_eq!(parse(r#"{"type":"ping"}"#), Ok(Command::Ping));
        for bad in [
            "",
            "{",
            "[]",
            r#"{"type":"dance"}"#,
            r#"{"type":"join"}"#,
            r#"{"type":"send","room":"a","text":5}"#,
            r#"{"type":"send","room":"a","text":"x","from":"admin"}"#,
        ] {
            let refusal = parse(bad).unwrap_err();
            assert_eq!(refusal.code, ErrorCode::BadRequest, "{bad}");
        }
    }

    #[test]
    fn rooms_and_texts_are_bounded() {
        assert!(check_room("general").is_ok());
        assert!(check_room("a.b-c_1").is_ok());
        for bad in ["", "has space", "x/y", "ünï", &"r".repeat(65)] {
            assert_eq!(check_room(bad).unwrap_err().code, ErrorCode::BadRequest, "{bad}");
        }
        assert!(check_text(&"é".repeat(MAX_TEXT_CHARS)).is_ok());
        assert_eq!(check_text(&"é".repeat(MAX_TEXT_CHARS + 1)).unwrap_err().code, ErrorCode::TooBig);
        assert_eq!(check_text("").unwrap_err().code, ErrorCode::BadRequest);
    }
}
