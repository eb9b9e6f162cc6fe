//! The four ways a member joins and a publication is made: wsguard's channels on `/connect`, the
//! same channels through Centrifugo's client protocol on `/connection/websocket`, wsguard's chat
//! rooms on `/chat/ws`, and the bare broadcast server (the URL path names the channel; every text
//! frame goes to every socket on it, the sender included).
//!
//! Reading frames must stay cheap (the generator shares the machine with the server): a frame is
//! classified by scanning for a marker and the digits after it, never parsed as JSON.

use crate::centrifugo;
use crate::common::{next_text, number_after, Target, Ws};
use anyhow::{bail, Context};
use clap::ValueEnum;
use futures_util::SinkExt;
use serde_json::json;
use std::time::Duration;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    /// wsguard `/connect`: `subscribe`, then `publish` with data `{"seq":N}`, answered by `ack`
    Channel,
    /// wsguard `/connection/websocket` (Centrifugo's client protocol): `connect` and `subscribe`
    /// in the first frame, then `publish` with data `{"seq":N}`, answered by its reply
    Centrifugo,
    /// wsguard `/chat/ws`: `join` a room, then `send` texts `bench N`
    Chat,
    /// bare-broadcast: `/<channel>`; the sender's own copy of a publication is its ack
    Bare,
}

/// What one received text frame is.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Event {
    /// Publication `seq`, at `offset` in its channel where the frame says.
    Delivery {
        seq: usize,
        offset: Option<usize>,
    },
    Ack(usize),
    Error,
    /// The server's ping that wants a pong frame (Centrifugo's `{}`).
    Ping,
    Other,
}

/// Chat messages we send carry the text `bench <seq>`.
const CHAT_MARKER: &str = "\"text\":\"bench ";
/// Channel publications (and the bare server's copies of them) carry the data `{"seq":<seq>}`.
const SEQ_MARKER: &str = "\"seq\":";
/// Publications are sent with `"ref":"r<seq>"`, which the ack repeats.
const REF_MARKER: &str = "\"ref\":\"r";
/// A numbered channel's publications carry their offset (wsguard's and Centrifugo's frames alike).
const OFFSET_MARKER: &str = "\"offset\":";

