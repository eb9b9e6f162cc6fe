//! The token service: password logins (OAuth2 form, JSON, cookies), refresh rotation and logout.

use super::cookies::LoginCookies;
use super::error::{ApiError, ErrorBody};
use super::extract::{ApiForm, ApiJson, FormOrJson, LoginUser, RefreshUser};
use crate::app::AppState;
use crate::auth::credentials::{check_password, check_username};
use crate::auth::logins::{Logins, TokenPair};
use crate::auth::password::Verdict;
use crate::auth::transport::{Presented, Transport};
use crate::auth::{AuthError, Mode};
use crate::clock::now_secs as now;
use crate::connections::ClientAddr;
use crate::store::UserRecord;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use std::net::IpAddr;
use utoipa::ToSchema;

/// OAuth2 token request, as `application/x-www-form-urlencoded`: the password grant (RFC 6749
/// §4.3) or the refresh grant (§6).
#[derive(Deserialize, ToSchema)]
pub(crate) struct TokenRequest {
    /// `password` (the default) or `refresh_token`.
    #[schema(pattern = "^(password|refresh_token)$")]
    grant_type: Option<String>,
    /// Password grant.
    #[schema(pattern = r"^[A-Za-z0-9_.@-]{1,64}$")]
    username: Option<String>,
    /// Password grant.
    #[schema(min_length = 1)]
    password: Option<String>,
    /// Refresh grant.
    refresh_token: Option<String>,
    /// Accepted and ignored: wsguard has no scopes.
    #[allow(dead_code)]
    scope: Option<String>,
}

#[derive(Deserialize, ToSchema)]
pub(crate) struct Credentials {
    /// 1-64 letters, digits or `_ . - @`; anything else is refused before any lookup.
    #[schema(pattern = r"^[A-Za-z0-9_.@-]{1,64}$")]
    username: String,
    #[schema(min_length = 1)]
    password: String,
}

#[derive(Deserialize, ToSchema)]
pub(crate) struct CookieLogin {
    /// 1-64 letters, digits or `_ . - @`; anything else is refused before any lookup.
    #[schema(pattern = r"^[A-Za-z0-9_.@-]{1,64}$")]
    username: String,
    #[schema(min_length = 1)]
    password: String,
    /// Local path to redirect to (303) after a login from the login page.
    next: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct TokenResponse {
    access_token: String,
    token_type: &'static str,
    /// Seconds until the access token expires.
    expires_in: i64,
    refresh_token: String,
}

impl From<TokenPair> for TokenResponse {
    fn from(TokenPair { access, refresh }: TokenPair) -> TokenResponse {
        TokenResponse {
            expires_in: access.claims.exp - access.claims.iat,
            access_token: access.token,
            token_type: "bearer",
            refresh_token: refresh.token,
        }
    }
}

/// Token responses must not be cached (RFC 6749 §5.1).
fn no_store(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    response
}

/// Checks a username and password. Unknown users cost one hash like known ones, so timing does
/// not tell them apart; a bcrypt or weaker hash is upgraded to argon2id on success. Throttled
/// clients are refused before any hashing; an attempt counts as a failure while in flight.
async fn check_credentials(
    state: &AppState,
    client: IpAddr,
    username: &str,
    password: String,
) -> Result<UserRecord, ApiError> {
    check_username(username).map_err(ApiError::unprocessable)?;
    check_password(&password).map_err(ApiError::unprocessable)?;
    let attempt = match state.throttle.begin(username, client).await {
        Ok(attempt) => attempt,
        Err(wait) => {
            state.metrics.logins_failed.inc();
            tracing::info!(username, %client, "login throttled");
            let retry_after_secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            return Err(ApiError::Throttled { retry_after_secs, oauth: false });
        }
    };
    let user = state.store.user(username).await?;
    let stored = user.as_ref().map(|u| u.password_hash.clone());
    let verdict = state.hasher.verify(password, stored).await?;
    let (Some(user), Verdict::Valid { rehash }) = (user, verdict) else {
        state.metrics.logins_failed.inc();
        attempt.failed();
        tracing::info!(username, %client, "login failed");
        return Err(ApiError::invalid_grant());
    };
    attempt.succeeded().await;
    if let Some(hash) = rehash {
        match state.store.set_password_hash(&user.username, &hash).await {
            Ok(_) => tracing::info!(username, "password hash upgraded to argon2id"),
            Err(err) => tracing::warn!(username, error = %err, "could not upgrade password hash"),
        }
    }
    if user.disabled {
        state.metrics.logins_failed.inc();
        return Err(ApiError::OAuth {
            status: StatusCode::BAD_REQUEST,
            error: "invalid_grant",
            detail: "Inactive user".into(),
        });
    }
    state.metrics.logins_ok.inc();
    tracing::info!(username, %client, "login");
    Ok(user)
}

/// What the password logins with a JSON (or form) body may answer besides their own: the refusals
/// of [`check_credentials`] and of the body. Never built.
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)]
pub(crate) enum LoginRefusals {
    #[response(status = 400, description = "Inactive user")]
    Inactive(ErrorBody),
    #[response(status = 401, description = "Incorrect username or password")]
    Incorrect(ErrorBody),
    #[response(status = 413, description = "Body too large")]
    TooLarge(ErrorBody),
    #[response(status = 422, description = "Malformed body")]
    Malformed(ErrorBody),
    #[response(status = 503, description = "Too many logins in progress")]
    Busy(ErrorBody),
}

