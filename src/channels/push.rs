//! A channel's events as Centrifugo's client protocol pushes them (JSON codec): what the engine
//! renders for sockets that follow channels the Centrifugo way (`View::Centrifugo`), once per
//! event like every other view. In that codec a publication's `data` is the JSON itself.

use crate::broker::Presence;
use crate::store::Publication;
use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::Value;

/// Who published or joined: the user. wsguard's presence is per user, so `client` is the username
/// too, as in presence answers and the server API's history.
#[derive(Serialize)]
pub(crate) struct ClientInfo<'a> {
    pub(crate) user: &'a str,
    pub(crate) client: &'a str,
}

/// A publication as the protocol's `Publication`: in a `pub` push, a subscribe reply's recovered
/// publications and a history page. Zero values are left out, as the protocol's JSON does.
/// `data` is a [`Value`], or the JSON text a publication's frames share.
#[derive(Serialize)]
pub(crate) struct PublicationItem<'a, D: ?Sized + Serialize = Value> {
    pub(crate) data: &'a D,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) info: Option<ClientInfo<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) offset: Option<i64>,
    /// In a push: a subscriber that subscribed before the channel's first publication learns the
    /// epoch here (the SDK keeps it for recovery), and sees when the numbering starts over.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) epoch: Option<&'a str>,
}

impl<'a, D: ?Sized + Serialize> PublicationItem<'a, D> {
    pub(crate) fn new(publication: &'a Publication, data: &'a D) -> Self {
        PublicationItem {
            data,
            info: publication.sender.as_deref().map(|user| ClientInfo { user, client: user }),
            offset: (publication.offset > 0).then_some(publication.offset),
            epoch: None,
        }
    }
}

#[derive(Serialize)]
struct Push<'a, B: Serialize> {
    push: ChannelPush<'a, B>,
}

#[derive(Serialize)]
struct ChannelPush<'a, B: Serialize> {
    channel: &'a str,
    #[serde(flatten)]
    body: B,
}

#[derive(Serialize)]
enum Body<'a> {
    #[serde(rename = "pub")]
    Publication(PublicationItem<'a, RawValue>),
    #[serde(rename = "join")]
    Join { info: ClientInfo<'a> },
    #[serde(rename = "leave")]
    Leave { info: ClientInfo<'a> },
    #[serde(rename = "unsubscribe")]
    Unsubscribe { code: u32, reason: &'a str },
}

fn render(channel: &str, body: Body<'_>) -> String {
    frame_text(&Push { push: ChannelPush { channel, body } })
}

/// A frame's JSON text (a push's here, the channel protocol's frames too), written into a buffer
/// with room for a frame around small data at once rather than grown into it. Frames are borrowed
/// strings, numbers and JSON values: they always serialize, as UTF-8.
pub(super) fn frame_text(frame: &impl Serialize) -> String {
    let mut text = Vec::with_capacity(256);
    serde_json::to_writer(&mut text, frame).expect("a frame serializes");
    String::from_utf8(text).expect("JSON is UTF-8")
}

/// `{"push":{"channel":…,"pub":{…}}}`; a numbered publication names its channel's `epoch`.
pub(crate) fn publication(publication: &Publication, data: &RawValue, epoch: &str) -> String {
    let mut item = PublicationItem::new(publication, data);
    item.epoch = item.offset.and(Some(epoch)).filter(|epoch| !epoch.is_empty());
    render(&publication.channel, Body::Publication(item))
}

/// The publication inside a `pub` push of `channel` rendered by [`publication`] (recovered
/// publications go in the subscribe reply, not as pushes); `None` for any other frame.
pub(crate) fn publication_item<'a>(frame: &'a str, channel: &str) -> Option<&'a str> {
    let channel = serde_json::to_string(channel).ok()?;
    let inner = frame.strip_prefix("{\"push\":{\"channel\":")?.strip_prefix(channel.as_str())?;
    inner.strip_prefix(",\"pub\":")?.strip_suffix("}}")
}

/// `{"push":{"channel":…,"join":{"info":…}}}`, or `leave`.
pub(crate) fn presence(channel: &str, user: &str, change: Presence) -> String {
    let info = ClientInfo { user, client: user };
    let body = match change {
        Presence::Joined => Body::Join { info },
        Presence::Left => Body::Leave { info },
    };
    render(channel, body)
}

/// Centrifugo's "server unsubscribe": the server ended a subscription, and the SDK does not
/// subscribe again (codes from 2500 would tell it to).
pub(crate) const UNSUBSCRIBE_SERVER: u32 = 2000;

/// `{"push":{"channel":…,"unsubscribe":{"code":2000,"reason":…}}}`: the server ended the
/// subscription, for `reason`.
pub(crate) fn unsubscribed(channel: &str, reason: &str) -> String {
    render(channel, Body::Unsubscribe { code: UNSUBSCRIBE_SERVER, reason })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn stored(offset: i64, sender: Option<&str>) -> Publication {
        Publication {
            channel: "news:eu".into(),
            offset,
            sender: sender.map(str::to_owned),
            data: String::new(),
            created_ms: 0,
        }
    }

    #[test]
    fn pushes_are_shaped_as_the_protocol_json() {
        let data = crate::channels::protocol::json(&json!({"text": "hi"}));
        let cases = [
            (
                publication(&stored(7, Some("john")), &data, "e1"),
                json!({"push": {"channel": "news:eu", "pub": {"data": {"text": "hi"}, "offset": 7, "epoch": "e1", "info": {"user": "john", "client": "john"}}}}),
            ),
            (
                publication(&stored(0, None), &data, ""),
                json!({"push": {"channel": "news:eu", "pub": {"data": {"text": "hi"}}}}),
            ),
            (
                presence("news:eu", "jane", Presence::Joined),
                json!({"push": {"channel": "news:eu", "join": {"info": {"user": "jane", "client": "jane"}}}}),
            ),
            (
                presence("news:eu", "jane", Presence::Left),
                json!({"push": {"channel": "news:eu", "leave": {"info": {"user": "jane", "client": "jane"}}}}),
            ),
            (
                unsubscribed("news:eu", "server unsubscribe"),
                json!({"push": {"channel": "news:eu", "unsubscribe": {"code": 2000, "reason": "server unsubscribe"}}}),
            ),
        ];
        let frame = publication(&stored(7, None), &data, "e1");
        assert_eq!(
            publication_item(&frame, "news:eu"),
            Some(r#"{"data":{"text":"hi"},"offset":7,"epoch":"e1"}"#)
        );
        assert_eq!(publication_item(&frame, "news:us"), None, "another channel's");
        assert_eq!(publication_item(&presence("news:eu", "jane", Presence::Joined), "news:eu"), None);
        for (rendered, expected) in cases {
            assert_eq!(serde_json::from_str::<Value>(&rendered).unwrap(), expected, "{rendered}");
        }
    }
}