impl Protocol {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Protocol::Channel => "channel",
            Protocol::Centrifugo => "centrifugo",
            Protocol::Chat => "chat",
            Protocol::Bare => "bare",
        }
    }

    /// Whether the sender's own copy of a publication stands for the ack.
    pub(super) fn copy_is_ack(self) -> bool {
        self == Protocol::Bare
    }

    /// The URL path a member opens.
    pub(super) fn path(self, channel: &str, token: Option<&str>) -> String {
        let token = token.unwrap_or_default();
        match self {
            Protocol::Channel => format!("/connect?token={token}"),
            Protocol::Centrifugo => centrifugo::PATH.to_owned(),
            Protocol::Chat => format!("/chat/ws?token={token}"),
            Protocol::Bare => format!("/{channel}"),
        }
    }

    /// The URL path a member opens, without its token.
    pub(crate) fn endpoint(self, channel: &str) -> String {
        path_only(&self.path(channel, None)).to_owned()
    }

    /// The frame publishing `seq` to `channel`.
    pub(super) fn publish_frame(self, channel: &str, seq: usize) -> String {
        match self {
            Protocol::Centrifugo => centrifugo::publish_frame(channel, seq),
            Protocol::Chat => {
                format!(r#"{{"type":"send","room":"{channel}","text":"bench {seq}","ref":"r{seq}"}}"#)
            }
            Protocol::Channel | Protocol::Bare => {
                format!(r#"{{"type":"publish","channel":"{channel}","data":{{"seq":{seq}}},"ref":"r{seq}"}}"#)
            }
        }
    }

    pub(super) fn classify(self, text: &str) -> Event {
        let marker = if self == Protocol::Chat { CHAT_MARKER } else { SEQ_MARKER };
        if let Some(seq) = number_after(text, marker) {
            let numbered = matches!(self, Protocol::Channel | Protocol::Centrifugo);
            let offset = if numbered { number_after(text, OFFSET_MARKER) } else { None };
            return Event::Delivery { seq, offset };
        }
        if self == Protocol::Centrifugo {
            return match centrifugo::publish_ack(text) {
                Some(seq) => Event::Ack(seq),
                None if text == centrifugo::PING => Event::Ping,
                None if text.contains("\"error\":") => Event::Error,
                None => Event::Other,
            };
        }
        if text.contains("\"type\":\"ack\"") {
            return number_after(text, REF_MARKER).map_or(Event::Other, Event::Ack);
        }
        if text.contains("\"type\":\"error\"") {
            return Event::Error;
        }
        Event::Other
    }

    /// Opens a member's socket and follows `channel`: returns once the server said it does.
    pub(crate) async fn join(
        self,
        target: &Target,
        token: Option<&str>,
        channel: &str,
        timeout: Duration,
    ) -> anyhow::Result<Ws> {
        if self == Protocol::Centrifugo {
            let token = token.context("Centrifugo's connect needs a token")?;
            return centrifugo::connect(target, centrifugo::PATH, token, Some(channel), timeout).await;
        }
        let path = self.path(channel, token);
        let mut ws = target.ws(&path, None).await.with_context(|| format!("opening {}", path_only(&path)))?;
        let deadline = Instant::now() + timeout;
        if self == Protocol::Bare {
            let first = next_before(&mut ws, deadline).await.context("bare server: no `subscribed` frame")?;
            if !first.contains("\"subscribed\"") {
                bail!("bare server's first frame is not `subscribed`: {first}");
            }
            return Ok(ws);
        }
        let welcome = next_before(&mut ws, deadline).await?;
        if !welcome.contains("\"welcome\"") {
            bail!("first frame is not a welcome: {welcome}");
        }
        let (request, answers): (_, &[&str]) = match self {
            Protocol::Chat => (json!({"type": "join", "room": channel}), &["\"members\"", "\"history\""]),
            _ => (json!({"type": "subscribe", "channel": channel}), &["\"subscribed\""]),
        };
        ws.send(Message::text(request.to_string())).await?;
        let mut seen = vec![false; answers.len()];
        while seen.iter().any(|s| !s) {
            let text = next_before(&mut ws, deadline)
                .await
                .with_context(|| format!("{request} not answered within {timeout:?}"))?;
            if text.contains("\"type\":\"error\"") {
                bail!("{request} refused: {text}");
            }
            for (answer, seen) in answers.iter().zip(seen.iter_mut()) {
                *seen |= text.contains(&format!("\"type\":{answer}"));
            }
        }
        Ok(ws)
    }
}

async fn next_before(ws: &mut Ws, deadline: Instant) -> anyhow::Result<String> {
    next_text(ws, deadline.saturating_duration_since(Instant::now())).await
}

/// A path without its query string (which holds the token).
fn path_only(path: &str) -> &str {
    path.split('?').next().unwrap_or(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_wsguard_frames_whatever_the_key_order() {
        let p = Protocol::Channel;
        let publication = r#"{"channel":"bench:fan","data":{"seq":42},"epoch":"x","from":"johndoe","offset":7,"ts":"t","type":"publication"}"#;
        assert_eq!(p.classify(publication), Event::Delivery { seq: 42, offset: Some(7) });
        assert_eq!(p.classify(r#"{"type":"ack","ref":"r9","offset":3}"#), Event::Ack(9));
        assert_eq!(p.classify(r#"{"offset":3,"ref":"r12","type":"ack"}"#), Event::Ack(12));
        assert_eq!(p.classify(r#"{"code":"forbidden","ref":"r1","type":"error"}"#), Event::Error);
        assert_eq!(p.classify(r#"{"type":"subscribed","channel":"bench:fan"}"#), Event::Other);
    }

    #[test]
    fn classifies_chat_messages_and_the_bare_servers_copies() {
        let chat = r#"{"from":"johndoe","id":5,"room":"bench","text":"bench 31","type":"message"}"#;
        assert_eq!(Protocol::Chat.classify(chat), Event::Delivery { seq: 31, offset: None });
        let copy = Protocol::Bare.publish_frame("bench:fan", 77);
        assert_eq!(Protocol::Bare.classify(&copy), Event::Delivery { seq: 77, offset: None });
        let own = Protocol::Channel.publish_frame("c", 3);
        assert_eq!(Protocol::Channel.classify(&own), Event::Delivery { seq: 3, offset: None });
    }

    #[test]
    fn classifies_centrifugo_pushes_replies_and_pings() {
        let p = Protocol::Centrifugo;
        let push = r#"{"push":{"channel":"bench:fan","pub":{"data":{"seq":42},"epoch":"e","info":{"client":"","user":"johndoe"},"offset":1007}}}"#;
        assert_eq!(p.classify(push), Event::Delivery { seq: 42, offset: Some(1007) });
        let ack_of_42 = format!(r#"{{"id":{},"publish":{{}}}}"#, 42 + 3);
        assert_eq!(p.classify(&ack_of_42), Event::Ack(42));
        assert_eq!(p.classify("{}"), Event::Ping);
        assert_eq!(
            p.classify(r#"{"error":{"code":103,"message":"permission denied"},"id":9}"#),
            Event::Error
        );
        assert_eq!(p.classify(r#"{"id":2,"subscribe":{"epoch":"e","offset":3}}"#), Event::Other);
    }
}
