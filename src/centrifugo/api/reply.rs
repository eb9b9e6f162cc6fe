//! How the Centrifugo server API answers, as Centrifugo does: a method's outcome is HTTP 200 with
//! `{"result": …}` or `{"error": {"code", "message"}}`; only what stops a request before any method
//! runs has a status of its own (401, 400, 404, 413, 429, 503), with the same `{"error": …}` body.

use super::super::codes::{self, Error};
use crate::api::CallError;
use crate::channels::protocol::{ErrorCode, Refusal};
use crate::http::error::ApiError;
use crate::store::StoreError;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

/// A method's outcome, HTTP 200 either way.
pub(super) fn outcome(outcome: Result<Value, Error>) -> Response {
    Json(outcome_value(outcome)).into_response()
}

/// `{"result": …}` or `{"error": …}`: a method's answer, and each of a broadcast's.
pub(super) fn outcome_value(outcome: Result<Value, Error>) -> Value {
    match outcome {
        Ok(result) => json!({ "result": result }),
        Err(error) => json!({ "error": error }),
    }
}

/// A request refused before any method ran.
pub(super) fn refused(status: StatusCode, error: Error) -> Response {
    (status, Json(json!({ "error": error }))).into_response()
}

fn retry_later(status: StatusCode, error: Error, after_secs: u64) -> Response {
    let mut response = refused(status, error);
    response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(after_secs.max(1)));
    response
}

/// What wsguard's key checks and body limits refused, in Centrifugo's shape: a wrong or missing
/// key is 401 (what Centrifugo's clients look for), whatever it resembled.
pub(super) fn call_refused(err: CallError) -> Response {
    match err {
        CallError::NoKey => refused(
            StatusCode::UNAUTHORIZED,
            codes::UNAUTHORIZED.because("no API key: send X-API-Key: <key> or Authorization: apikey <key>"),
        ),
        CallError::NotBearer => refused(
            StatusCode::UNAUTHORIZED,
            codes::UNAUTHORIZED.because("the key goes in X-API-Key: <key> or Authorization: apikey <key>"),
        ),
        CallError::BadKey => {
            refused(StatusCode::UNAUTHORIZED, codes::UNAUTHORIZED.because("invalid API key"))
        }
        CallError::Scope(scope) => refused(StatusCode::FORBIDDEN, lacks(scope)),
        CallError::RateLimited { retry_after_secs } => retry_later(
            StatusCode::TOO_MANY_REQUESTS,
            codes::TOO_MANY_REQUESTS.because("too many requests for this API key, try again shortly"),
            retry_after_secs,
        ),
        CallError::KeysUnavailable => retry_later(
            StatusCode::SERVICE_UNAVAILABLE,
            codes::INTERNAL.because("database unavailable, try again shortly"),
            1,
        ),
        CallError::Http(ApiError::BadRequest { status, detail }) => {
            refused(status, codes::BAD_REQUEST.because(detail))
        }
        // Nothing else reaches here: the key and body checks refuse with the variants above.
        other => {
            tracing::warn!(error = ?other, "centrifugo API: unexpected refusal");
            refused(StatusCode::INTERNAL_SERVER_ERROR, codes::INTERNAL.error())
        }
    }
}

/// The key lacks the scope a method needs.
pub(super) fn lacks(scope: crate::auth::api_keys::Scope) -> Error {
    codes::PERMISSION_DENIED.because(format!("permission denied: this API key lacks the {scope} scope"))
}

/// The channel engine's refusal as Centrifugo's error. `unknown_channel`: the refused name is
/// in no namespace of this server, which Centrifugo calls an unknown channel.
pub(super) fn refusal(refusal: Refusal, unknown_channel: bool) -> Error {
    let Refusal { code, detail } = refusal;
    match code {
        ErrorCode::BadRequest if unknown_channel => codes::UNKNOWN_CHANNEL.because(detail),
        ErrorCode::BadRequest | ErrorCode::TooBig => codes::BAD_REQUEST.because(detail),
        ErrorCode::Forbidden
        | ErrorCode::TokenExpired
        | ErrorCode::Application(_)
        | ErrorCode::Disconnect(_) => codes::PERMISSION_DENIED.because(detail),
        ErrorCode::RateLimited => codes::TOO_MANY_REQUESTS.because(detail),
        ErrorCode::Unavailable => codes::INTERNAL.because(detail),
    }
}

/// A store call that failed: logged here, never sent.
pub(super) fn store_error(err: StoreError) -> Error {
    match err {
        StoreError::Unavailable(_) => {
            tracing::warn!(error = %err, "centrifugo API: database unavailable");
            codes::INTERNAL.because("database unavailable, try again shortly")
        }
        other => {
            tracing::error!(error = %other, "centrifugo API: store call failed");
            codes::INTERNAL.error()
        }
    }
}

/// A method or option wsguard cannot carry out as Centrifugo does: said, never half done.
pub(super) fn not_available(what: impl std::fmt::Display) -> Error {
    codes::NOT_AVAILABLE.because(format!("not available in wsguard: {what}"))
}

/// A request with a bad value.
pub(super) fn bad_request(detail: impl Into<String>) -> Error {
    codes::BAD_REQUEST.because(detail)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_take_centrifugos_codes() {
        let code = |code, unknown| refusal(Refusal::new(code, "why"), unknown).code;
        assert_eq!(code(ErrorCode::BadRequest, true), 102);
        assert_eq!(code(ErrorCode::BadRequest, false), 107);
        assert_eq!(code(ErrorCode::TooBig, false), 107);
        assert_eq!(code(ErrorCode::Forbidden, false), 103);
        assert_eq!(code(ErrorCode::RateLimited, false), 111);
        let unavailable = refusal(Refusal::new(ErrorCode::Unavailable, "storage unavailable"), false);
        assert_eq!((unavailable.code, unavailable.temporary), (100, true));
        assert_eq!(unavailable.message, "storage unavailable");
    }
}
