//! Calls to the application, in Centrifugo's proxy format, so that an application's Centrifugo
//! proxy handlers work unchanged: a JSON POST per event; the client's headers named in
//! `forward_headers` travel as real headers of the POST; the answer is `{"result": …}`,
//! `{"error": {"code", "message"}}` (a refusal the client sees) or `{"disconnect": {"code",
//! "reason"}}` (the connection is closed with it).
//!
//! An application that fails (no answer within `timeout`, a refused connection, a status other
//! than 200, an answer that is none of the three) is a temporary [`Failure`]: nothing is admitted,
//! and the client may try again. Every call is counted by event and outcome, and timed, in
//! `/metrics`.

mod connect;
mod events;

pub(crate) use connect::Verdict;
pub(crate) use events::{
    Caller, ChannelCall, ConnectRequest, ConnectResult, DataResult, PublishRequest, RefreshRequest,
    RefreshResult, RpcRequest, SubscribeRequest, SubscribeResult, Via,
};

use crate::config::{NamespaceSettings, ProxySettings, PublishRule, SubscribeRule};
use crate::connections::ClientAddr;
use crate::metrics::Metrics;
use anyhow::Context;
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderName, HeaderValue};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Instant;

/// How every call names the client: its address as wsguard sees it (see [`ClientAddr`]).
const CLIENT_ADDRESS_HEADERS: [HeaderName; 2] =
    [HeaderName::from_static("x-forwarded-for"), HeaderName::from_static("x-real-ip")];

/// The most an answer may hold; an application's answers are a few hundred bytes.
const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// The application's endpoints, and the client that calls them.
pub(crate) struct Proxy {
    http: reqwest::Client,
    connect: Option<reqwest::Url>,
    refresh: Option<reqwest::Url>,
    rpc: Option<reqwest::Url>,
    forward: Vec<HeaderName>,
    metrics: Arc<Metrics>,
}

/// What a call is about: its label in `/metrics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Event {
    Connect,
    Refresh,
    Subscribe,
    Publish,
    Rpc,
}

impl Event {
    pub(crate) fn label(self) -> &'static str {
        match self {
            Event::Connect => "connect",
            Event::Refresh => "refresh",
            Event::Subscribe => "subscribe",
            Event::Publish => "publish",
            Event::Rpc => "rpc",
        }
    }
}

/// The application's answer.
#[derive(Debug)]
pub(crate) enum Answer<T> {
    Result(T),
    /// A refusal the client sees, with the application's code.
    Error(AppError),
    /// Close the connection with this code.
    Disconnect(AppDisconnect),
}

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub(crate) struct AppError {
    pub(crate) code: u32,
    #[serde(default)]
    pub(crate) message: String,
}

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub(crate) struct AppDisconnect {
    pub(crate) code: u16,
    #[serde(default)]
    pub(crate) reason: String,
}

/// The application failed to answer: temporary, never a decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Failure {
    #[error("the application did not answer in time")]
    Timeout,
    #[error("the application could not be reached")]
    Unreachable,
    #[error("the application answered with an error status")]
    Status,
    #[error("the application's answer was not understood")]
    Garbage,
}

impl Failure {
    fn label(self) -> &'static str {
        match self {
            Failure::Timeout => "timeout",
            Failure::Unreachable => "unreachable",
            Failure::Status => "status",
            Failure::Garbage => "garbage",
        }
    }
}

#[derive(Deserialize)]
struct Envelope<T> {
    result: Option<T>,
    error: Option<AppError>,
    disconnect: Option<AppDisconnect>,
}

