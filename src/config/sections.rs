//! The file's tables, `[[namespaces]]`, `[[trusted_issuers]]`, `[proxy]` and `[webhooks]`: no flag or variable
//! can carry a table, so the file is their only source. Every node of a cluster reads the same
//! file, which is how namespaces, issuers and the application's endpoints are shared.

use serde::Deserialize;
use std::path::PathBuf;
use std::time::Duration;

/// The keys of the file that are sections, not flags.
pub(super) const SECTION_KEYS: [&str; 4] = ["namespaces", "trusted_issuers", "proxy", "webhooks"];

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Sections {
    #[serde(default)]
    pub(crate) namespaces: Vec<NamespaceSettings>,
    #[serde(default)]
    pub(crate) trusted_issuers: Vec<IssuerSettings>,
    pub(crate) proxy: Option<ProxySettings>,
    pub(crate) webhooks: Option<super::webhooks::WebhookSettings>,
}

/// `[proxy]`: the application's endpoints for client-wide events, in Centrifugo's proxy format.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ProxySettings {
    /// Connections without a token: the application names the user.
    pub(crate) connect: Option<String>,
    /// Connections the connect proxy gave an `expire_at`: prolonged, or let end.
    pub(crate) refresh: Option<String>,
    /// The SDK's `rpc(method, data)`, answered by the application.
    pub(crate) rpc: Option<String>,
    /// How long a call may take before it counts as failed.
    #[serde(default = "proxy_timeout", with = "humantime_serde_compat")]
    pub(crate) timeout: Duration,
    /// Headers of the client's request passed on, as they came, in every call.
    #[serde(default)]
    pub(crate) forward_headers: Vec<String>,
}

fn proxy_timeout() -> Duration {
    Duration::from_secs(1)
}

impl Default for ProxySettings {
    /// No client-wide endpoint: what namespaces' proxies use without a `[proxy]` section.
    fn default() -> ProxySettings {
        ProxySettings {
            connect: None,
            refresh: None,
            rpc: None,
            timeout: proxy_timeout(),
            forward_headers: Vec::new(),
        }
    }
}

/// Headers that describe a connection or a message's framing, not the client: never forwarded.
const UNFORWARDABLE: [&str; 11] = [
    "connection",
    "content-length",
    "content-type",
    "host",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "sec-websocket-key",
];

impl ProxySettings {
    fn validate(&self) -> anyhow::Result<()> {
        for (name, url) in [("connect", &self.connect), ("refresh", &self.refresh), ("rpc", &self.rpc)] {
            let Some(url) = url else { continue };
            anyhow::ensure!(
                is_http_url(url),
                "proxy: {name} must be an http:// or https:// URL, not {url:?}"
            );
        }
        anyhow::ensure!(
            self.refresh.is_none() || self.connect.is_some(),
            "proxy: refresh is for connections the connect proxy admitted; set connect too"
        );
        anyhow::ensure!(
            self.timeout >= Duration::from_millis(10) && self.timeout <= Duration::from_secs(60),
            "proxy: timeout must be between 10ms and 60s"
        );
        for header in &self.forward_headers {
            let valid = axum::http::HeaderName::from_bytes(header.as_bytes());
            anyhow::ensure!(valid.is_ok(), "proxy: forward_headers: {header:?} is not a header name");
            let lower = header.to_ascii_lowercase();
            anyhow::ensure!(
                !UNFORWARDABLE.contains(&lower.as_str()),
                "proxy: forward_headers: {header} belongs to the connection, not the client, and is not forwarded"
            );
        }
        Ok(())
    }
}

pub(super) fn is_http_url(url: &str) -> bool {
    let scheme = url.split_once("://").map(|(scheme, _)| scheme.to_ascii_lowercase());
    matches!(scheme.as_deref(), Some("http" | "https")) && reqwest::Url::parse(url).is_ok()
}

