//! The connect proxy's verdict on a connection without a token, for every protocol: the
//! application names the user (an identity bound like a token's, see
//! [`Authenticator::proxied`]), refuses, closes, or fails to answer.

use super::{Answer, AppDisconnect, AppError, ConnectRequest, ConnectResult, Failure, Proxy};
use crate::auth::tokens::TokenError;
use crate::auth::{AuthError, Authenticator, Identity};
use axum::http::HeaderMap;
use serde_json::Value;

/// The code of a refusal wsguard makes of an answer: Centrifugo's "permission denied".
const PERMISSION_DENIED: u32 = 103;

pub(crate) enum Verdict {
    /// Admitted as the user the application named; `data` goes to the client in the reply.
    Admitted { identity: Box<Identity>, data: Option<Value> },
    /// Refused with the application's error; or for an empty user (anonymous, which wsguard does
    /// not admit) or one revoked, with "permission denied".
    Refused(AppError),
    /// Closed with the application's code.
    Disconnect(AppDisconnect),
    /// No usable answer: nothing admitted, the client may try again.
    Failed(Failure),
}

impl Proxy {
    /// Asks the application who the connection `request` describes is (its `client` becomes the
    /// identity's `jti`), passing on `headers` (the client's, those of `forward_headers`).
    pub(crate) async fn admit(
        &self,
        auth: &Authenticator,
        request: &ConnectRequest<'_>,
        headers: HeaderMap,
    ) -> Verdict {
        let ConnectResult { user, expire_at, data } = match self.connect(request, headers).await {
            Ok(Answer::Result(result)) => result,
            Ok(Answer::Error(error)) => return Verdict::Refused(error),
            Ok(Answer::Disconnect(disconnect)) => return Verdict::Disconnect(disconnect),
            Err(failure) => return Verdict::Failed(failure),
        };
        if user.is_empty() {
            let message = "anonymous connections are not admitted".to_owned();
            return Verdict::Refused(AppError { code: PERMISSION_DENIED, message });
        }
        match auth.proxied(&user, expire_at, request.caller.client) {
            Ok(identity) => Verdict::Admitted { identity: Box::new(identity), data },
            Err(AuthError::Token(TokenError::Revoked)) => {
                Verdict::Refused(AppError { code: PERMISSION_DENIED, message: "user revoked".into() })
            }
            Err(_) => {
                tracing::warn!(user = %user.escape_debug(), "the connect proxy named a user wsguard cannot take as a username");
                Verdict::Failed(Failure::Garbage)
            }
        }
    }
}