fn logins(state: &AppState) -> Logins<'_> {
    Logins::new(state.store.as_ref(), &state.auth)
}

/// An OAuth2 `invalid_grant` (400) for a refresh token that does not rotate; outages stay 503.
fn invalid_grant(err: AuthError) -> ApiError {
    match err {
        AuthError::Store(err) => err.into(),
        err => ApiError::OAuth {
            status: StatusCode::BAD_REQUEST,
            error: "invalid_grant",
            detail: err.to_string(),
        },
    }
}

/// OAuth2 token endpoint
///
/// The password grant returns a fresh access token and a refresh token; the refresh grant
/// rotates a refresh token like `POST /refresh`.
#[utoipa::path(post, path = "/token", tag = "tokens",
    request_body(content = TokenRequest, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, body = TokenResponse),
        (status = 400, body = ErrorBody, description = "Malformed request, unsupported grant type, bad refresh token, or inactive user"),
        (status = 401, body = ErrorBody, description = "Incorrect username or password"),
        (status = 413, body = ErrorBody, description = "Body too large"),
        (status = 415, body = ErrorBody, description = "Not a form"),
        (status = 429, body = ErrorBody, description = "Too many failed logins (Retry-After)"),
        (status = 503, body = ErrorBody, description = "Too many logins in progress"),
    ))]
pub(crate) async fn token(
    State(state): State<AppState>,
    ClientAddr(client): ClientAddr,
    form: Result<ApiForm<TokenRequest>, ApiError>,
) -> Result<Response, ApiError> {
    let ApiForm(form) = form.map_err(ApiError::into_oauth)?;
    let pair = match form.grant_type.as_deref().unwrap_or("password") {
        "password" => {
            let missing =
                |field| ApiError::bad_request(format!("Invalid form: missing field `{field}`")).into_oauth();
            let username = form.username.ok_or_else(|| missing("username"))?;
            let password = form.password.ok_or_else(|| missing("password"))?;
            let user =
                check_credentials(&state, client, &username, password).await.map_err(ApiError::into_oauth)?;
            logins(&state).start(&user.username).await?
        }
        "refresh_token" => {
            let presented = Presented::new(form.refresh_token.unwrap_or_default(), Transport::Body);
            let identity = match state.auth.authenticate(Some(&presented), Mode::Refresh).await {
                Ok(Some(identity)) => identity,
                Ok(None) => return Err(AuthError::Missing.into()),
                Err(err) => return Err(invalid_grant(err)),
            };
            logins(&state).rotate(&identity).await.map_err(invalid_grant)?
        }
        _ => {
            return Err(ApiError::OAuth {
                status: StatusCode::BAD_REQUEST,
                error: "unsupported_grant_type",
                detail: "Supported grants: password, refresh_token".into(),
            })
        }
    };
    Ok(no_store(Json(TokenResponse::from(pair)).into_response()))
}

/// Log in with JSON
///
/// Returns a fresh access token and a refresh token.
#[utoipa::path(post, path = "/login", tag = "tokens", request_body = Credentials,
    responses(
        (status = 200, body = TokenResponse),
        (status = 415, body = ErrorBody, description = "Not JSON"),
        LoginRefusals,
    ))]
pub(crate) async fn login(
    State(state): State<AppState>,
    ClientAddr(client): ClientAddr,
    ApiJson(body): ApiJson<Credentials>,
) -> Result<Response, ApiError> {
    let user = check_credentials(&state, client, &body.username, body.password).await?;
    let pair = logins(&state).start(&user.username).await?;
    Ok(no_store(Json(TokenResponse::from(pair)).into_response()))
}

/// `next` when it is a path on this server; anything that could leave it (`//host`, `/\host`,
/// a scheme) falls back to `/`.
pub(crate) fn local_path(next: Option<&str>) -> &str {
    match next {
        Some(path)
            if path.starts_with('/')
                && !path.starts_with("//")
                && !path.starts_with("/\\")
                && !path.chars().any(|c| c.is_control() || c == '\\') =>
        {
            path
        }
        _ => "/",
    }
}

/// Log in for a browser
///
/// Sets the token cookies (HttpOnly) and their CSRF cookies (readable by the page). With `next`
/// (the login page's form), answers 303 to it, or back to the login page on failure.
#[utoipa::path(post, path = "/login/cookie", tag = "tokens", request_body = CookieLogin,
    responses(
        (status = 200, description = "Cookies set"),
        (status = 303, description = "Cookies set, redirect to next (or back to the login page on failure)"),
        (status = 403, body = ErrorBody, description = "Cross-site login refused (Origin or Sec-Fetch-Site)"),
        (status = 415, body = ErrorBody, description = "Neither a form nor JSON"),
        LoginRefusals,
    ))]
