//! The client protocol's JSON codec: a frame holds commands (or replies) one per line; a command
//! is an `id` and one request, a reply echoes the `id` with a result or an `error`. Fields the
//! SDKs send that wsguard does not use are accepted and ignored, as a newer SDK may add some.

use crate::centrifugo::codes::Error;
use serde::de::IgnoredAny;
use serde::Deserialize;
use serde_json::{json, Value};

#[derive(Debug, Default, Deserialize)]
pub(super) struct Command {
    #[serde(default)]
    pub(super) id: u32,
    pub(super) connect: Option<ConnectRequest>,
    pub(super) subscribe: Option<SubscribeRequest>,
    pub(super) unsubscribe: Option<ChannelRequest>,
    pub(super) publish: Option<PublishRequest>,
    pub(super) presence: Option<ChannelRequest>,
    pub(super) presence_stats: Option<ChannelRequest>,
    pub(super) history: Option<HistoryRequest>,
    pub(super) ping: Option<IgnoredAny>,
    pub(super) rpc: Option<RpcRequest>,
    pub(super) refresh: Option<RefreshRequest>,
    pub(super) sub_refresh: Option<SubRefreshRequest>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct ConnectRequest {
    pub(super) token: String,
    /// The SDK's name and version, and data of the application's: passed to the connect proxy.
    pub(super) name: String,
    pub(super) version: String,
    pub(super) data: Option<Value>,
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct SubscribeRequest {
    pub(super) channel: String,
    /// A subscription token (`subscribe = "token"` namespaces).
    #[serde(default)]
    pub(super) token: String,
    /// For the application's subscribe proxy.
    pub(super) data: Option<Value>,
    #[serde(default)]
    pub(super) recover: bool,
    /// Join and leave pushes wanted.
    #[serde(default)]
    pub(super) join_leave: bool,
    #[serde(default)]
    pub(super) offset: i64,
    #[serde(default)]
    pub(super) epoch: String,
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct ChannelRequest {
    pub(super) channel: String,
}

#[derive(Debug, Deserialize)]
pub(super) struct PublishRequest {
    pub(super) channel: String,
    pub(super) data: Value,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct StreamPosition {
    pub(super) offset: i64,
    pub(super) epoch: String,
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct HistoryRequest {
    pub(super) channel: String,
    #[serde(default)]
    pub(super) limit: i64,
    pub(super) since: Option<StreamPosition>,
    #[serde(default)]
    pub(super) reverse: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct RpcRequest {
    pub(super) method: String,
    pub(super) data: Option<Value>,
}

/// A new subscription token for a channel followed.
#[derive(Debug, Default, Deserialize)]
pub(super) struct SubRefreshRequest {
    pub(super) channel: String,
    #[serde(default)]
    pub(super) token: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct RefreshRequest {
    pub(super) token: String,
}

/// The commands of one frame, in order; an empty line is skipped. `Err` for the first that is not
/// a command at all.
pub(super) fn commands(frame: &str) -> Result<Vec<Command>, serde_json::Error> {
    frame.lines().filter(|line| !line.trim().is_empty()).map(serde_json::from_str).collect()
}

/// `{"id":…,"<kind>":<result>}`.
pub(super) fn reply(id: u32, kind: &str, result: Value) -> String {
    let mut reply = serde_json::Map::new();
    reply.insert("id".into(), id.into());
    reply.insert(kind.into(), result);
    Value::Object(reply).to_string()
}

/// `{"id":…,"<kind>":<result>}`, `result` serialized in place.
pub(super) fn reply_of(id: u32, kind: &str, result: &impl serde::Serialize) -> String {
    let result = serde_json::to_string(result).expect("a reply serializes");
    format!("{{\"id\":{id},\"{kind}\":{result}}}")
}

/// `{"id":…,"error":{"code","message"}}`.
pub(super) fn error(id: u32, error: Error) -> String {
    json!({"id": id, "error": error}).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::centrifugo::codes;

    #[test]
    fn a_frame_holds_commands_one_per_line() {
        let frame = "{\"id\":1,\"subscribe\":{\"channel\":\"a\",\"recover\":true,\"offset\":3,\"epoch\":\"e\",\"flag\":0}}\n\n{}\n{\"id\":2,\"publish\":{\"channel\":\"a\",\"data\":{\"x\":1}}}\n";
        let commands = commands(frame).unwrap();
        assert_eq!(commands.len(), 3);
        let subscribe = commands[0].subscribe.as_ref().unwrap();
        assert_eq!((commands[0].id, subscribe.channel.as_str(), subscribe.offset), (1, "a", 3));
        assert!(commands[1].id == 0 && commands[1].publish.is_none(), "{{}} is a pong");
        assert_eq!(commands[2].publish.as_ref().unwrap().data, json!({"x": 1}));
        assert!(super::commands("{\"id\":1,\"publish\":{}}").is_err(), "a publish without a channel");
        assert!(super::commands("not json").is_err());
    }

    #[test]
    fn replies_echo_the_id() {
        assert_eq!(reply(3, "publish", json!({})), r#"{"id":3,"publish":{}}"#);
        let typed = reply_of(5, "connect", &json!({"client": "c", "ttl": 9}));
        assert_eq!(
            serde_json::from_str::<Value>(&typed).unwrap(),
            json!({"id": 5, "connect": {"client": "c", "ttl": 9}})
        );
        assert_eq!(
            error(4, codes::PERMISSION_DENIED.error()),
            r#"{"error":{"code":103,"message":"permission denied"},"id":4}"#
        );
    }
}
