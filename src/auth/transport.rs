//! Where a token comes from. One place turns a request's header, query string, cookie (with its
//! CSRF token) or WebSocket subprotocol into a presented token, for HTTP and WebSocket routes alike.

use super::AuthError;
use axum::http::request::Parts;
use axum::http::{header, HeaderMap};

pub const ACCESS_COOKIE: &str = "access_token_cookie";
pub const REFRESH_COOKIE: &str = "refresh_token_cookie";
pub const CSRF_ACCESS_COOKIE: &str = "csrf_access_token";
pub const CSRF_REFRESH_COOKIE: &str = "csrf_refresh_token";
pub const CSRF_HEADER: &str = "x-csrf-token";
/// The subprotocol a browser offers with the token: `Sec-WebSocket-Protocol: bearer, <token>`.
pub const BEARER_PROTOCOL: &str = "bearer";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Header,
    Query,
    Cookie,
    Subprotocol,
    /// In a request body: the OAuth2 refresh grant.
    Body,
    /// In a WebSocket message: `{"type":"auth"}` first, or `{"type":"refresh"}` later.
    Frame,
}

impl Transport {
    /// A short name, for the admin console.
    pub(crate) fn label(self) -> &'static str {
        match self {
            Transport::Header => "header",
            Transport::Query => "query",
            Transport::Cookie => "cookie",
            Transport::Subprotocol => "subprotocol",
            Transport::Body => "body",
            Transport::Frame => "frame",
        }
    }
}

/// Where the CSRF token must come from when the token comes from a cookie.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CookieRule {
    /// Cookies are not read.
    Off,
    /// Read without CSRF: safe (read-only) HTTP methods.
    NoCsrf,
    /// `X-CSRF-Token` header must match: state-changing HTTP requests.
    CsrfHeader,
    /// `?csrf_token=` must match: WebSocket upgrades, which cannot set headers in a browser.
    CsrfQuery,
}

/// The transports an endpoint accepts, tried in this order; the first present one is used and
/// must be valid (a bad header is not excused by a good cookie).
#[derive(Debug, Clone, Copy)]
pub struct Sources {
    pub header: bool,
    pub subprotocol: bool,
    pub query: bool,
    pub cookie: CookieRule,
}

/// The double-submit check a token presented in a cookie must pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Csrf {
    /// Not a cookie, or a read-only request: nothing to match.
    NotNeeded,
    /// Needed, and the client sent none.
    Missing,
    /// Needed: must equal the token's `csrf` claim.
    Sent(String),
}

impl Csrf {
    /// A needed check, with what the client sent (if anything).
    pub fn needed(sent: Option<String>) -> Csrf {
        sent.map_or(Csrf::Missing, Csrf::Sent)
    }
}

/// A token as presented, before verification.
#[derive(Debug, Clone)]
pub struct Presented {
    pub token: String,
    pub transport: Transport,
    pub csrf: Csrf,
}

impl Presented {
    /// A token from a transport that needs no CSRF check (header, query, body, frame).
    pub fn new(token: impl Into<String>, transport: Transport) -> Presented {
        Presented { token: token.into(), transport, csrf: Csrf::NotNeeded }
    }
}

/// Which cookie holds the token: the access or the refresh one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CookieKind {
    Access,
    Refresh,
}

/// Finds the token in `parts` under `sources`. `Ok(None)`: no transport carried one.
pub fn find(
    parts: &Parts,
    sources: Sources,
    cookie_kind: CookieKind,
) -> Result<Option<Presented>, AuthError> {
    if sources.header {
        if let Some(token) = bearer_header(&parts.headers)? {
            return Ok(Some(Presented::new(token, Transport::Header)));
        }
    }
    if sources.subprotocol {
        if let Some(token) = subprotocol_token(&parts.headers) {
            return Ok(Some(Presented::new(token, Transport::Subprotocol)));
        }
    }
    // Parsed only for the sources that read it (the query token, or the WebSocket CSRF value).
    let query = if sources.query || sources.cookie == CookieRule::CsrfQuery {
        query_pairs(parts.uri.query())
    } else {
        Vec::new()
    };
    if sources.query {
        if let Some(token) = query_value(&query, "token") {
            return Ok(Some(Presented::new(token, Transport::Query)));
        }
    }
    if sources.cookie != CookieRule::Off {
        let name = match cookie_kind {
            CookieKind::Access => ACCESS_COOKIE,
            CookieKind::Refresh => REFRESH_COOKIE,
        };
        if let Some(token) = cookie(&parts.headers, name) {
            let csrf = match sources.cookie {
                CookieRule::CsrfHeader => Csrf::needed(
                    parts.headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok()).map(str::to_owned),
                ),
                CookieRule::CsrfQuery => Csrf::needed(query_value(&query, "csrf_token").map(str::to_owned)),
                CookieRule::NoCsrf | CookieRule::Off => Csrf::NotNeeded,
            };
            return Ok(Some(Presented { token: token.to_owned(), transport: Transport::Cookie, csrf }));
        }
    }
    Ok(None)
}

/// The token of `Authorization: Bearer <token>`. `Ok(None)`: no such header; one that holds no
/// bearer token is an error.
pub fn bearer_header(headers: &HeaderMap) -> Result<Option<&str>, AuthError> {
    match headers.get(header::AUTHORIZATION) {
        Some(value) => bearer(value.to_str().map_err(|_| AuthError::NotBearer)?).map(Some),
        None => Ok(None),
    }
}

/// `Bearer <token>`, scheme case-insensitive. Anything else is not a bearer credential.
fn bearer(value: &str) -> Result<&str, AuthError> {
    credential(value, &["bearer"])
}

