//! Namespaces and the channel names they admit: `namespace:name`, or a bare `name` in the default
//! namespace (the chat's rooms). `user:<username>` is built in: only that user subscribes, only
//! the server API publishes.

use super::protocol::{chat_text, check_room, check_text, ErrorCode, Refusal, MAX_CHANNEL_CHARS};
use crate::auth::Identity;
use crate::config::{NamespaceSettings, PublishRule, SubscribeRule};
use crate::store::Retention;
use serde_json::Value;
use std::collections::HashMap;
use std::time::Duration;

/// What a namespace's channels allow and keep.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Namespace {
    /// `""` for the default namespace.
    pub(crate) name: String,
    pub(crate) subscribe: SubscribeRule,
    pub(crate) publish: PublishRule,
    /// `None`: no history, publications are neither stored nor numbered.
    pub(crate) history: Option<Retention>,
    pub(crate) presence: bool,
    /// The application's endpoints, with `subscribe = "proxy"` and `publish = "proxy"`.
    pub(crate) subscribe_proxy: Option<reqwest::Url>,
    pub(crate) publish_proxy: Option<reqwest::Url>,
}

/// Personal channels keep what a client that reconnects may have missed.
const PERSONAL_HISTORY: Retention = Retention { size: Some(100), ttl_ms: Some(24 * 3600 * 1000) };

pub(crate) struct Namespaces {
    default: Namespace,
    personal: Namespace,
    configured: HashMap<String, Namespace>,
}

/// A channel name checked against the namespaces.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Channel<'a> {
    pub(crate) name: &'a str,
    pub(crate) namespace: &'a Namespace,
    /// The part after `namespace:` (the whole name in the default namespace).
    pub(crate) rest: &'a str,
}

impl Namespaces {
    pub(crate) fn new(settings: &[NamespaceSettings]) -> Namespaces {
        let configured = settings
            .iter()
            .map(|s| {
                let retention = Retention {
                    size: Some(s.history_size),
                    ttl_ms: Some(i64::try_from(s.history_ttl.as_millis()).unwrap_or(i64::MAX)),
                };
                let namespace = Namespace {
                    name: s.name.clone(),
                    subscribe: s.subscribe,
                    publish: s.publish,
                    history: (s.history_size > 0 && s.history_ttl > Duration::ZERO).then_some(retention),
                    presence: s.presence,
                    // Checked when the configuration was read.
                    subscribe_proxy: s.subscribe_proxy.as_deref().and_then(|u| reqwest::Url::parse(u).ok()),
                    publish_proxy: s.publish_proxy.as_deref().and_then(|u| reqwest::Url::parse(u).ok()),
                };
                (s.name.clone(), namespace)
            })
            .collect();
        Namespaces {
            default: Namespace {
                name: String::new(),
                subscribe: SubscribeRule::Any,
                publish: PublishRule::Subscribers,
                history: Some(Retention::ALL),
                presence: true,
                subscribe_proxy: None,
                publish_proxy: None,
            },
            personal: Namespace {
                name: "user".to_owned(),
                subscribe: SubscribeRule::Owner,
                publish: PublishRule::Api,
                history: Some(PERSONAL_HISTORY),
                presence: false,
                subscribe_proxy: None,
                publish_proxy: None,
            },
            configured,
        }
    }

    /// Whether `namespace` is configured or built in (`""`, the default, and `user`).
    pub(crate) fn knows(&self, namespace: &str) -> bool {
        matches!(namespace, "" | "user") || self.configured.contains_key(namespace)
    }

    /// The channel `name` names: `bad_request` for a malformed name or an unknown namespace.
    pub(crate) fn resolve<'a>(&'a self, name: &'a str) -> Result<Channel<'a>, Refusal> {
        let Some((namespace, rest)) = name.split_once(':') else {
            check_room(name)?;
            return Ok(Channel { name, namespace: &self.default, rest: name });
        };
        let valid = name.len() <= MAX_CHANNEL_CHARS
            && !rest.is_empty()
            && rest
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-' | b'@' | b':'));
        if !valid {
            return Err(Refusal::new(
                ErrorCode::BadRequest,
                format!(
                    "channel names are namespace:name, at most {MAX_CHANNEL_CHARS} of A-Z a-z 0-9 _ . - @ :"
                ),
            ));
        }
        let namespace = match namespace {
            "user" => &self.personal,
            other => self
                .configured
                .get(other)
                .ok_or_else(|| Refusal::new(ErrorCode::BadRequest, format!("unknown namespace {other:?}")))?,
        };
        Ok(Channel { name, namespace, rest })
    }
}

