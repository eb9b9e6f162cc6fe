//! The cookies of a browser login: the tokens HttpOnly, their CSRF values readable by the page;
//! `Secure` when the server speaks TLS.

use crate::auth::logins::TokenPair;
use crate::auth::transport::{ACCESS_COOKIE, CSRF_ACCESS_COOKIE, CSRF_REFRESH_COOKIE, REFRESH_COOKIE};
use crate::config::Config;
use axum::http::header::SET_COOKIE;
use axum::http::{HeaderMap, HeaderValue};
use cookie::{Cookie, SameSite};

/// Who may read a cookie.
#[derive(Clone, Copy)]
enum Reader {
    /// The server only (HttpOnly): the tokens.
    Server,
    /// The page's script too: the CSRF values it must echo.
    Page,
}

const ALL: [(&str, Reader); 4] = [
    (ACCESS_COOKIE, Reader::Server),
    (CSRF_ACCESS_COOKIE, Reader::Page),
    (REFRESH_COOKIE, Reader::Server),
    (CSRF_REFRESH_COOKIE, Reader::Page),
];

/// The login cookies as this server sets them.
pub(super) struct LoginCookies {
    secure: bool,
}

impl LoginCookies {
    pub(super) fn of(config: &Config) -> LoginCookies {
        LoginCookies { secure: config.tls() }
    }

    /// Sets the four cookies of `pair`: each token and its CSRF value, for the token's lifetime.
    pub(super) fn set(&self, headers: &mut HeaderMap, pair: &TokenPair, now: i64) {
        let (access, refresh) = (&pair.access, &pair.refresh);
        let values = [
            (access.token.as_str(), access.claims.exp),
            (access.claims.csrf.as_str(), access.claims.exp),
            (refresh.token.as_str(), refresh.claims.exp),
            (refresh.claims.csrf.as_str(), refresh.claims.exp),
        ];
        for ((name, reader), (value, exp)) in ALL.into_iter().zip(values) {
            headers.append(SET_COOKIE, self.build(name, value, exp - now, reader));
        }
    }

    /// Expires all four cookies.
    pub(super) fn clear(&self, headers: &mut HeaderMap) {
        for (name, reader) in ALL {
            headers.append(SET_COOKIE, self.build(name, "", 0, reader));
        }
    }

    fn build(&self, name: &'static str, value: &str, max_age: i64, reader: Reader) -> HeaderValue {
        let cookie = Cookie::build((name, value))
            .path("/")
            .http_only(matches!(reader, Reader::Server))
            .secure(self.secure)
            .same_site(SameSite::Lax)
            .max_age(cookie::time::Duration::seconds(max_age.max(0)))
            .build();
        HeaderValue::from_str(&cookie.to_string()).expect("cookie values are token characters")
    }
}
