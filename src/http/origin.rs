//! The Origin check, against cross-site requests that ride on a browser's cookies: every
//! WebSocket upgrade (cross-site WebSocket hijacking) and the cookie login (login CSRF).

use crate::auth::transport::Transport;
use axum::http::{header, HeaderMap};

/// Whether an upgrade with these headers may go on. Same-origin (Origin's host equals `Host`) and
/// the configured origins pass. Without an Origin header (a non-browser client) only non-cookie
/// transports pass: browsers always send Origin, so a cookie without one is not to be trusted.
pub(crate) fn allowed(headers: &HeaderMap, allowed: &[String], token: Option<Transport>) -> bool {
    let cookie = token == Some(Transport::Cookie);
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return !cookie;
    };
    let origin = origin.trim_end_matches('/');
    if allowed.iter().any(|a| a.trim_end_matches('/').eq_ignore_ascii_case(origin)) {
        return true;
    }
    let authority = origin.strip_prefix("http://").or_else(|| origin.strip_prefix("https://"));
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    matches!((authority, host), (Some(a), Some(h)) if a.eq_ignore_ascii_case(h))
}

#[cfg(test)]
mod tests {
    use super::*;

    const COOKIE: Option<Transport> = Some(Transport::Cookie);
    const QUERY: Option<Transport> = Some(Transport::Query);

    fn headers(origin: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, "127.0.0.1:8000".parse().unwrap());
        if let Some(o) = origin {
            h.insert(header::ORIGIN, o.parse().unwrap());
        }
        h
    }

    #[test]
    fn same_origin_and_listed_origins_pass() {
        assert!(allowed(&headers(Some("http://127.0.0.1:8000")), &[], COOKIE));
        let listed = vec!["https://app.example.com".to_owned()];
        assert!(allowed(&headers(Some("https://app.example.com")), &listed, COOKIE));
    }

    #[test]
    fn foreign_and_null_origins_fail() {
        assert!(!allowed(&headers(Some("https://evil.example")), &[], QUERY));
        assert!(!allowed(&headers(Some("null")), &[], QUERY));
        assert!(!allowed(&headers(Some("http://127.0.0.1:8001")), &[], COOKIE));
    }

    #[test]
    fn no_origin_passes_only_without_cookies() {
        assert!(allowed(&headers(None), &[], QUERY));
        assert!(!allowed(&headers(None), &[], COOKIE));
    }
}