impl Proxy {
    /// The proxy `settings` configure; `None` without a `[proxy]` section or a namespace whose
    /// subscribe or publish rule is the application's.
    pub(crate) fn new(
        settings: Option<&ProxySettings>,
        namespaces: &[NamespaceSettings],
        metrics: Arc<Metrics>,
    ) -> anyhow::Result<Option<Proxy>> {
        let asked =
            |n: &NamespaceSettings| n.subscribe == SubscribeRule::Proxy || n.publish == PublishRule::Proxy;
        let defaults;
        let settings = match settings {
            Some(settings) => settings,
            None if namespaces.iter().any(asked) => {
                defaults = ProxySettings::default();
                &defaults
            }
            None => return Ok(None),
        };
        let http = reqwest::Client::builder()
            .timeout(settings.timeout)
            // The configured URL is the one trusted: no redirect elsewhere (or to plain http).
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("wsguard/", env!("CARGO_PKG_VERSION")))
            .build()
            .context("building the HTTP client for the proxy")?;
        let url = |url: &Option<String>| url.as_deref().map(reqwest::Url::parse).transpose();
        let forward: Result<Vec<_>, _> =
            settings.forward_headers.iter().map(|h| HeaderName::from_bytes(h.as_bytes())).collect();
        Ok(Some(Proxy {
            http,
            connect: url(&settings.connect).context("proxy: connect")?,
            refresh: url(&settings.refresh).context("proxy: refresh")?,
            rpc: url(&settings.rpc).context("proxy: rpc")?,
            forward: forward.context("proxy: forward_headers")?,
            metrics,
        }))
    }

    /// Whether connections without a token are the application's to admit.
    pub(crate) fn admits_connections(&self) -> bool {
        self.connect.is_some()
    }

    /// Whether the application prolongs the connections it admitted.
    pub(crate) fn refreshes(&self) -> bool {
        self.refresh.is_some()
    }

    /// The headers of a client's request that calls pass on: those of `forward_headers` it has,
    /// and the client's address as `X-Forwarded-For` and `X-Real-IP`, wsguard's own, whatever
    /// the client sent in these.
    pub(crate) fn forwarded(&self, request: &Parts) -> HeaderMap {
        let mut forwarded = HeaderMap::new();
        for name in &self.forward {
            if CLIENT_ADDRESS_HEADERS.contains(name) || name == header::FORWARDED {
                continue;
            }
            for value in request.headers.get_all(name) {
                forwarded.append(name.clone(), value.clone());
            }
        }
        // An address is always a valid header value.
        if let Ok(client) = HeaderValue::from_str(&ClientAddr::of(request).to_string()) {
            for name in CLIENT_ADDRESS_HEADERS {
                forwarded.insert(name, client.clone());
            }
        }
        forwarded
    }

    /// Asks the application who a connection without a token is.
    pub(crate) async fn connect(
        &self,
        request: &ConnectRequest<'_>,
        headers: HeaderMap,
    ) -> Result<Answer<ConnectResult>, Failure> {
        let url = self.connect.as_ref().ok_or(Failure::Unreachable)?;
        self.call(Event::Connect, url, request, headers).await
    }

    /// Asks the application whether a connection it admitted lives on.
    pub(crate) async fn refresh(
        &self,
        request: &RefreshRequest<'_>,
    ) -> Result<Answer<RefreshResult>, Failure> {
        let url = self.refresh.as_ref().ok_or(Failure::Unreachable)?;
        self.call(Event::Refresh, url, request, HeaderMap::new()).await
    }

    /// Whether the SDK's `rpc` reaches the application.
    pub(crate) fn answers_rpc(&self) -> bool {
        self.rpc.is_some()
    }

    /// Asks the application at `url` (the namespace's) whether a client may subscribe.
    pub(crate) async fn subscribe(
        &self,
        url: &reqwest::Url,
        request: &SubscribeRequest<'_>,
    ) -> Result<Answer<SubscribeResult>, Failure> {
        self.call(Event::Subscribe, url, request, HeaderMap::new()).await
    }

    /// Asks the application at `url` (the namespace's) whether a client may publish, and what.
    pub(crate) async fn publish(
        &self,
        url: &reqwest::Url,
        request: &PublishRequest<'_>,
    ) -> Result<Answer<DataResult>, Failure> {
        self.call(Event::Publish, url, request, HeaderMap::new()).await
    }

    /// Passes the SDK's `rpc` to the application.
    pub(crate) async fn rpc(&self, request: &RpcRequest<'_>) -> Result<Answer<DataResult>, Failure> {
        let url = self.rpc.as_ref().ok_or(Failure::Unreachable)?;
        self.call(Event::Rpc, url, request, HeaderMap::new()).await
    }

    async fn call<T: DeserializeOwned>(
        &self,
        event: Event,
        url: &reqwest::Url,
        body: &impl Serialize,
        headers: HeaderMap,
    ) -> Result<Answer<T>, Failure> {
        let started = Instant::now();
        let answer = self.post(url, body, headers).await;
        let outcome = match &answer {
            Ok(Answer::Result(_)) => "result",
            Ok(Answer::Error(_)) => "error",
            Ok(Answer::Disconnect(_)) => "disconnect",
            Err(failure) => failure.label(),
        };
        self.metrics.proxy_calls.record(event.label(), outcome, started.elapsed());
        if let Err(failure) = &answer {
            tracing::warn!(event = event.label(), %url, error = %failure, "a proxy call failed");
        }
        answer
    }

    async fn post<T: DeserializeOwned>(
        &self,
        url: &reqwest::Url,
        body: &impl Serialize,
        headers: HeaderMap,
    ) -> Result<Answer<T>, Failure> {
        let body = serde_json::to_vec(body).map_err(|_| Failure::Garbage)?;
        let request = self.http.post(url.clone()).headers(headers);
        let sent = request.header("content-type", "application/json").body(body).send().await;
        let mut response =
            sent.map_err(|err| if err.is_timeout() { Failure::Timeout } else { Failure::Unreachable })?;
        if response.status() != reqwest::StatusCode::OK {
            return Err(Failure::Status);
        }
        if response.content_length().is_some_and(|length| length > MAX_ANSWER_BYTES as u64) {
            return Err(Failure::Garbage);
        }
        let mut answer = Vec::new();
        loop {
            match response.chunk().await {
                Ok(Some(chunk)) if answer.len() + chunk.len() <= MAX_ANSWER_BYTES => {
                    answer.extend_from_slice(&chunk)
                }
                Ok(Some(_)) => return Err(Failure::Garbage),
                Ok(None) => break,
                Err(err) if err.is_timeout() => return Err(Failure::Timeout),
                Err(_) => return Err(Failure::Unreachable),
            }
        }
        decode(&answer)
    }
}

/// An answer's body: a disconnect wins over an error, an error over a result, as in Centrifugo.
fn decode<T: DeserializeOwned>(body: &[u8]) -> Result<Answer<T>, Failure> {
    let envelope: Envelope<T> = serde_json::from_slice(body).map_err(|_| Failure::Garbage)?;
    match envelope {
        Envelope { disconnect: Some(disconnect), .. } if (3000..=4999).contains(&disconnect.code) => {
            Ok(Answer::Disconnect(disconnect))
        }
        Envelope { disconnect: Some(_), .. } => Err(Failure::Garbage),
        Envelope { error: Some(error), .. } => Ok(Answer::Error(error)),
        Envelope { result: Some(result), .. } => Ok(Answer::Result(result)),
        _ => Err(Failure::Garbage),
    }
}

#[cfg(test)]
mod tests;
