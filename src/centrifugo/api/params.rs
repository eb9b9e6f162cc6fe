//! A method's parameters: decoded from the request's JSON object, fields Centrifugo knows but
//! wsguard cannot honour refused by name, channels and users checked as the engine checks them.

use super::super::codes::Error;
use super::reply::{bad_request, not_available, refusal};
use crate::auth::credentials;
use crate::channels::namespaces::Channel;
use crate::channels::protocol::Refusal;
use crate::channels::Engine;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::Value;

/// `params` as `T`. Fields `T` does not name are ignored, as Centrifugo ignores them.
pub(super) fn decode<T: DeserializeOwned>(method: &str, params: Value) -> Result<T, Error> {
    serde_json::from_value(params).map_err(|e| bad_request(format!("bad request: {method}: {e}")))
}

/// The channel `name` names, or Centrifugo's error for it: unknown channel (102) for a namespace
/// this server does not have, bad request (107) for a malformed name.
pub(super) fn channel<'a>(engine: &'a Engine, name: &'a str) -> Result<Channel<'a>, Error> {
    engine.resolve(name).map_err(|refused| channel_refusal(engine, name, refused))
}

/// What a method needs of a channel's namespace; where it is off, Centrifugo answers 108.
#[derive(Debug, Clone, Copy)]
pub(super) enum Feature {
    Presence,
    History,
}

/// The channel `name` names, in a namespace where `feature` is on.
pub(super) fn channel_with<'a>(
    engine: &'a Engine,
    name: &'a str,
    feature: Feature,
) -> Result<Channel<'a>, Error> {
    let channel = channel(engine, name)?;
    let (on, what) = match feature {
        Feature::Presence => (channel.namespace.presence, "presence"),
        Feature::History => (channel.namespace.history.is_some(), "history"),
    };
    if !on {
        let namespace = &channel.namespace.name;
        return Err(not_available(format!("{what} is off in namespace {namespace:?}")));
    }
    Ok(channel)
}

/// The params of a method that takes only a channel.
#[derive(Deserialize)]
struct ChannelParams {
    channel: String,
}

/// The channel `method`'s params (`{"channel": …}`) name, in a namespace where `feature` is on.
pub(super) fn channel_param(
    engine: &Engine,
    method: &str,
    params: Value,
    feature: Feature,
) -> Result<String, Error> {
    let ChannelParams { channel: name } = decode(method, params)?;
    channel_with(engine, &name, feature)?;
    Ok(name)
}

/// The engine's refusal of something done to channel `name`.
pub(super) fn channel_refusal(engine: &Engine, name: &str, refused: Refusal) -> Error {
    let unknown = name.split_once(':').is_some_and(|(namespace, _)| !engine.knows_namespace(namespace));
    refusal(refused, unknown)
}

/// A Centrifugo user ID, which is a wsguard username.
pub(super) fn user(name: &str) -> Result<&str, Error> {
    credentials::check_username(name).map_err(|e| bad_request(format!("bad request: user: {e}")))?;
    Ok(name)
}

/// Refuses `field` when the request set it: Centrifugo would act on it, wsguard cannot.
pub(super) fn refuse_if(set: bool, field: &str, why: &str) -> Result<(), Error> {
    if set {
        return Err(not_available(format!("{field}: {why}")));
    }
    Ok(())
}

/// Whether an optional string field holds something.
pub(super) fn given(field: &Option<String>) -> bool {
    field.as_deref().is_some_and(|value| !value.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize, Debug)]
    struct Publish {
        channel: String,
    }

    #[test]
    fn params_decode_ignoring_unknown_fields_and_name_what_is_wrong() {
        let ok: Publish = decode("publish", serde_json::json!({"channel": "a", "future": 1})).unwrap();
        assert_eq!(ok.channel, "a");
        let missing = decode::<Publish>("publish", serde_json::json!({})).unwrap_err();
        assert_eq!(
            (missing.code, missing.message.as_str()),
            (107, "bad request: publish: missing field `channel`")
        );
        let wrong = decode::<Publish>("publish", serde_json::json!({"channel": 5})).unwrap_err();
        assert!(wrong.message.starts_with("bad request: publish: invalid type"), "{}", wrong.message);
    }

    #[test]
    fn users_are_usernames() {
        assert!(user("johndoe").is_ok());
        assert_eq!(user("john doe").unwrap_err().code, 107);
        assert_eq!(user("").unwrap_err().code, 107);
        assert!(refuse_if(false, "client", "x").is_ok());
        assert_eq!(refuse_if(true, "client", "x").unwrap_err().code, 108);
    }
}