/// Who may subscribe to a namespace's channels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum SubscribeRule {
    /// Any authenticated user.
    Any,
    /// Users whose token's `channels` claim lists the channel (globs such as `news:*`).
    Claim,
    /// The user named by the part after `:`.
    Owner,
    /// Whom the application allows, asked at each subscribe (`subscribe_proxy`).
    Proxy,
    /// Holders of a subscription token for the channel: a JWT with `sub`, `channel` and `exp`,
    /// signed by wsguard's keys or a trusted issuer's.
    Token,
}

/// Who may publish to a namespace's channels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum PublishRule {
    /// The server API only.
    Api,
    /// The server API and the channel's subscribers.
    Subscribers,
    /// The server API, and clients the application allows (`publish_proxy`), which may rewrite
    /// the data.
    Proxy,
}

/// One `[[namespaces]]` table: channels `name:<anything>`. Unset keys take the least privilege:
/// subscribing by claim, publishing by the API only.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct NamespaceSettings {
    pub(crate) name: String,
    #[serde(default = "claim")]
    pub(crate) subscribe: SubscribeRule,
    #[serde(default = "api")]
    pub(crate) publish: PublishRule,
    /// Publications kept per channel; 0 keeps none (and numbers none).
    #[serde(default = "history_size")]
    pub(crate) history_size: u32,
    #[serde(default = "history_ttl", with = "humantime_serde_compat")]
    pub(crate) history_ttl: Duration,
    #[serde(default)]
    pub(crate) presence: bool,
    /// With `subscribe = "proxy"`: the application's subscribe endpoint.
    pub(crate) subscribe_proxy: Option<String>,
    /// With `publish = "proxy"`: the application's publish endpoint.
    pub(crate) publish_proxy: Option<String>,
}

impl NamespaceSettings {
    fn validate(&self) -> anyhow::Result<()> {
        let name = &self.name;
        let endpoints = [
            ("subscribe", self.subscribe == SubscribeRule::Proxy, &self.subscribe_proxy),
            ("publish", self.publish == PublishRule::Proxy, &self.publish_proxy),
        ];
        for (event, proxied, url) in endpoints {
            match url {
                Some(url) => {
                    anyhow::ensure!(
                        proxied,
                        "namespaces: {name:?}: {event}_proxy is set but {event} is not \"proxy\""
                    );
                    anyhow::ensure!(
                        is_http_url(url),
                        "namespaces: {name:?}: {event}_proxy must be an http:// or https:// URL, not {url:?}"
                    );
                }
                None => anyhow::ensure!(
                    !proxied,
                    "namespaces: {name:?}: {event} = \"proxy\" needs {event}_proxy, the application's URL"
                ),
            }
        }
        Ok(())
    }
}

fn claim() -> SubscribeRule {
    SubscribeRule::Claim
}
fn api() -> PublishRule {
    PublishRule::Api
}
fn history_size() -> u32 {
    100
}
fn history_ttl() -> Duration {
    Duration::from_secs(24 * 3600)
}

/// One `[[trusted_issuers]]` table: an application whose tokens open sockets.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct IssuerSettings {
    /// Its `iss`; `None` admits tokens without `iss` (at most one issuer may omit it).
    pub(crate) issuer: Option<String>,
    /// Where its RS256/ES256/EdDSA public keys are published.
    pub(crate) jwks_url: Option<String>,
    /// Its HS256 shared secret (at least 32 bytes).
    pub(crate) secret_file: Option<PathBuf>,
    /// The `aud` its tokens must carry, if any.
    pub(crate) audience: Option<String>,
    #[serde(default = "sub")]
    pub(crate) username_claim: String,
    /// The longest a token of it may live, from its `iat` (or from now, without one); a token
    /// that claims longer is refused. Bounds how long a user revocation must stay in force.
    #[serde(default = "max_token_lifetime", with = "humantime_serde_compat")]
    pub(crate) max_token_lifetime: Duration,
}

fn sub() -> String {
    "sub".to_owned()
}
fn max_token_lifetime() -> Duration {
    Duration::from_secs(24 * 3600)
}

