//! The JSON sockets' protocol (`/chat/ws`, `/connect`): what a client may send, and the frames
//! the server sends back. A channel's events have two views: a chat room's (`join`: `message`
//! frames) and a channel's (`subscribe`: `publication` frames).

use crate::auth::credentials::check_plain_name;
use crate::broker::{Frames, Numbered, Presence, Utf8Bytes, View};
use crate::store::{Position, Publication};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::sync::Arc;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

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
    fn as_str(self) -> &'static str {
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

fn timestamp(ms: i64) -> String {
    OffsetDateTime::from_unix_timestamp_nanos(ms as i128 * 1_000_000)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_default()
}

/// A publication as a chat message (`message`): its data's `text`, its offset as the message's
/// `id`. Serialized from borrowed parts, keys sorted as a `serde_json::Value`'s are.
#[derive(Serialize)]
struct MessageFrame<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    epoch: Option<&'a str>,
    from: Option<&'a str>,
    id: i64,
    room: &'a str,
    text: &'a str,
    ts: String,
    #[serde(rename = "type")]
    kind: &'static str,
}

impl<'a> MessageFrame<'a> {
    fn new(publication: &'a Publication, text: &'a str, epoch: Option<&'a str>) -> Self {
        MessageFrame {
            epoch,
            from: publication.sender.as_deref(),
            id: publication.offset,
            room: &publication.channel,
            text,
            ts: timestamp(publication.created_ms),
            kind: "message",
        }
    }
}

/// A publication as itself (`publication`): the frame, and an item of the server API's history.
#[derive(Serialize)]
struct PublicationFrame<'a> {
    channel: &'a str,
    data: &'a Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    epoch: Option<&'a str>,
    from: Option<&'a str>,
    /// `null`: a namespace without history numbers nothing.
    offset: Option<i64>,
    ts: String,
    #[serde(rename = "type")]
    kind: &'static str,
}

impl<'a> PublicationFrame<'a> {
    fn new(publication: &'a Publication, data: &'a Value, epoch: Option<&'a str>) -> Self {
        PublicationFrame {
            channel: &publication.channel,
            data,
            epoch,
            from: publication.sender.as_deref(),
            offset: (publication.offset > 0).then_some(publication.offset),
            ts: timestamp(publication.created_ms),
            kind: "publication",
        }
    }
}

/// A publication as JSON: an item of the server API's history.
pub(crate) fn publication_value(publication: &Publication, data: &Value) -> Value {
    to_value(PublicationFrame::new(publication, data, None))
}

fn to_value(frame: impl Serialize) -> Value {
    // Serializing borrowed strings and a `Value` cannot fail.
    serde_json::to_value(frame).expect("a frame serializes")
}

fn to_text(frame: impl Serialize) -> Utf8Bytes {
    serde_json::to_string(&frame).expect("a frame serializes").into()
}

/// The `text` of a chat message's data: an object whose one member is a string `text`.
pub(crate) fn chat_text(data: &Value) -> Option<&str> {
    data.as_object().filter(|object| object.len() == 1)?.get("text")?.as_str()
}

/// A publication for both views, rendered once: rooms see a chat message when the data is one
/// (`{"text": …}`), the publication itself otherwise. `epoch` is its channel's, for a numbered one.
pub(crate) fn publication(publication: &Publication, data: &Value, epoch: &str) -> Frames {
    let numbered =
        (publication.offset > 0).then(|| Numbered { offset: publication.offset, epoch: Arc::from(epoch) });
    // A numbered frame names its epoch: a client that followed the channel before its first
    // publication learns it here, and sees when the numbering starts over.
    let epoch = numbered.is_some().then_some(epoch);
    let channel = to_text(PublicationFrame::new(publication, data, epoch));
    let room = match chat_text(data) {
        Some(text) => to_text(MessageFrame::new(publication, text, epoch)),
        None => channel.clone(),
    };
    let centrifugo = Some(super::push::publication(publication, data, epoch.unwrap_or_default()).into());
    Frames { room: Some(room), channel: Some(channel), centrifugo, numbered, presence: false }
}

/// A room's history, oldest first: stored publications whose data is no longer valid JSON (never
/// written by wsguard) are left out rather than failing the page.
fn history_value(room: &str, publications: &[Publication]) -> Value {
    let messages: Vec<Value> = publications
        .iter()
        .filter_map(|p| {
            let data: Value = serde_json::from_str(&p.data).ok()?;
            Some(match chat_text(&data) {
                Some(text) => to_value(MessageFrame::new(p, text, None)),
                None => publication_value(p, &data),
            })
        })
        .collect();
    json!({"type": "history", "room": room, "messages": messages})
}

