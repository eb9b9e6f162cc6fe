//! One Centrifugo connection's session: its subscriber, its client id, and how wsguard's socket
//! loop speaks this protocol: the close codes, a `{}` ping every interval (the SDK answers with a
//! pong), `refresh` commands as in-band refresh, no expiry warning (the SDK refreshes by `ttl`).

use super::commands;
use super::wire::{self, Command};
use crate::app::AppState;
use crate::auth::{Identity, Issuer};
use crate::broker::Utf8Bytes;
use crate::centrifugo::codes;
use crate::channels::protocol;
use crate::channels::{Ended, Subscriber};
use crate::proxy::Via;
use crate::ws::close::Close;
use crate::ws::socket::{Ending, Endpoint, Outgoing, RefreshRefusal, RefreshRequest};
use serde::Serialize;
use serde_json::{json, Value};

/// What the server calls itself in `connect` and `refresh` results.
const VERSION: &str = concat!("wsguard ", env!("CARGO_PKG_VERSION"));

pub(super) struct Session {
    /// Its channels, and the connection's id (`client`), unique on every node: kept as 16 bytes,
    /// written out when a reply names it, since most connections hold it idle.
    pub(super) subscriber: Subscriber,
}

impl Session {
    pub(super) fn new(state: &AppState, identity: &Identity, client: uuid::Uuid, via: Via) -> Session {
        Session { subscriber: state.engine.subscriber(&identity.user.username, client, via) }
    }

    /// The reply to `connect`, with the connect proxy's `data` if any. A connection of the
    /// connect proxy has no token for the SDK to renew: wsguard asks the refresh proxy itself.
    /// An emulated connection is told its `session` and `node`, which its `POST /emulation`
    /// requests name.
    pub(super) fn connected(
        &self,
        state: &AppState,
        id: u32,
        identity: &Identity,
        data: Option<Value>,
        emulated: Option<(&str, &str)>,
    ) -> String {
        let proxied = identity.issuer == Issuer::Proxy;
        let mut buffer = uuid::Uuid::encode_buffer();
        let result = Connected {
            client: self.subscriber.client().hyphenated().encode_lower(&mut buffer),
            version: VERSION,
            expires: !proxied,
            ttl: (!proxied).then(|| ttl(identity)),
            ping: state.config.socket.ping_interval.as_secs().max(1),
            pong: true,
            data,
            session: emulated.map(|(session, _)| session),
            node: emulated.map(|(_, node)| node),
        };
        wire::reply_of(id, "connect", &result)
    }
}

/// The `connect` reply's result, written straight to text: a handshake's hot path.
#[derive(Serialize)]
struct Connected<'a> {
    client: &'a str,
    version: &'static str,
    expires: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    ttl: Option<u64>,
    ping: u64,
    pong: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    session: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    node: Option<&'a str>,
}

/// When the SDK should refresh, in seconds: the time left on the token less a lead (a third of
/// it, at most [`REFRESH_LEAD`]), at least 1. SDKs refresh when `ttl` runs out, and wsguard closes
/// the connection when the token does, with no grace: the lead lets the refresh arrive first.
fn ttl(identity: &Identity) -> u64 {
    let left = crate::clock::until(identity.claims.exp);
    let lead = (left / 3).min(REFRESH_LEAD);
    (left - lead).as_secs().max(1)
}

/// The most the SDK is told to refresh ahead of expiry.
const REFRESH_LEAD: std::time::Duration = std::time::Duration::from_secs(5);

impl Endpoint for Session {
    const TAKES_BATCHES: bool = true;

    async fn on_text(&mut self, text: &str, identity: Option<&Identity>) -> Result<Vec<String>, Close> {
        let (replies, close) = self.on_texts(vec![Utf8Bytes::from(text)], identity).await;
        match close {
            Some(close) => Err(close),
            None => Ok(replies),
        }
    }