impl IssuerSettings {
    /// How logs, `/readyz` and `/metrics` name it.
    pub(crate) fn name(&self) -> &str {
        self.issuer.as_deref().unwrap_or("(no iss)")
    }
}

/// `"24h"`-style durations, as the flags take them.
pub(super) mod humantime_serde_compat {
    use serde::{Deserialize, Deserializer};
    use std::time::Duration;

    pub(in crate::config) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(d)?;
        humantime::parse_duration(&text).map_err(serde::de::Error::custom)
    }
}

impl Sections {
    /// Reads the sections out of the file's table, leaving the keys that are flags.
    pub(super) fn take(file: &mut toml::Table) -> anyhow::Result<Sections> {
        let mut sections = toml::Table::new();
        for key in SECTION_KEYS {
            if let Some(value) = file.remove(key) {
                sections.insert(key.to_owned(), value);
            }
        }
        let sections: Sections = toml::Value::Table(sections).try_into()?;
        sections.validate()?;
        Ok(sections)
    }

    fn validate(&self) -> anyhow::Result<()> {
        let mut names = std::collections::BTreeSet::new();
        for namespace in &self.namespaces {
            let name = &namespace.name;
            let valid = !name.is_empty()
                && name.len() <= 32
                && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-'));
            anyhow::ensure!(valid, "namespaces: {name:?} must be 1-32 of A-Z a-z 0-9 _ -");
            anyhow::ensure!(name != "user", "namespaces: \"user\" is built in (personal channels)");
            anyhow::ensure!(names.insert(name.as_str()), "namespaces: {name:?} appears twice");
            namespace.validate()?;
        }
        let without_iss = self.trusted_issuers.iter().filter(|i| i.issuer.is_none()).count();
        anyhow::ensure!(without_iss <= 1, "trusted_issuers: at most one may omit `issuer`");
        let mut seen = std::collections::BTreeSet::new();
        for issuer in &self.trusted_issuers {
            issuer.validate()?;
            let name = issuer.name();
            anyhow::ensure!(seen.insert(&issuer.issuer), "trusted_issuers: {name} appears twice");
        }
        if let Some(proxy) = &self.proxy {
            proxy.validate()?;
        }
        if let Some(webhooks) = &self.webhooks {
            webhooks.validate()?;
        }
        Ok(())
    }
}

impl Sections {
    /// No trusted issuer may be wsguard itself: its tokens take wsguard's own path.
    pub(super) fn check_own_issuer(&self, own: &str) -> anyhow::Result<()> {
        match self.trusted_issuers.iter().find(|i| i.issuer.as_deref() == Some(own)) {
            Some(issuer) => {
                anyhow::bail!("trusted_issuers: {} is wsguard's own issuer (`issuer`)", issuer.name())
            }
            None => Ok(()),
        }
    }
}

impl IssuerSettings {
    fn validate(&self) -> anyhow::Result<()> {
        let name = self.name();
        anyhow::ensure!(
            self.jwks_url.is_some() != self.secret_file.is_some(),
            "trusted_issuers: {name} needs exactly one of jwks_url and secret_file"
        );
        anyhow::ensure!(
            self.issuer.as_deref() != Some(""),
            "trusted_issuers: `issuer` must not be empty (omit it for tokens without `iss`)"
        );
        anyhow::ensure!(self.audience.as_deref() != Some(""), "trusted_issuers: {name}: empty audience");
        anyhow::ensure!(!self.username_claim.is_empty(), "trusted_issuers: {name}: empty username_claim");
        if let Some(url) = &self.jwks_url {
            anyhow::ensure!(
                is_http_url(url),
                "trusted_issuers: {name}: jwks_url must be an http:// or https:// URL"
            );
        }
        anyhow::ensure!(
            self.max_token_lifetime >= Duration::from_secs(1),
            "trusted_issuers: {name}: max_token_lifetime must be at least 1s"
        );
        Ok(())
    }
}
