//! The JSON sockets' protocol (`/chat/ws`, `/connect`): what a client may send (`commands`), and
//! the frames the server sends back (here). A channel's events have two views: a chat room's
//! (`join`: `message` frames) and a channel's (`subscribe`: `publication` frames).

mod commands;

pub use commands::*;

use crate::broker::{Frames, Numbered, Presence, Utf8Bytes, View};
use crate::store::{Position, Publication};
use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::{json, Value};
use std::sync::Arc;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// Unix milliseconds, serialized as RFC 3339 (UTC), formatted on the stack: a frame's `ts` costs
/// no string of its own.
struct Timestamp(i64);

impl Serialize for Timestamp {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        // The longest RFC 3339 time `time` writes (nanoseconds, a five-digit year) fits.
        let mut buffer = [0u8; 48];
        let mut cursor = std::io::Cursor::new(&mut buffer[..]);
        let formatted = OffsetDateTime::from_unix_timestamp_nanos(i128::from(self.0) * 1_000_000)
            .ok()
            .is_some_and(|t| t.format_into(&mut cursor, &Rfc3339).is_ok());
        // What was written (format_into's own count leaves out some of it).
        let written = if formatted { cursor.position() as usize } else { 0 };
        serializer.serialize_str(std::str::from_utf8(&buffer[..written]).unwrap_or_default())
    }
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
    ts: Timestamp,
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
            ts: Timestamp(publication.created_ms),
            kind: "message",
        }
    }
}

/// A publication as itself (`publication`): the frame, and an item of the server API's history.
/// `data` is a [`Value`], or the JSON text a publication's frames share ([`json`]).
#[derive(Serialize)]
struct PublicationFrame<'a, D: ?Sized + Serialize> {
    channel: &'a str,
    data: &'a D,
    #[serde(skip_serializing_if = "Option::is_none")]
    epoch: Option<&'a str>,
    from: Option<&'a str>,
    /// `null`: a namespace without history numbers nothing.
    offset: Option<i64>,
    ts: Timestamp,
    #[serde(rename = "type")]
    kind: &'static str,
}

impl<'a, D: ?Sized + Serialize> PublicationFrame<'a, D> {
    fn new(publication: &'a Publication, data: &'a D, epoch: Option<&'a str>) -> Self {
        PublicationFrame {
            channel: &publication.channel,
            data,
            epoch,
            from: publication.sender.as_deref(),
            offset: (publication.offset > 0).then_some(publication.offset),
            ts: Timestamp(publication.created_ms),
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
    super::push::frame_text(&frame).into()
}

/// The `text` of a chat message's data: an object whose one member is a string `text`.
pub(crate) fn chat_text(data: &Value) -> Option<&str> {
    data.as_object().filter(|object| object.len() == 1)?.get("text")?.as_str()
}

/// `data` as compact JSON (what `data.to_string()` is): serialized once, then stored and copied
/// as it is into each of a publication's frames.
pub(crate) fn json(data: &Value) -> Box<RawValue> {
    serde_json::value::to_raw_value(data).expect("a Value serializes")
}

/// A publication for every view, rendered once: rooms see a chat message when the data is one
/// (`{"text": …}`), the publication itself otherwise. `json` is `data`'s [`json`]; `epoch` is its
/// channel's, for a numbered one.
pub(crate) fn publication(publication: &Publication, data: &Value, json: &RawValue, epoch: &str) -> Frames {
    let numbered =
        (publication.offset > 0).then(|| Numbered { offset: publication.offset, epoch: Arc::from(epoch) });
    let frame = |view| publication_frame(view, publication, data, json, epoch);
    let channel = frame(View::Channel);
    // Rooms see the channel's frame unless the data is a chat message.
    let room = if chat_text(data).is_some() { frame(View::Room) } else { channel.clone() };
    Frames {
        room: Some(room),
        channel: Some(channel),
        centrifugo: Some(frame(View::Centrifugo)),
        numbered,
        presence: false,
    }
}

/// A publication's frame for one view, what [`publication`] renders for it: for a socket
/// catching up, which needs its own view's alone.
pub(crate) fn publication_frame(
    view: View,
    publication: &Publication,
    data: &Value,
    json: &RawValue,
    epoch: &str,
) -> Utf8Bytes {
    // A numbered frame names its epoch: a client that followed the channel before its first
    // publication learns it here, and sees when the numbering starts over.
    let epoch = (publication.offset > 0).then_some(epoch);
    match view {
        View::Room => match chat_text(data) {
            Some(text) => to_text(MessageFrame::new(publication, text, epoch)),
            None => to_text(PublicationFrame::new(publication, json, epoch)),
        },
        View::Channel => to_text(PublicationFrame::new(publication, json, epoch)),
        View::Centrifugo | View::CentrifugoJoinLeave => {
            super::push::publication(publication, json, epoch.unwrap_or_default()).into()
        }
    }
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
    fn timestamps_are_rfc3339_utc() {
        assert_eq!(json!(Timestamp(1_790_000_000_000)), "2026-09-21T14:13:20Z");
        assert_eq!(json!(Timestamp(1_790_000_000_123)), "2026-09-21T14:13:20.123Z");
    }

    /// A socket catching up renders its own view alone: the same bytes as every view rendered.
    #[test]
    fn one_view_is_that_view_of_every_view() {
        for data in [json!({"text": "hi"}), json!({"text": "hi", "to": "bob"}), json!([1])] {
            for (offset, epoch) in [(7, "e1"), (0, "")] {
                let stored = Publication {
                    channel: "news:eu".into(),
                    offset,
                    sender: None,
                    data: data.to_string(),
                    created_ms: 1_790_000_000_000,
                };
                let every = publication(&stored, &data, &json(&data), epoch);
                for view in [View::Room, View::Channel, View::Centrifugo, View::CentrifugoJoinLeave] {
                    let one = publication_frame(view, &stored, &data, &json(&data), epoch);
                    assert_eq!(every.for_view(view), Some(&one), "{view:?} of {data}");
                }
            }
        }
    }

    /// The frames copy `json` where they used to serialize `data`: the bytes must not change.
    #[test]
    fn frames_embed_the_data_as_it_serializes() {
        let data = json!({"b": [1, 2.5, "q\"uote"], "a": {"z": null, "é": true, "n": -7}});
        for (offset, epoch) in [(7, "e1"), (0, "")] {
            let stored = Publication {
                channel: "news:eu".into(),
                offset,
                sender: Some("john".into()),
                data: data.to_string(),
                created_ms: 1_790_000_000_000,
            };
            let frames = publication(&stored, &data, &json(&data), epoch);
            let frame_epoch = (offset > 0).then_some(epoch);
            let serialized = to_text(PublicationFrame::new(&stored, &data, frame_epoch));
            assert_eq!(frames.channel.as_ref(), Some(&serialized));
            assert_eq!(frames.room.as_ref(), Some(&serialized), "not a chat message: the same frame");
            let item = serde_json::to_string(&super::super::push::PublicationItem {
                epoch: frame_epoch.filter(|epoch| !epoch.is_empty()),
                ..super::super::push::PublicationItem::new(&stored, &data)
            })
            .unwrap();
            let push = format!(r#"{{"push":{{"channel":"news:eu","pub":{item}}}}}"#);
            assert_eq!(frames.centrifugo.as_deref(), Some(push.as_str()));
        }
    }
}
