//! Extractors. Bodies are parsed here so that every malformed one gets a JSON `detail` naming the
//! problem; authentication is an extractor per mode, so a handler states its need in its signature.

use super::error::ApiError;
use crate::app::AppState;
use crate::auth::transport::{self, CookieKind, CookieRule, Sources};
use crate::auth::{AuthError, Identity, Issuer, Mode};
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use serde::de::DeserializeOwned;

/// Largest request body accepted by the API, in bytes.
pub(crate) const MAX_BODY_BYTES: usize = 16 * 1024;

/// The request's media type, lowercased: media types are case-insensitive (RFC 9110 §8.3.1), so
/// `Application/JSON` is JSON. Parameters (`; charset=…`) are dropped.
pub(crate) fn content_type(req: &Request) -> String {
    req.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase())
        .unwrap_or_default()
}

async fn body(req: Request) -> Result<Bytes, ApiError> {
    Bytes::from_request(req, &()).await.map_err(|e| match e {
        BytesRejection::FailedToBufferBody(_) => ApiError::BadRequest {
            status: StatusCode::PAYLOAD_TOO_LARGE,
            detail: format!("Request body too large (limit {MAX_BODY_BYTES} bytes)"),
        },
        _ => ApiError::bad_request("Could not read the request body"),
    })
}

pub(crate) fn unsupported(expected: &str) -> ApiError {
    ApiError::BadRequest {
        status: StatusCode::UNSUPPORTED_MEDIA_TYPE,
        detail: format!("Content-Type must be {expected}"),
    }
}

fn parse_form<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    serde_urlencoded::from_bytes(bytes).map_err(|e| ApiError::unprocessable(format!("Invalid form: {e}")))
}

pub(crate) fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(bytes).map_err(|e| {
        let text = e.to_string();
        // serde_json appends "at line 1 column 9"; keep the message, drop the position.
        let message = text.split(" at line ").next().unwrap_or(&text);
        ApiError::unprocessable(format!("Invalid JSON body: {message}"))
    })
}

/// An `application/x-www-form-urlencoded` body.
pub(crate) struct ApiForm<T>(pub(crate) T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiForm<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, _: &S) -> Result<Self, ApiError> {
        if content_type(&req) != "application/x-www-form-urlencoded" {
            return Err(unsupported("application/x-www-form-urlencoded"));
        }
        Ok(ApiForm(parse_form(&body(req).await?)?))
    }
}

/// An `application/json` body.
pub(crate) struct ApiJson<T>(pub(crate) T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, _: &S) -> Result<Self, ApiError> {
        if content_type(&req) != "application/json" {
            return Err(unsupported("application/json"));
        }
        Ok(ApiJson(parse_json(&body(req).await?)?))
    }
}

/// A form or a JSON body, whichever the `Content-Type` says.
pub(crate) struct FormOrJson<T>(pub(crate) T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for FormOrJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, _: &S) -> Result<Self, ApiError> {
        match content_type(&req).as_str() {
            "application/x-www-form-urlencoded" => Ok(FormOrJson(parse_form(&body(req).await?)?)),
            "application/json" => Ok(FormOrJson(parse_json(&body(req).await?)?)),
            _ => Err(unsupported("application/json or application/x-www-form-urlencoded")),
        }
    }
}

/// HTTP reads the bearer header or the cookie; a cookie on a state-changing request needs the
/// `X-CSRF-Token` header too.
fn http_sources(parts: &Parts) -> Sources {
    Sources {
        header: true,
        subprotocol: false,
        query: false,
        cookie: if parts.method.is_safe() { CookieRule::NoCsrf } else { CookieRule::CsrfHeader },
    }
}

async fn authenticate(parts: &Parts, state: &AppState, mode: Mode) -> Result<Option<Identity>, ApiError> {
    let kind = match mode {
        Mode::Refresh => CookieKind::Refresh,
        _ => CookieKind::Access,
    };
    let presented = transport::find(parts, http_sources(parts), kind)?;
    Ok(state.auth.authenticate(presented.as_ref(), mode).await?)
}

fn required(identity: Option<Identity>) -> Result<Identity, ApiError> {
    identity.ok_or(ApiError::Auth(AuthError::Missing))
}

/// A valid access token of an active user.
pub(crate) struct CurrentUser(pub(crate) Identity);
/// A valid access token of a wsguard login: a trusted issuer's token is refused (401).
pub(crate) struct LoginUser(pub(crate) Identity);
/// A valid refresh token.
pub(crate) struct RefreshUser(pub(crate) Identity);
/// A fresh access token: the user typed the password for it.
pub(crate) struct FreshUser(pub(crate) Identity);

impl FromRequestParts<AppState> for CurrentUser {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        required(authenticate(parts, state, Mode::Required).await?).map(CurrentUser)
    }
}

impl FromRequestParts<AppState> for LoginUser {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let identity = required(authenticate(parts, state, Mode::Required).await?)?;
        if identity.issuer != Issuer::Own {
            return Err(ApiError::Auth(AuthError::NeedsLogin));
        }
        Ok(LoginUser(identity))
    }
}

impl FromRequestParts<AppState> for RefreshUser {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        required(authenticate(parts, state, Mode::Refresh).await?).map(RefreshUser)
    }
}

impl FromRequestParts<AppState> for FreshUser {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        required(authenticate(parts, state, Mode::Fresh).await?).map(FreshUser)
    }
}