/// A page of a room's history (the `history` command).
pub(crate) fn history(room: &str, publications: &[Publication]) -> String {
    history_value(room, publications).to_string()
}

/// The history that answers `join`: also where the room stands (what the client passes as
/// `since` when it joins again), and with `since`, whether every message after it was delivered.
pub(crate) fn joined_history(
    room: &str,
    publications: &[Publication],
    position: Option<&Position>,
    recovered: Option<bool>,
) -> String {
    let mut frame = history_value(room, publications);
    let (offset, epoch) = position.map_or((0, ""), |p| (p.offset, p.epoch.as_str()));
    frame["offset"] = offset.into();
    frame["epoch"] = epoch.into();
    if let Some(recovered) = recovered {
        frame["recovered"] = recovered.into();
    }
    frame.to_string()
}

/// The answer to `subscribe`: where the channel stands (offset 0 in no epoch before its first
/// publication, and for channels without history), and with `since`, whether every publication
/// after it was delivered.
/// `expires_at`: when the application's consent runs out (renewed by subscribing again); `data`:
/// its subscribe proxy's, for the client.
pub(crate) fn subscribed(
    channel: &str,
    position: Option<&Position>,
    recovered: Option<bool>,
    expires_at: Option<i64>,
    data: Option<Value>,
) -> String {
    let (offset, epoch) = position.map_or((0, ""), |p| (p.offset, p.epoch.as_str()));
    let mut frame = json!({"type": "subscribed", "channel": channel, "offset": offset, "epoch": epoch});
    if let Some(recovered) = recovered {
        frame["recovered"] = recovered.into();
    }
    if let Some(expires_at) = expires_at {
        frame["expires_at"] = expires_at.into();
    }
    if let Some(data) = data {
        frame["data"] = data;
    }
    frame.to_string()
}

/// The application's answer to an `rpc` frame.
pub(crate) fn rpc_answer(reference: Option<&str>, data: Option<Value>) -> String {
    json!({"type": "rpc", "ref": reference, "data": data}).to_string()
}

/// The server ended a subscription (or a room's membership) for `refusal`'s reason: the token
/// the socket was rebound to no longer allows it. Keyed `room` or `channel` as the socket follows
/// it.
pub(crate) fn unsubscribed(name: &str, view: View, refusal: &Refusal) -> String {
    let key = match view {
        View::Room => "room",
        View::Channel => "channel",
        View::Centrifugo | View::CentrifugoJoinLeave => {
            return super::push::unsubscribed(name, &refusal.detail)
        }
    };
    json!({"type": "unsubscribed", key: name, "code": refusal.code.as_str(), "detail": refusal.detail})
        .to_string()
}

/// A publish acknowledged: its offset, or `null` in a channel without history.
pub(crate) fn published(reference: Option<&str>, offset: Option<i64>) -> String {
    json!({"type": "ack", "ref": reference, "offset": offset}).to_string()
}

pub fn members<'a>(room: &str, users: impl IntoIterator<Item = &'a String>) -> String {
    let users: Vec<&String> = users.into_iter().collect();
    json!({"type": "members", "room": room, "users": users}).to_string()
}

/// A user's first socket joined, or last socket left, a channel: for rooms keyed `room`, for
/// subscribers `channel`.
pub(crate) fn presence(channel: &str, user: &str, change: Presence) -> Frames {
    let event = match change {
        Presence::Joined => "join",
        Presence::Left => "leave",
    };
    let frame = |key: &str| json!({"type": "presence", key: channel, "user": user, "event": event});
    Frames {
        numbered: None,
        room: Some(frame("room").to_string().into()),
        channel: Some(frame("channel").to_string().into()),
        centrifugo: Some(super::push::presence(channel, user, change).into()),
        presence: true,
    }
}

pub(crate) fn ack(reference: Option<&str>, id: i64) -> String {
    json!({"type": "ack", "ref": reference, "id": id}).to_string()
}

pub(crate) fn pong() -> String {
    json!({"type": "pong"}).to_string()
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

    #[test]
    fn timestamps_are_rfc3339_utc() {
        assert_eq!(timestamp(1_790_000_000_000), "2026-09-21T14:13:20Z");
    }
}
