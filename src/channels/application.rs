//! What the application decides for a namespace, asked at the moment of the command: a subscribe
//! through its subscribe proxy or by its subscription token, a client's publication through its
//! publish proxy (which may rewrite the data). Its refusals reach the client with its code; its
//! failures (timeout, refused connection, error status, garbage) are temporary and admit nothing.

use super::namespaces::Channel;
use super::protocol::{ErrorCode, Refusal};
use super::publish::Publisher;
use super::Engine;
use crate::auth::subscription::Refused;
use crate::config::{PublishRule, SubscribeRule};
use crate::proxy::{Answer, Caller, ChannelCall, Failure, PublishRequest, SubscribeRequest, Via};
use serde_json::Value;
use std::borrow::Cow;

/// What a client brings to a subscribe besides its identity, for the application to judge.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Asking<'a> {
    /// The connection's id, as the application's calls name it, and what it runs on.
    pub(crate) client: &'a str,
    pub(crate) via: Via,
    /// A subscription token, for `subscribe = "token"`.
    pub(crate) token: Option<&'a str>,
    /// The client's data, passed to the subscribe proxy.
    pub(crate) data: Option<&'a Value>,
}

/// The application's consent to a subscription.
#[derive(Debug, Default)]
pub(crate) struct Consent {
    /// When the subscription ends unless renewed (Unix seconds); `None`: with the connection.
    pub(crate) expires_at: Option<i64>,
    /// The subscribe proxy's data, for the client's reply.
    pub(crate) data: Option<Value>,
}

impl Engine {
    /// Whether the application lets `username` follow `channel`, where its namespace asks it.
    pub(super) async fn judge_subscribe(
        &self,
        channel: &Channel<'_>,
        username: &str,
        asking: &Asking<'_>,
    ) -> Result<Consent, Refusal> {
        match channel.namespace.subscribe {
            SubscribeRule::Proxy => {
                let (Some(proxy), Some(url)) = (&self.proxy, &channel.namespace.subscribe_proxy) else {
                    return Err(not_configured());
                };
                let call = ChannelCall {
                    caller: Caller::new(asking.client, asking.via),
                    user: username,
                    channel: channel.name,
                };
                let request = SubscribeRequest { call, data: asking.data };
                let result = decided(proxy.subscribe(url, &request).await)?;
                Ok(Consent {
                    expires_at: (result.expire_at > 0).then_some(result.expire_at),
                    data: result.data,
                })
            }
            SubscribeRule::Token => {
                let Some(token) = asking.token.filter(|token| !token.is_empty()) else {
                    return Err(Refusal::new(
                        ErrorCode::Forbidden,
                        "this channel needs a subscription token",
                    ));
                };
                let grant =
                    self.auth.subscription(token, username, channel.name).await.map_err(|refused| {
                        let code = match refused {
                            Refused::Expired => ErrorCode::TokenExpired,
                            Refused::Invalid(_) => ErrorCode::Forbidden,
                            Refused::Unavailable => ErrorCode::Unavailable,
                        };
                        Refusal::new(code, refused.to_string())
                    })?;
                Ok(Consent { expires_at: grant.expires_at, data: None })
            }
            SubscribeRule::Any | SubscribeRule::Claim | SubscribeRule::Owner => Ok(Consent::default()),
        }
    }

    /// The data a client's publication to `name` goes out with: the application's where the
    /// namespace asks it (and it rewrites), else the client's. The server API is never asked.
    pub(super) async fn judge_publish<'d>(
        &self,
        from: Publisher<'_>,
        name: &str,
        data: &'d Value,
    ) -> Result<Cow<'d, Value>, Refusal> {
        let (Publisher::Subscriber(subscriber), Some(proxy)) = (from, &self.proxy) else {
            return Ok(Cow::Borrowed(data));
        };
        let channel = self.resolve(name)?;
        if channel.namespace.publish != PublishRule::Proxy {
            return Ok(Cow::Borrowed(data));
        }
        let Some(url) = &channel.namespace.publish_proxy else {
            return Err(not_configured());
        };
        let client = subscriber.client().to_string();
        let call = ChannelCall {
            caller: Caller::new(&client, subscriber.via()),
            user: subscriber.username(),
            channel: name,
        };
        let request = PublishRequest { call, data };
        let result = decided(proxy.publish(url, &request).await)?;
        Ok(result.data.map_or(Cow::Borrowed(data), Cow::Owned))
    }
}

/// The application's answer as the engine's: its result, its refusal with its code, its
/// disconnect, or a failure the client may retry.
pub(crate) fn decided<T>(answer: Result<Answer<T>, Failure>) -> Result<T, Refusal> {
    match answer {
        Ok(Answer::Result(result)) => Ok(result),
        Ok(Answer::Error(error)) => Err(Refusal::new(ErrorCode::Application(error.code), error.message)),
        Ok(Answer::Disconnect(disconnect)) => {
            Err(Refusal::new(ErrorCode::Disconnect(disconnect.code), disconnect.reason))
        }
        Err(failure) => Err(Refusal::new(ErrorCode::Unavailable, format!("{failure}, try again"))),
    }
}

fn not_configured() -> Refusal {
    Refusal::new(ErrorCode::Unavailable, "the application's endpoint is not configured")
}