/// `<scheme> <credential>` for one of `schemes` (lowercase; matched case-insensitively).
fn credential<'a>(value: &'a str, schemes: &[&str]) -> Result<&'a str, AuthError> {
    let (scheme, token) = value.trim().split_once(' ').ok_or(AuthError::NotBearer)?;
    let token = token.trim();
    if !schemes.iter().any(|s| scheme.eq_ignore_ascii_case(s)) || token.is_empty() {
        return Err(AuthError::NotBearer);
    }
    Ok(token)
}

/// The header Centrifugo's server API clients send their key in.
pub const API_KEY_HEADER: &str = "x-api-key";

/// A server-API key as Centrifugo's clients present it: `X-API-Key: <key>`, or `Authorization:
/// apikey <key>` (`Bearer <key>` too, as wsguard's own server API takes it). Headers only: a
/// key in a URL ends up in proxies' logs. `Ok(None)`: neither header; a header that holds no key
/// is an error, not excused by the other.
pub fn api_key(headers: &HeaderMap) -> Result<Option<&str>, AuthError> {
    if let Some(value) = headers.get(API_KEY_HEADER) {
        let key = value.to_str().map_err(|_| AuthError::NotBearer)?.trim();
        return if key.is_empty() { Err(AuthError::NotBearer) } else { Ok(Some(key)) };
    }
    match headers.get(header::AUTHORIZATION) {
        Some(value) => {
            let value = value.to_str().map_err(|_| AuthError::NotBearer)?;
            credential(value, &["apikey", "bearer"]).map(Some)
        }
        None => Ok(None),
    }
}

/// The token offered as `Sec-WebSocket-Protocol: bearer, <token>`.
pub fn subprotocol_token(headers: &HeaderMap) -> Option<&str> {
    let mut offered = headers
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim);
    offered.find(|p| *p == BEARER_PROTOCOL)?;
    offered.next().filter(|t| !t.is_empty())
}

pub fn query_pairs(query: Option<&str>) -> Vec<(String, String)> {
    query.and_then(|q| serde_urlencoded::from_str(q).ok()).unwrap_or_default()
}

pub fn query_value<'a>(pairs: &'a [(String, String)], key: &str) -> Option<&'a str> {
    pairs.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str()).filter(|v| !v.is_empty())
}

/// The value of cookie `name`, if sent.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim_matches('"'))
        .filter(|v| !v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::Request;

    fn parts(req: axum::http::request::Builder) -> Parts {
        req.body(()).unwrap().into_parts().0
    }

    const ALL: Sources =
        Sources { header: true, subprotocol: true, query: true, cookie: CookieRule::CsrfQuery };

    #[test]
    fn header_wins_and_must_be_bearer() {
        let p = parts(Request::get("/x?token=q").header("authorization", "bearer h"));
        let found = find(&p, ALL, CookieKind::Access).unwrap().unwrap();
        assert_eq!((found.token.as_str(), found.transport), ("h", Transport::Header));
        for bad in ["Basic abc", "abc", "Bearer", "Bearer   "] {
            let p = parts(Request::get("/x").header("authorization", bad));
            assert!(matches!(find(&p, ALL, CookieKind::Access), Err(AuthError::NotBearer)), "{bad}");
        }
    }

    #[test]
    fn api_keys_come_from_x_api_key_or_an_apikey_or_bearer_authorization() {
        let key = |headers: &[(&str, &str)]| {
            let mut req = Request::post("/x?api_key=q");
            for (name, value) in headers {
                req = req.header(*name, *value);
            }
            api_key(&parts(req).headers).map(|k| k.map(str::to_owned))
        };
        assert_eq!(key(&[("x-api-key", " k1 ")]).unwrap().as_deref(), Some("k1"));
        assert_eq!(key(&[("authorization", "apikey k2")]).unwrap().as_deref(), Some("k2"));
        assert_eq!(key(&[("authorization", "ApiKey k3")]).unwrap().as_deref(), Some("k3"));
        assert_eq!(key(&[("authorization", "Bearer k4")]).unwrap().as_deref(), Some("k4"));
        let both = key(&[("authorization", "apikey a"), ("x-api-key", "x")]).unwrap();
        assert_eq!(both.as_deref(), Some("x"), "X-API-Key first");
        assert_eq!(key(&[]).unwrap(), None, "never from the query string");
        for bad in [("x-api-key", ""), ("authorization", "Basic abc"), ("authorization", "apikey ")] {
            assert!(matches!(key(&[bad]), Err(AuthError::NotBearer)), "{bad:?}");
        }
    }

    #[test]
    fn subprotocol_query_and_cookie() {
        let p = parts(Request::get("/x").header("sec-websocket-protocol", "bearer, t1"));
        assert_eq!(find(&p, ALL, CookieKind::Access).unwrap().unwrap().token, "t1");
        let p = parts(Request::get("/x?token=t2"));
        assert_eq!(find(&p, ALL, CookieKind::Access).unwrap().unwrap().transport, Transport::Query);
        let p = parts(
            Request::get("/x?csrf_token=c")
                .header("cookie", "a=b; access_token_cookie=t3; csrf_access_token=c"),
        );
        let found = find(&p, ALL, CookieKind::Access).unwrap().unwrap();
        assert_eq!(found.token, "t3");
        assert_eq!(found.csrf, Csrf::Sent("c".into()));
        let p = parts(Request::get("/x"));
        assert!(find(&p, ALL, CookieKind::Access).unwrap().is_none());
    }
}