    /// Frames that arrived together, their commands answered together (publications in one
    /// batch). A frame that is not commands closes the connection after what came before it.
    async fn on_texts(
        &mut self,
        texts: Vec<Utf8Bytes>,
        identity: Option<&Identity>,
    ) -> (Vec<String>, Option<Close>) {
        let Some(identity) = identity else {
            return (Vec::new(), Some(codes::PERMISSION_DENIED_CLOSE.close()));
        };
        let mut commands = Vec::new();
        let mut malformed = None;
        for text in &texts {
            match wire::commands(text.as_str()) {
                Ok(more) => commands.extend(more),
                Err(_) => {
                    malformed = Some(codes::BAD_REQUEST_CLOSE.close());
                    break;
                }
            }
        }
        // Boxed: the commands' futures (store calls) would otherwise enlarge every socket's task.
        let (replies, close) = Box::pin(commands::answer_all(self, identity, commands)).await;
        (replies, close.or(malformed))
    }

    fn close_for(&self, ending: Ending) -> Close {
        let disconnect = match ending {
            Ending::Shutdown => codes::SHUTDOWN,
            Ending::Revoked => codes::FORCE_NO_RECONNECT,
            Ending::Expired => codes::EXPIRED,
            Ending::RateLimited => codes::TOO_MANY,
            Ending::Idle => codes::NO_PONG,
        };
        disconnect.close()
    }

    fn expiring(&self, _in_s: u64) -> Option<String> {
        None
    }

    fn ping(&self) -> Option<&'static str> {
        Some("{}")
    }

    fn refresh_request(&self, text: &str) -> Option<RefreshRequest> {
        // Cheap to pass over: most frames are not a refresh.
        if !text.contains("\"refresh\"") {
            return None;
        }
        let mut commands = wire::commands(text).ok()?.into_iter();
        match (commands.next(), commands.next()) {
            (Some(Command { id, refresh: Some(refresh), .. }), None) => {
                Some(RefreshRequest { token: refresh.token, id })
            }
            _ => None,
        }
    }

    fn refreshed(&self, request: &RefreshRequest, answer: Result<&Identity, RefreshRefusal>) -> String {
        let error = match answer {
            Ok(identity) => {
                let result = json!({"client": self.subscriber.client().to_string(), "version": VERSION, "expires": true, "ttl": ttl(identity)});
                return wire::reply(request.id, "refresh", result);
            }
            Err(RefreshRefusal::Refused { expired: true, .. }) => codes::TOKEN_EXPIRED.error(),
            Err(RefreshRefusal::Unavailable(detail)) => codes::INTERNAL.because(detail),
            Err(RefreshRefusal::Refused { detail, .. }) => codes::UNAUTHORIZED.because(detail),
            Err(other) => codes::PERMISSION_DENIED.because(other.detail()),
        };
        wire::error(request.id, error)
    }

    async fn rebound(&mut self, identity: &Identity) -> Vec<String> {
        let ended = self.subscriber.recheck(identity).await;
        ended.iter().map(|(name, view, refusal)| protocol::unsubscribed(name, *view, refusal)).collect()
    }

    fn on_binary(&mut self) -> Result<Vec<String>, Close> {
        // The protobuf codec is not spoken: the SDK is told so, and does not retry.
        Err(codes::INAPPROPRIATE_PROTOCOL.close())
    }

    async fn outgoing(&mut self) -> Outgoing {
        match self.subscriber.next().await {
            Ok(frame) => Outgoing::Frame(frame),
            Err(Ended::TooSlow) => Outgoing::Close(codes::SLOW.close()),
            Err(Ended::Missed) => Outgoing::Close(codes::INSUFFICIENT_STATE.close()),
            Err(Ended::SubscriptionExpired) => Outgoing::Close(codes::SUBSCRIPTION_EXPIRED.close()),
        }
    }

    fn ready(&mut self) -> Option<Outgoing> {
        self.subscriber.ready().map(Outgoing::Frame)
    }
}
