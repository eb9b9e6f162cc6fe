//! The cookies of a browser login: the tokens HttpOnly, their CSRF values readable by the page.

use crate::auth::tokens::Issued;
use crate::auth::transport::{ACCESS_COOKIE, CSRF_ACCESS_COOKIE, CSRF_REFRESH_COOKIE, REFRESH_COOKIE};
use axum::http::header::SET_COOKIE;
use axum::http::{HeaderMap, HeaderValue};
use cookie::{Cookie, SameSite};

fn build(name: &'static str, value: String, max_age: i64, http_only: bool, secure: bool) -> HeaderValue {
    let cookie = Cookie::build((name, value))
        .path("/")
        .http_only(http_only)
        .secure(secure)
        .same_site(SameSite::Lax)
        .max_age(cookie::time::Duration::seconds(max_age.max(0)))
        .build();
    HeaderValue::from_str(&cookie.to_string()).expect("cookie values are token characters")
}

/// Sets the access pair (token + CSRF), and the refresh pair when given.
pub(super) fn set(
    headers: &mut HeaderMap,
    access: &Issued,
    refresh: Option<&Issued>,
    secure: bool,
    now: i64,
) {
    let ttl = access.claims.exp - now;
    headers.append(SET_COOKIE, build(ACCESS_COOKIE, access.token.clone(), ttl, true, secure));
    headers.append(SET_COOKIE, build(CSRF_ACCESS_COOKIE, access.claims.csrf.clone(), ttl, false, secure));
    if let Some(refresh) = refresh {
        let ttl = refresh.claims.exp - now;
        headers.append(SET_COOKIE, build(REFRESH_COOKIE, refresh.token.clone(), ttl, true, secure));
        headers
            .append(SET_COOKIE, build(CSRF_REFRESH_COOKIE, refresh.claims.csrf.clone(), ttl, false, secure));
    }
}

/// Expires all four cookies.
pub(super) fn clear(headers: &mut HeaderMap, secure: bool) {
    for (name, http_only) in [
        (ACCESS_COOKIE, true),
        (CSRF_ACCESS_COOKIE, false),
        (REFRESH_COOKIE, true),
        (CSRF_REFRESH_COOKIE, false),
    ] {
        headers.append(SET_COOKIE, build(name, String::new(), 0, http_only, secure));
    }
}