impl Channel<'_> {
    /// Whether `identity` may subscribe by the namespace's fixed rule: `forbidden` otherwise.
    /// The application's rules (a proxy, a subscription token) are judged when subscribing
    /// (`Engine::judge_subscribe`), and outlive the connection's token.
    pub(crate) fn may_subscribe(&self, identity: &Identity) -> Result<(), Refusal> {
        let allowed = match self.namespace.subscribe {
            SubscribeRule::Any | SubscribeRule::Proxy | SubscribeRule::Token => true,
            SubscribeRule::Owner => self.rest == identity.user.username,
            SubscribeRule::Claim => {
                identity.claims.channels.iter().any(|pattern| glob_matches(pattern, self.name))
            }
        };
        if allowed {
            Ok(())
        } else {
            Err(Refusal::new(ErrorCode::Forbidden, "not allowed to subscribe to this channel"))
        }
    }

    /// Whether `data` may be published here, by anyone: in a room (the default namespace), a
    /// chat message (`{"text": …}`) must have a text the chat accepts, whichever frame or call
    /// carries it.
    pub(crate) fn check_data(&self, data: &Value) -> Result<(), Refusal> {
        match chat_text(data) {
            Some(text) if self.namespace.name.is_empty() => check_text(text),
            _ => Ok(()),
        }
    }

    /// Whether a client subscribed to the channel (`subscribed`) may publish to it.
    pub(crate) fn may_publish(&self, subscribed: bool) -> Result<(), Refusal> {
        match self.namespace.publish {
            PublishRule::Subscribers if subscribed => Ok(()),
            PublishRule::Subscribers => {
                Err(Refusal::new(ErrorCode::Forbidden, "subscribe to the channel first"))
            }
            PublishRule::Api => Err(Refusal::new(ErrorCode::Forbidden, "only the server API publishes here")),
            // The application judges (`Engine::judge_publish`), subscribed or not, as Centrifugo's
            // publish proxy does.
            PublishRule::Proxy => Ok(()),
        }
    }
}

/// `*` matches any run of characters (`:` included); everything else matches itself.
pub(crate) fn glob_matches(pattern: &str, name: &str) -> bool {
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or_default();
    let Some(mut rest) = name.strip_prefix(first) else { return false };
    let parts: Vec<&str> = parts.collect();
    let Some((last, middle)) = parts.split_last() else { return rest.is_empty() };
    for part in middle {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn namespaces() -> Namespaces {
        let file = r#"
            [[namespaces]]
            name = "news"
            subscribe = "any"
            [[namespaces]]
            name = "off"
            history_size = 0
        "#;
        let sections: crate::config::Sections = toml::from_str(file).unwrap();
        Namespaces::new(&sections.namespaces)
    }

    #[test]
    fn names_resolve_to_their_namespace_or_are_refused() {
        let namespaces = namespaces();
        let general = namespaces.resolve("general").unwrap();
        assert_eq!((general.namespace.name.as_str(), general.rest), ("", "general"));
        assert_eq!(general.namespace.history, Some(Retention::ALL));
        let news = namespaces.resolve("news:eu:sport").unwrap();
        assert_eq!((news.namespace.name.as_str(), news.rest), ("news", "eu:sport"));
        assert_eq!(namespaces.resolve("user:alice@x.org").unwrap().namespace.subscribe, SubscribeRule::Owner);
        assert_eq!(namespaces.resolve("off:x").unwrap().namespace.history, None);
        let too_long = format!("news:{}", "a".repeat(MAX_CHANNEL_CHARS));
        for bad in ["", "news:", "news:a b", "nope:x", "has space", ":x", too_long.as_str()] {
            assert_eq!(namespaces.resolve(bad).unwrap_err().code, ErrorCode::BadRequest, "{bad:?}");
        }
        for (namespace, known) in [("", true), ("user", true), ("news", true), ("off", true), ("nope", false)]
        {
            assert_eq!(namespaces.knows(namespace), known, "{namespace:?}");
        }
    }

    #[test]
    fn a_rooms_chat_messages_follow_the_chats_text_rules() {
        use super::super::protocol::MAX_TEXT_CHARS;
        use serde_json::json;
        let namespaces = namespaces();
        let room = namespaces.resolve("general").unwrap();
        let news = namespaces.resolve("news:eu").unwrap();
        let long = "x".repeat(MAX_TEXT_CHARS + 1);
        for (data, in_room) in [
            (json!({"text": "hi"}), Ok(())),
            (json!({"text": ""}), Err(ErrorCode::BadRequest)),
            (json!({"text": long}), Err(ErrorCode::TooBig)),
            // Not a chat message: a publication, as anywhere.
            (json!({"text": long, "more": 1}), Ok(())),
            (json!({"n": 1}), Ok(())),
            (json!("text"), Ok(())),
        ] {
            assert_eq!(room.check_data(&data).map_err(|r| r.code), in_room, "{data}");
            assert!(news.check_data(&data).is_ok(), "only rooms hold chat messages: {data}");
        }
    }

    #[test]
    fn globs_match_whole_names() {
        for (pattern, name, expected) in [
            ("news:*", "news:eu", true),
            ("news:*", "news:", true),
            ("news:*", "newsx", false),
            ("*", "anything:at:all", true),
            ("news:eu", "news:eu", true),
            ("news:eu", "news:eu2", false),
            ("a*b*c", "a-b-c", true),
            ("a*b*c", "a-c", false),
            ("*:vip", "room:vip", true),
            ("*:vip", "room:vipx", false),
            ("a*a", "a", false),
        ] {
            assert_eq!(glob_matches(pattern, name), expected, "{pattern} vs {name}");
        }
    }
}
