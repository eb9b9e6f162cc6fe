//! Centrifugo's client protocol v2, JSON codec, as the generator speaks it to wsguard's
//! `/connection/websocket`: the token comes in the first frame's `connect` command (subscriptions
//! may follow in the same frame, one command per line), each command's reply echoes its `id`,
//! publications arrive as `push`es, and the server's ping `{}` is answered with `{}`.
//!
//! As in the rest of the generator, frames read in hot loops are recognised by scanning for
//! markers, not parsed: the server's replies are JSON objects with sorted keys, so neither the
//! position of `id` nor anything else is relied on.

use crate::common::{next_text, Target, Ws};
use anyhow::{bail, Context};
use futures_util::SinkExt;
use serde_json::json;
use std::time::Duration;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

/// Where the protocol is served.
pub const PATH: &str = "/connection/websocket";
/// The server's ping, and the client's pong.
pub const PING: &str = "{}";
/// Command ids: `connect` is 1, a `subscribe` sent with it 2, publication `seq` has
/// `FIRST_PUBLISH_ID + seq`.
const CONNECT_ID: u32 = 1;
const SUBSCRIBE_ID: u32 = 2;
const FIRST_PUBLISH_ID: usize = 3;

/// The first frame: `connect` with `token`, and `subscribe` to `channel` on the next line.
pub fn connect_frame(token: &str, channel: Option<&str>) -> String {
    let mut frame = json!({"id": CONNECT_ID, "connect": {"token": token}}).to_string();
    if let Some(channel) = channel {
        frame.push('\n');
        frame.push_str(&subscribe_command(channel));
    }
    frame
}

/// The command subscribing to `channel`.
pub fn subscribe_command(channel: &str) -> String {
    json!({"id": SUBSCRIBE_ID, "subscribe": {"channel": channel}}).to_string()
}

/// The replies a connection waits for before it counts as joined: `connect`'s, and `subscribe`'s
/// when it subscribes.
pub struct Awaited {
    connected: bool,
    subscribed: bool,
}

impl Awaited {
    pub fn new(connect: bool, subscribe: bool) -> Awaited {
        Awaited { connected: !connect, subscribed: !subscribe }
    }

    /// Takes one reply line; an error reply is an error.
    pub fn see(&mut self, line: &str) -> anyhow::Result<()> {
        if line.contains("\"error\":") {
            bail!("refused: {line}");
        }
        self.connected |= line.contains("\"connect\":{");
        self.subscribed |= line.contains("\"subscribe\":{");
        Ok(())
    }

    pub fn done(&self) -> bool {
        self.connected && self.subscribed
    }
}

/// The command publishing `{"seq":N}` to `channel`; its reply is [`publish_ack`]'s.
pub fn publish_frame(channel: &str, seq: usize) -> String {
    let id = FIRST_PUBLISH_ID + seq;
    format!(r#"{{"id":{id},"publish":{{"channel":"{channel}","data":{{"seq":{seq}}}}}}}"#)
}

/// The publication `seq` a reply acknowledges: `{"id":N,"publish":{}}`.
pub fn publish_ack(text: &str) -> Option<usize> {
    if !text.contains("\"publish\":{}") {
        return None;
    }
    crate::common::number_after(text, "\"id\":")?.checked_sub(FIRST_PUBLISH_ID)
}

/// Opens `path` (`/connection/websocket`) on `target` and connects with `token` (subscribing to
/// `channel` in the same frame, as the SDKs do); returns once every reply came. An error reply, a
/// close or no reply within `timeout` is an error.
pub async fn connect(
    target: &Target,
    path: &str,
    token: &str,
    channel: Option<&str>,
    timeout: Duration,
) -> anyhow::Result<Ws> {
    let deadline = Instant::now() + timeout;
    let mut ws = target.ws(path, None).await.with_context(|| format!("opening {path}"))?;
    ws.send(Message::text(connect_frame(token, channel))).await?;
    let mut awaited = Awaited::new(true, channel.is_some());
    while !awaited.done() {
        let text = next_text(&mut ws, deadline.saturating_duration_since(Instant::now()))
            .await
            .context("connect not answered")?;
        text.lines().try_for_each(|line| awaited.see(line))?;
    }
    Ok(ws)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    #[test]
    fn frames_are_the_protocols_commands() {
        let frame = connect_frame("a.b.c", Some("bench:x"));
        let lines: Vec<Value> = frame.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(lines[0], json!({"id": 1, "connect": {"token": "a.b.c"}}));
        assert_eq!(lines[1], json!({"id": 2, "subscribe": {"channel": "bench:x"}}));
        assert_eq!(connect_frame("t", None).lines().count(), 1);
        let publish: Value = serde_json::from_str(&publish_frame("bench:fan", 7)).unwrap();
        assert_eq!(publish, json!({"id": 10, "publish": {"channel": "bench:fan", "data": {"seq": 7}}}));
    }

    #[test]
    fn acks_name_their_publication() {
        assert_eq!(publish_ack(r#"{"id":10,"publish":{}}"#), Some(7));
        assert_eq!(publish_ack(r#"{"id":1,"publish":{}}"#), None, "not a publication's id");
        assert_eq!(publish_ack(r#"{"error":{"code":103,"message":"permission denied"},"id":10}"#), None);
        assert_eq!(publish_ack(r#"{"id":2,"subscribe":{}}"#), None);
    }
}
