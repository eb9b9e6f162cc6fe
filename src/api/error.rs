//! The server API's refusals, answered like the rest of the HTTP API: a status and a JSON
//! `{"detail": …}` that is safe to show. Handlers return `Result<_, CallError>` and use `?` on
//! store, broker and HTTP-API errors.

use crate::auth::api_keys::Scope;
use crate::broker::BrokerError;
use crate::channels::protocol::{ErrorCode, Refusal};
use crate::http::error::ApiError;
use crate::store::StoreError;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

#[derive(Debug)]
pub(crate) enum CallError {
    /// No `Authorization` header: 401.
    NoKey,
    /// An `Authorization` header that is not `Bearer <key>`: 401.
    NotBearer,
    /// A key that is no key of this server (never was, or revoked): 401. Says nothing of why.
    BadKey,
    /// The key lacks the scope the endpoint needs: 403.
    Scope(Scope),
    /// Refused for who or where the caller is (the admin role, the origin): 403 with this text.
    Denied(&'static str),
    /// The key spent its budget: 429 with `Retry-After`.
    RateLimited { retry_after_secs: u64 },
    /// The key table could not be reread lately (the database is away): 503.
    KeysUnavailable,
    /// The broker (Redis) did not answer: 503.
    Broker(BrokerError),
    /// The channel engine refused the call: 422 for a bad request, 403, 429, or 503.
    Refused(Refusal),
    /// Whatever the HTTP API answers: 413, 415, 422, database errors.
    Http(ApiError),
}

impl CallError {
    /// A request with a bad value: 422 with `detail`.
    pub(crate) fn invalid(detail: impl Into<String>) -> CallError {
        CallError::Http(ApiError::unprocessable(detail))
    }
}

impl CallError {
    /// Any refusal with its status and `detail` (404, 409…).
    pub(crate) fn status(status: StatusCode, detail: impl Into<String>) -> CallError {
        CallError::Http(ApiError::BadRequest { status, detail: detail.into() })
    }

    /// A body over `limit` bytes: 413.
    pub(crate) fn too_large(limit: usize) -> CallError {
        CallError::Http(ApiError::BadRequest {
            status: StatusCode::PAYLOAD_TOO_LARGE,
            detail: format!("Request body too large (limit {limit} bytes)"),
        })
    }
}

impl From<ApiError> for CallError {
    fn from(err: ApiError) -> Self {
        CallError::Http(err)
    }
}

impl From<StoreError> for CallError {
    fn from(err: StoreError) -> Self {
        CallError::Http(ApiError::Store(err))
    }
}

impl From<Refusal> for CallError {
    fn from(refusal: Refusal) -> Self {
        CallError::Refused(refusal)
    }
}

impl From<BrokerError> for CallError {
    fn from(err: BrokerError) -> Self {
        CallError::Broker(err)
    }
}

fn detail(status: StatusCode, text: &str) -> Response {
    (status, Json(json!({ "detail": text }))).into_response()
}

/// 401 with the bearer challenge of RFC 6750 §3: `error="invalid_token"` when a key was presented.
fn unauthorized(text: &str, presented: bool) -> Response {
    let mut response = detail(StatusCode::UNAUTHORIZED, text);
    let challenge = if presented {
        format!(r#"Bearer error="invalid_token", error_description="{text}""#)
    } else {
        "Bearer".to_owned()
    };
    let challenge = HeaderValue::from_str(&challenge).unwrap_or(HeaderValue::from_static("Bearer"));
    response.headers_mut().insert(header::WWW_AUTHENTICATE, challenge);
    response
}

fn retry_later(status: StatusCode, text: &str, after_secs: u64) -> Response {
    let mut response = detail(status, text);
    response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(after_secs.max(1)));
    response
}

impl IntoResponse for CallError {
    fn into_response(self) -> Response {
        match self {
            CallError::NoKey => unauthorized("Not authenticated", false),
            CallError::NotBearer => unauthorized("Invalid authentication credentials", false),
            CallError::BadKey => unauthorized("Invalid API key", true),
            CallError::Scope(scope) => {
                detail(StatusCode::FORBIDDEN, &format!("This API key lacks the {scope} scope"))
            }
            CallError::Denied(text) => detail(StatusCode::FORBIDDEN, text),
            CallError::RateLimited { retry_after_secs } => retry_later(
                StatusCode::TOO_MANY_REQUESTS,
                "Too many requests for this API key, try again shortly",
                retry_after_secs,
            ),
            CallError::KeysUnavailable => {
                retry_later(StatusCode::SERVICE_UNAVAILABLE, "Database unavailable, try again shortly", 1)
            }
            CallError::Broker(err) => {
                tracing::warn!(error = %err, "server API: broker unavailable");
                retry_later(StatusCode::SERVICE_UNAVAILABLE, "Broker unavailable, try again shortly", 1)
            }
            CallError::Refused(Refusal { code, detail: text }) => match code {
                ErrorCode::BadRequest | ErrorCode::TooBig => detail(StatusCode::UNPROCESSABLE_ENTITY, &text),
                // The API is never the application's to judge: these come from no API call.
                ErrorCode::Forbidden
                | ErrorCode::TokenExpired
                | ErrorCode::Application(_)
                | ErrorCode::Disconnect(_) => detail(StatusCode::FORBIDDEN, &text),
                ErrorCode::RateLimited => retry_later(StatusCode::TOO_MANY_REQUESTS, &text, 1),
                ErrorCode::Unavailable => retry_later(StatusCode::SERVICE_UNAVAILABLE, &text, 1),
            },
            CallError::Http(err) => err.into_response(),
        }
    }
}
