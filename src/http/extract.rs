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

/// Whether the request's `Content-Type` is `media_type`. Media types are case-insensitive (RFC
/// 9110 §8.3.1), so `Application/JSON` is JSON; parameters (`; charset=…`) do not count.
pub(crate) fn is_media_type(req: &Request, media_type: &str) -> bool {
    let named = req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok());
    named.and_then(|v| v.split(';').next()).is_some_and(|v| v.trim().eq_ignore_ascii_case(media_type))
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

/// A body format an extractor may accept.
#[derive(Clone, Copy)]
enum Format {
    Form,
    Json,
}

impl Format {
    fn media_type(self) -> &'static str {
        match self {
            Format::Form => "application/x-www-form-urlencoded",
            Format::Json => "application/json",
        }
    }
}

/// The body as `T`, in whichever of the `accepted` formats its `Content-Type` names; any other
/// media type is refused (415, listing `accepted` in order) before the body is read.
async fn parse_body<T: DeserializeOwned>(req: Request, accepted: &[Format]) -> Result<T, ApiError> {
    match accepted.iter().find(|format| is_media_type(&req, format.media_type())) {
        Some(Format::Form) => parse_form(&body(req).await?),
        Some(Format::Json) => parse_json(&body(req).await?),
        None => {
            let expected: Vec<&str> = accepted.iter().map(|format| format.media_type()).collect();
            Err(unsupported(&expected.join(" or ")))
        }
    }
}

/// An `application/x-www-form-urlencoded` body.
pub(crate) struct ApiForm<T>(pub(crate) T);
/// An `application/json` body.
pub(crate) struct ApiJson<T>(pub(crate) T);
/// A form or a JSON body, whichever the `Content-Type` says.
pub(crate) struct FormOrJson<T>(pub(crate) T);

/// Implements `FromRequest` for body extractors, each with the formats it accepts.
macro_rules! parsed_body {
    ($($name:ident: $($format:ident)|+),+) => {$(
        impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for $name<T> {
            type Rejection = ApiError;

            async fn from_request(req: Request, _: &S) -> Result<Self, ApiError> {
                parse_body(req, &[$(Format::$format),+]).await.map($name)
            }
        }
    )+};
}

parsed_body!(ApiForm: Form, ApiJson: Json, FormOrJson: Json | Form);

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

/// Implements `FromRequestParts` for extractors that need nothing but a valid token in one mode.
macro_rules! authenticated {
    ($($name:ident: $mode:ident),+) => {$(
        impl FromRequestParts<AppState> for $name {
            type Rejection = ApiError;
            async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
                required(authenticate(parts, state, Mode::$mode).await?).map($name)
            }
        }
    )+};
}

authenticated!(CurrentUser: Required, RefreshUser: Refresh, FreshUser: Fresh);

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

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use serde::Deserialize;

    const FORM: &str = "application/x-www-form-urlencoded";
    const JSON: &str = "application/json";

    #[derive(Deserialize)]
    struct Login {
        username: String,
    }

    fn request(content_type: &str, body: &'static str) -> Request {
        Request::builder().method("POST").header("content-type", content_type).body(Body::from(body)).unwrap()
    }

    fn form() -> Request {
        request(FORM, "username=john")
    }

    fn json() -> Request {
        request("Application/JSON; charset=utf-8", r#"{"username":"john"}"#)
    }

    /// The username read, or the refusal's status and detail.
    fn outcome(read: Result<Login, ApiError>) -> Result<String, (StatusCode, String)> {
        match read {
            Ok(login) => Ok(login.username),
            Err(ApiError::BadRequest { status, detail }) => Err((status, detail)),
            Err(other) => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn each_body_extractor_takes_its_formats_and_names_them_when_refused() {
        let john = Ok("john".to_owned());
        let refused = |expected: &str| {
            Err((StatusCode::UNSUPPORTED_MEDIA_TYPE, format!("Content-Type must be {expected}")))
        };
        let form_only = |req| async { outcome(ApiForm::from_request(req, &()).await.map(|ApiForm(l)| l)) };
        let json_only = |req| async { outcome(ApiJson::from_request(req, &()).await.map(|ApiJson(l)| l)) };
        let either = |req| async { outcome(FormOrJson::from_request(req, &()).await.map(|FormOrJson(l)| l)) };
        assert_eq!(form_only(form()).await, john);
        assert_eq!(form_only(json()).await, refused(FORM));
        assert_eq!(json_only(json()).await, john);
        assert_eq!(json_only(form()).await, refused(JSON));
        assert_eq!(either(form()).await, john);
        assert_eq!(either(json()).await, john);
        assert_eq!(either(request("text/plain", "john")).await, refused(&format!("{JSON} or {FORM}")));
    }
}
