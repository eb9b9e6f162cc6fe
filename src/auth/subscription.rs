//! Subscription tokens (`subscribe = "token"`): a JWT that lets its `sub` follow one `channel`
//! until its `exp`, signed by wsguard's keys (with wsguard's `iss`) or by a trusted issuer's, as
//! the application's own tokens are. A subscription token is never a connection token: those
//! carry no `channel` claim, and a token with one opens no socket.

use super::tokens::TokenError;
use super::{AuthError, Authenticator};
use serde_json::{Map, Value};

/// What a valid subscription token grants: the channel until `expires_at` (Unix seconds), or for
/// the life of the connection when its `expire_at` claim is 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Grant {
    pub(crate) expires_at: Option<i64>,
}

/// Why a subscription token grants nothing. The text is safe to show the client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Refused {
    /// Expired: the client may fetch a new one.
    #[error("subscription token expired")]
    Expired,
    #[error("subscription token refused: {0}")]
    Invalid(&'static str),
    /// The issuer's keys cannot be read now: neither admitted nor called forged.
    #[error("the token's keys are unavailable, try again")]
    Unavailable,
}

impl Authenticator {
    /// Checks that `token` lets `username` follow `channel`.
    pub(crate) async fn subscription(
        &self,
        token: &str,
        username: &str,
        channel: &str,
    ) -> Result<Grant, Refused> {
        let (sub, payload) = match self.issuers.select(token, self.tokens.issuer()) {
            Some(issuer) => issuer.subscription(token).await.map_err(refused)?,
            None => {
                let payload = self.tokens.verify_payload(token).map_err(|err| refused(err.into()))?;
                let sub = payload.get("sub").and_then(Value::as_str).unwrap_or_default().to_owned();
                (sub, payload)
            }
        };
        grant(&sub, &payload, username, channel)
    }
}

/// What a verified payload grants `username` in `channel`.
fn grant(sub: &str, payload: &Map<String, Value>, username: &str, channel: &str) -> Result<Grant, Refused> {
    match payload.get("channel") {
        Some(Value::String(granted)) if granted == channel => {}
        Some(Value::String(_)) => return Err(Refused::Invalid("it is for another channel")),
        _ => return Err(Refused::Invalid("it names no channel")),
    }
    if sub != username {
        return Err(Refused::Invalid("it is for another user"));
    }
    let exp = payload.get("exp").and_then(Value::as_i64).ok_or(Refused::Invalid("it has no exp"))?;
    // `expire_at` decouples the subscription's end from the token's: 0 never ends it.
    let expires_at = match payload.get("expire_at") {
        None => Some(exp),
        Some(value) => match value.as_i64() {
            Some(0) => None,
            Some(at) if at > 0 => Some(at),
            _ => return Err(Refused::Invalid("its expire_at is not a time")),
        },
    };
    Ok(Grant { expires_at })
}

fn refused(err: AuthError) -> Refused {
    match err {
        AuthError::Token(TokenError::Expired) => Refused::Expired,
        AuthError::Token(TokenError::BadSignature) => Refused::Invalid("invalid signature"),
        AuthError::Token(TokenError::WrongAudience) => Refused::Invalid("invalid issuer or audience"),
        AuthError::Token(TokenError::Immature) => Refused::Invalid("not yet valid"),
        AuthError::KeysUnavailable { .. } | AuthError::Store(_) => Refused::Unavailable,
        _ => Refused::Invalid("malformed token"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn payload(value: Value) -> Map<String, Value> {
        value.as_object().cloned().unwrap()
    }

    #[test]
    fn a_token_grants_its_channel_to_its_user_only() {
        let token = payload(json!({"sub": "alice", "channel": "doc:1", "exp": 2000}));
        assert_eq!(grant("alice", &token, "alice", "doc:1"), Ok(Grant { expires_at: Some(2000) }));
        assert_eq!(
            grant("alice", &token, "alice", "doc:2"),
            Err(Refused::Invalid("it is for another channel"))
        );
        assert_eq!(grant("alice", &token, "bob", "doc:1"), Err(Refused::Invalid("it is for another user")));
        let none = payload(json!({"sub": "alice", "exp": 2000}));
        assert_eq!(grant("alice", &none, "alice", "doc:1"), Err(Refused::Invalid("it names no channel")));
    }

    #[test]
    fn expire_at_sets_the_end_of_the_subscription() {
        let never = payload(json!({"sub": "a", "channel": "c:1", "exp": 2000, "expire_at": 0}));
        assert_eq!(grant("a", &never, "a", "c:1"), Ok(Grant { expires_at: None }));
        let later = payload(json!({"sub": "a", "channel": "c:1", "exp": 2000, "expire_at": 5000}));
        assert_eq!(grant("a", &later, "a", "c:1"), Ok(Grant { expires_at: Some(5000) }));
        let bad = payload(json!({"sub": "a", "channel": "c:1", "exp": 2000, "expire_at": "soon"}));
        assert!(grant("a", &bad, "a", "c:1").is_err());
    }
}
