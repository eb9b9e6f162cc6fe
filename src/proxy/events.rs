//! The bodies of the calls and of their results, as Centrifugo's proxy documents them. Fields
//! wsguard does not use are left out of requests and ignored in results.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The connection a call is about, and how it speaks: the first fields of every request.
#[derive(Debug, Clone, Copy, Serialize)]
pub(crate) struct Caller<'a> {
    /// The connection's id, unique on every node.
    pub(crate) client: &'a str,
    pub(crate) transport: &'static str,
    pub(crate) protocol: &'static str,
    pub(crate) encoding: &'static str,
}

impl<'a> Caller<'a> {
    /// Connection `client`, on `via`, speaking JSON as every connection wsguard serves does.
    pub(crate) fn new(client: &'a str, via: Via) -> Caller<'a> {
        Caller { client, transport: via.name(), protocol: "json", encoding: "json" }
    }
}

/// What a connection runs on: a WebSocket, or an emulated connection's HTTP stream or SSE.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) enum Via {
    #[default]
    WebSocket,
    HttpStream,
    Sse,
}

impl Via {
    /// As Centrifugo's proxy calls name it (`transport`).
    pub(crate) fn name(self) -> &'static str {
        match self {
            Via::WebSocket => "websocket",
            Via::HttpStream => "http_stream",
            Via::Sse => "sse",
        }
    }
}

/// A connection without a token asks to be admitted.
#[derive(Debug, Serialize)]
pub(crate) struct ConnectRequest<'a> {
    #[serde(flatten)]
    pub(crate) caller: Caller<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) version: Option<&'a str>,
    /// What the client sent with its connect, if anything.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) data: Option<&'a Value>,
}

/// The application admits the connection as `user`.
#[derive(Debug, Deserialize)]
pub(crate) struct ConnectResult {
    pub(crate) user: String,
    /// Unix seconds; the connection ends then unless the refresh proxy prolongs it. Absent or 0:
    /// it does not expire.
    #[serde(default)]
    pub(crate) expire_at: i64,
    /// Sent to the client in the connect reply.
    pub(crate) data: Option<Value>,
}

/// A connection the connect proxy admitted is about to expire.
#[derive(Debug, Serialize)]
pub(crate) struct RefreshRequest<'a> {
    #[serde(flatten)]
    pub(crate) caller: Caller<'a>,
    pub(crate) user: &'a str,
}

/// Prolonged to `expire_at`, or `expired`.
#[derive(Debug, Deserialize)]
pub(crate) struct RefreshResult {
    #[serde(default)]
    pub(crate) expired: bool,
    #[serde(default)]
    pub(crate) expire_at: i64,
}

/// A client's call about a channel: the first fields of a subscribe's request and a publication's.
#[derive(Debug, Clone, Copy, Serialize)]
pub(crate) struct ChannelCall<'a> {
    #[serde(flatten)]
    pub(crate) caller: Caller<'a>,
    pub(crate) user: &'a str,
    pub(crate) channel: &'a str,
}

/// A client asks to subscribe to a channel of a namespace with `subscribe = "proxy"`.
#[derive(Debug, Serialize)]
pub(crate) struct SubscribeRequest<'a> {
    #[serde(flatten)]
    pub(crate) call: ChannelCall<'a>,
    /// What the client sent with its subscribe, if anything.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) data: Option<&'a Value>,
}

/// The subscription is allowed: `data` goes to the client in the reply; `expire_at` (Unix
/// seconds, 0 or absent: never) ends it unless the client subscribes again.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct SubscribeResult {
    pub(crate) data: Option<Value>,
    #[serde(default)]
    pub(crate) expire_at: i64,
}

/// A client publishes to a channel of a namespace with `publish = "proxy"`.
#[derive(Debug, Serialize)]
pub(crate) struct PublishRequest<'a> {
    #[serde(flatten)]
    pub(crate) call: ChannelCall<'a>,
    pub(crate) data: &'a Value,
}

/// The SDK's `rpc(method, data)`.
#[derive(Debug, Serialize)]
pub(crate) struct RpcRequest<'a> {
    #[serde(flatten)]
    pub(crate) caller: Caller<'a>,
    pub(crate) user: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    pub(crate) method: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) data: Option<&'a Value>,
}

/// An answer that may carry `data`: a publication's, allowed with that data instead of the
/// client's when given, and an `rpc`'s, passed to the client as it is.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct DataResult {
    pub(crate) data: Option<Value>,
}