pub(crate) async fn login_cookie(
    State(state): State<AppState>,
    ClientAddr(client): ClientAddr,
    headers: HeaderMap,
    FormOrJson(body): FormOrJson<CookieLogin>,
) -> Result<Response, ApiError> {
    if cross_site(&headers, &state) {
        tracing::info!(username = %body.username, %client, "cross-site cookie login refused");
        return Err(ApiError::BadRequest {
            status: StatusCode::FORBIDDEN,
            detail: "Cross-site login refused".into(),
        });
    }
    let next = body.next.as_deref().map(|n| local_path(Some(n)).to_owned());
    let user = match check_credentials(&state, client, &body.username, body.password).await {
        Ok(user) => user,
        Err(ApiError::OAuth { .. } | ApiError::BadRequest { .. }) if next.is_some() => {
            let query =
                serde_urlencoded::to_string([("error", "1"), ("next", next.as_deref().unwrap_or("/"))])
                    .unwrap_or_default();
            return Ok(Redirect::to(&format!("/login?{query}")).into_response());
        }
        Err(err) => return Err(err),
    };
    let pair = logins(&state).start(&user.username).await?;
    let mut response = match next {
        Some(next) => Redirect::to(&next).into_response(),
        None => Json(serde_json::json!({ "detail": "Logged in" })).into_response(),
    };
    LoginCookies::of(&state.config).set(response.headers_mut(), &pair, now());
    Ok(no_store(response))
}

/// Whether a cookie login comes from another site's page (login CSRF: it would log the browser
/// into the attacker's account). Browsers say where a request comes from with `Sec-Fetch-Site`:
/// `same-origin` (the login page) and `none` (typed by the user) pass, `cross-site` does not, and
/// `same-site` (a sibling host) needs an allowed `Origin`, as does a browser too old to send it.
/// The login page's own posts carry `Origin: null` (its referrer policy is `no-referrer`), so
/// `Origin` alone cannot tell. A client that sends neither is not a browser: no cookies to abuse.
fn cross_site(headers: &HeaderMap, state: &AppState) -> bool {
    match headers.get("sec-fetch-site").map(|v| v.as_bytes().to_ascii_lowercase()).as_deref() {
        Some(b"same-origin" | b"none") => return false,
        Some(b"same-site") => {}
        Some(_) => return true,
        None if !headers.contains_key(header::ORIGIN) => return false,
        None => {}
    }
    let config = &state.config;
    let listed: Vec<String> = config.allowed_origins.iter().chain(&config.cors_origins).cloned().collect();
    !super::origin::allowed(headers, &listed, None)
}

/// Rotate a refresh token
///
/// Takes a refresh token (bearer header, or cookie with `X-CSRF-Token`) and returns a new,
/// non-fresh access token and the next refresh token of the same login. The token a rotation just
/// replaced gets the same pair within `--refresh-grace`; any other old refresh token revokes the
/// whole login.
#[utoipa::path(post, path = "/refresh", tag = "tokens",
    responses(
        (status = 200, body = TokenResponse),
        (status = 401, body = ErrorBody, description = "Missing, invalid, revoked or reused refresh token, or a trusted issuer's token"),
    ),
    security(("bearer" = [])))]
pub(crate) async fn refresh(
    State(state): State<AppState>,
    RefreshUser(identity): RefreshUser,
) -> Result<Response, ApiError> {
    let pair = logins(&state).rotate(&identity).await?;
    let mut headers = HeaderMap::new();
    if identity.transport == Transport::Cookie {
        LoginCookies::of(&state.config).set(&mut headers, &pair, now());
    }
    Ok(no_store((headers, Json(TokenResponse::from(pair))).into_response()))
}

/// Log out
///
/// Revokes the presented access token and its whole login (refresh family), clears the cookies,
/// and closes the sockets opened with them.
#[utoipa::path(post, path = "/logout", tag = "tokens",
    responses(
        (status = 204, description = "Logged out"),
        (status = 401, body = ErrorBody, description = "Not authenticated, or a trusted issuer's token (no wsguard login to end)"),
    ),
    security(("bearer" = [])))]
pub(crate) async fn logout(
    State(state): State<AppState>,
    LoginUser(identity): LoginUser,
) -> Result<Response, ApiError> {
    logins(&state).logout(&identity.claims).await?;
    let mut response = StatusCode::NO_CONTENT.into_response();
    LoginCookies::of(&state.config).clear(response.headers_mut());
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::local_path;

    #[test]
    fn next_stays_on_this_server() {
        assert_eq!(local_path(Some("/chat")), "/chat");
        assert_eq!(local_path(Some("/chat?room=a")), "/chat?room=a");
        for bad in ["//evil.example", "/\\evil.example", "https://evil.example", "chat", "/a\r\nb", ""] {
            assert_eq!(local_path(Some(bad)), "/", "{bad:?}");
        }
        assert_eq!(local_path(None), "/");
    }
}
