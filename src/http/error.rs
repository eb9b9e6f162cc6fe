//! One error type for every handler. Client mistakes become a 4xx with a `{"detail": ...}` body
//! (plus the OAuth2 `error` fields on the token endpoints); anything unexpected becomes a 500 or 503
//! whose cause is logged, never sent.

use crate::auth::password::Busy;
use crate::auth::AuthError;
use crate::store::StoreError;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

/// The body of every error response, as the OpenAPI description states it. Never built: the
/// responses are `json!`; this only names their shape for clients and for schemathesis.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub(crate) struct ErrorBody {
    /// Human-readable, safe to show.
    detail: String,
    /// Token endpoints only: the OAuth2 error code (RFC 6749 §5.2).
    error: Option<String>,
    /// Token endpoints only: the same text as `detail`.
    error_description: Option<String>,
}

/// What any operation taking a user's token may answer besides its own (added to each by the
/// description's `BearerScheme`): the user is disabled. Never built.
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)]
pub(crate) enum InactiveUser {
    #[response(status = 400, description = "Inactive user")]
    Inactive(ErrorBody),
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum ApiError {
    /// A request that cannot be understood: 400, or 422 for a well-formed body with bad values.
    #[error("{detail}")]
    BadRequest { status: StatusCode, detail: String },
    #[error("{0}")]
    Auth(#[from] AuthError),
    /// An OAuth2 token-endpoint error (RFC 6749 §5.2).
    #[error("{detail}")]
    OAuth { status: StatusCode, error: &'static str, detail: String },
    #[error("Server busy, try again shortly")]
    Busy,
    /// Too many failed logins: 429 with `Retry-After`; `oauth` adds the OAuth2 fields (`/token`).
    #[error("Too many failed logins, try again later")]
    Throttled { retry_after_secs: u64, oauth: bool },
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Unexpected: the cause is logged where it happened, the client sees a bare 500.
    #[error("Internal server error")]
    Internal,
}

impl ApiError {
    pub(crate) fn unprocessable(detail: impl Into<String>) -> ApiError {
        ApiError::BadRequest { status: StatusCode::UNPROCESSABLE_ENTITY, detail: detail.into() }
    }

    /// An unexpected failure: logged by the caller, a bare 500 for the client.
    pub(crate) fn internal() -> ApiError {
        ApiError::Internal
    }

    pub(crate) fn bad_request(detail: impl Into<String>) -> ApiError {
        ApiError::BadRequest { status: StatusCode::BAD_REQUEST, detail: detail.into() }
    }

    pub(crate) fn invalid_grant() -> ApiError {
        ApiError::OAuth {
            status: StatusCode::UNAUTHORIZED,
            error: "invalid_grant",
            detail: "Incorrect username or password".into(),
        }
    }

    /// Recasts a validation error as an OAuth2 `invalid_request` (for `/token`).
    pub(crate) fn into_oauth(self) -> ApiError {
        match self {
            ApiError::BadRequest { status, detail } => ApiError::OAuth {
                status: if status == StatusCode::UNSUPPORTED_MEDIA_TYPE
                    || status == StatusCode::PAYLOAD_TOO_LARGE
                {
                    status
                } else {
                    StatusCode::BAD_REQUEST
                },
                error: "invalid_request",
                detail,
            },
            ApiError::Throttled { retry_after_secs, .. } => {
                ApiError::Throttled { retry_after_secs, oauth: true }
            }
            other => other,
        }
    }
}

impl From<Busy> for ApiError {
    fn from(_: Busy) -> Self {
        ApiError::Busy
    }
}

/// `WWW-Authenticate` for a bearer failure (RFC 6750 §3): `error="invalid_token"` only when a
/// token was presented.
fn bearer_challenge(error: Option<&str>) -> HeaderValue {
    let value = match error {
        Some(description) => {
            format!(r#"Bearer error="invalid_token", error_description="{}""#, description.replace('"', "'"))
        }
        None => "Bearer".to_owned(),
    };
    HeaderValue::from_str(&value).unwrap_or(HeaderValue::from_static("Bearer"))
}

fn detail(status: StatusCode, detail: &str) -> Response {
    (status, Json(json!({ "detail": detail }))).into_response()
}

fn store_failure(err: &StoreError) -> Response {
    match err {
        StoreError::Conflict => detail(StatusCode::CONFLICT, "Already exists"),
        StoreError::Unavailable(cause) => {
            tracing::warn!(error = %cause, "database unavailable");
            detail(StatusCode::SERVICE_UNAVAILABLE, "Database unavailable, try again shortly")
        }
        StoreError::Other(cause) => {
            tracing::error!(error = %cause, "database error");
            detail(StatusCode::INTERNAL_SERVER_ERROR, "Internal server error")
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match self {
            ApiError::BadRequest { status, detail: text } => detail(status, &text),
            ApiError::OAuth { status, error, detail } => {
                let mut response =
                    (status, Json(json!({ "detail": detail, "error": error, "error_description": detail })))
                        .into_response();
                let headers = response.headers_mut();
                if status == StatusCode::UNAUTHORIZED {
                    headers.insert(header::WWW_AUTHENTICATE, bearer_challenge(None));
                }
                headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
                response
            }
            ApiError::Auth(err) => {
                let (status, challenge) = match &err {
                    AuthError::Missing | AuthError::NotBearer => (StatusCode::UNAUTHORIZED, None),
                    AuthError::Token(e) => (StatusCode::UNAUTHORIZED, Some(e.to_string())),
                    AuthError::UnknownUser => (StatusCode::UNAUTHORIZED, Some(err.to_string())),
                    AuthError::Csrf | AuthError::NeedsLogin => {
                        (StatusCode::UNAUTHORIZED, Some(err.to_string()))
                    }
                    AuthError::Inactive => return detail(StatusCode::BAD_REQUEST, "Inactive user"),
                    AuthError::Store(e) => return store_failure(e),
                    AuthError::KeysUnavailable { retry_after_secs, .. } => {
                        let mut response = detail(StatusCode::SERVICE_UNAVAILABLE, &err.to_string());
                        let retry_after = HeaderValue::from(*retry_after_secs.max(&1));
                        response.headers_mut().insert(header::RETRY_AFTER, retry_after);
                        return response;
                    }
                };
                let mut response = detail(status, &err.to_string());
                response
                    .headers_mut()
                    .insert(header::WWW_AUTHENTICATE, bearer_challenge(challenge.as_deref()));
                response
            }
            ApiError::Busy => {
                let mut response = detail(StatusCode::SERVICE_UNAVAILABLE, "Server busy, try again shortly");
                response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
                response
            }
            ApiError::Throttled { retry_after_secs, oauth } => {
                let text = "Too many failed logins, try again later";
                let body = if oauth {
                    // No RFC 6749 code fits; RFC 8628's `slow_down` says "retry later".
                    json!({ "detail": text, "error": "slow_down", "error_description": text })
                } else {
                    json!({ "detail": text })
                };
                let mut response = (StatusCode::TOO_MANY_REQUESTS, Json(body)).into_response();
                let headers = response.headers_mut();
                headers.insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs.max(1)));
                headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
                response
            }
            ApiError::Store(err) => store_failure(&err),
            ApiError::Internal => detail(StatusCode::INTERNAL_SERVER_ERROR, "Internal server error"),
        }
    }
}
