//! [`Admin`]: the extractor every admin endpoint starts with. It admits two kinds of caller:
//! - a script, with an API key holding the `admin` scope (`Authorization: Bearer wsg_…`), admitted
//!   as every server-API caller is (key table, budget, logs and metrics by key name);
//! - the console, a browser logged in by the cookie login: the request must come from a page of
//!   this server ([`same_origin`]), carry `X-CSRF-Token` when it changes anything, and its user must
//!   hold the admin role in the store at that moment ([`admin::is_admin`], no cache).
//!
//! An `Authorization` header makes a request the first kind, whatever else it holds: cookies are
//! then not read, so a page of another site cannot borrow the console's login through it.

use super::super::caller::{check_declared_length, ApiCaller, NeedsAdmin};
use super::super::calls::CallSlot;
use super::super::error::CallError;
use crate::app::AppState;
use crate::auth::admin;
use crate::auth::transport::{self, CookieKind, CookieRule, Sources};
use crate::auth::{AuthError, Mode};
use crate::connections::ClientAddr;
use crate::http::error::ApiError;
use crate::http::origin;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, Method};

/// The metric and log label of the console's calls (where a key's name goes for a script's): no
/// key name can hold parentheses.
const CONSOLE: &str = "(console)";

/// Who takes an admin action, for the audit log.
#[derive(Debug, Clone)]
pub(crate) struct Actor {
    /// A username (the console) or `key:<name>` (an API key).
    pub(crate) name: String,
    pub(crate) via: Via,
    pub(crate) address: ClientAddr,
}

/// How an admin reached wsguard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Via {
    Console,
    Api,
}

impl Via {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Via::Console => "console",
            Via::Api => "api",
        }
    }
}

/// An admitted admin caller.
pub(crate) struct Admin(pub(crate) Actor);

impl FromRequestParts<AppState> for Admin {
    type Rejection = CallError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, CallError> {
        let address = ClientAddr::of(parts);
        if parts.headers.contains_key(header::AUTHORIZATION) {
            let caller = ApiCaller::<NeedsAdmin>::from_request_parts(parts, state).await?;
            return Ok(Admin(Actor { name: format!("key:{}", caller.name), via: Via::Api, address }));
        }
        let slot = parts.extensions.get::<CallSlot>().cloned().unwrap_or_default();
        slot.count_in(state.metrics.clone());
        slot.name(CONSOLE.into());
        if !same_origin(&parts.method, &parts.headers) {
            tracing::info!(%address, path = parts.uri.path(), "admin request refused: not from this server's pages");
            return Err(CallError::Denied("Cross-origin request refused"));
        }
        let name = console_admin(parts, state).await?;
        check_declared_length(parts, state)?;
        Ok(Admin(Actor { name, via: Via::Console, address }))
    }
}

/// The username of the console's login, if it holds the admin role now. A state-changing request
/// needs `X-CSRF-Token` equal to the login's `csrf_access_token` (checked by `authenticate`).
async fn console_admin(parts: &Parts, state: &AppState) -> Result<String, CallError> {
    let cookie = if parts.method.is_safe() { CookieRule::NoCsrf } else { CookieRule::CsrfHeader };
    let sources = Sources { header: false, subprotocol: false, query: false, cookie };
    let presented = transport::find(parts, sources, CookieKind::Access).map_err(ApiError::from)?;
    let identity = state
        .auth
        .authenticate(presented.as_ref(), Mode::Required)
        .await
        .map_err(ApiError::from)?
        .ok_or(ApiError::Auth(AuthError::Missing))?;
    if !admin::is_admin(state.store.as_ref(), &identity).await? {
        tracing::info!(username = %identity.user.username, "admin request refused: no admin role");
        return Err(CallError::Denied("Admin role required"));
    }
    Ok(identity.user.username.to_string())
}

/// Whether a request comes from a page of this server itself. `Sec-Fetch-Site`, which current
/// browsers send, must say `same-origin` (or `none` for a read: an address typed by the user).
/// `Origin`, when present, must be this server's (its host is the `Host` header): another site and
/// `null` are refused. A request that changes something must carry `Origin`, which browsers send
/// with every POST (the console's page has `Referrer-Policy: same-origin`, so that it is the page's
/// origin and not `null`). `--allowed-origins` and `--cors-origins` do not apply: no other site
/// serves the console.
pub(super) fn same_origin(method: &Method, headers: &HeaderMap) -> bool {
    let safe = method.is_safe();
    match headers.get("sec-fetch-site").map(|v| v.as_bytes().to_ascii_lowercase()).as_deref() {
        None | Some(b"same-origin") => {}
        Some(b"none") if safe => {}
        Some(_) => return false,
    }
    match headers.get(header::ORIGIN) {
        Some(_) => origin::allowed(headers, &[], None),
        None => safe,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, "127.0.0.1:8000".parse().unwrap());
        for (name, value) in pairs {
            headers.insert(*name, value.parse().unwrap());
        }
        headers
    }

    #[test]
    fn only_this_servers_pages_pass() {
        let own = ("origin", "http://127.0.0.1:8000");
        let fetched = ("sec-fetch-site", "same-origin");
        assert!(same_origin(&Method::POST, &headers(&[own, fetched])));
        assert!(same_origin(&Method::POST, &headers(&[own])), "a browser without Sec-Fetch-Site");
        assert!(same_origin(&Method::GET, &headers(&[fetched])), "a same-origin GET has no Origin");
        assert!(same_origin(&Method::GET, &headers(&[])), "not a browser: no cookie to borrow");
        assert!(same_origin(&Method::GET, &headers(&[("sec-fetch-site", "none")])), "typed address");
    }

    #[test]
    fn other_sites_null_and_origin_less_changes_fail() {
        for (name, value) in [
            ("origin", "https://evil.example"),
            ("origin", "null"),
            ("origin", "http://127.0.0.1:8001"),
            ("sec-fetch-site", "cross-site"),
            ("sec-fetch-site", "same-site"),
            ("sec-fetch-site", "none"),
        ] {
            assert!(!same_origin(&Method::POST, &headers(&[(name, value)])), "POST {name}: {value}");
        }
        assert!(!same_origin(&Method::GET, &headers(&[("origin", "https://evil.example")])));
        assert!(!same_origin(&Method::GET, &headers(&[("sec-fetch-site", "cross-site")])));
        assert!(!same_origin(&Method::POST, &headers(&[("sec-fetch-site", "same-origin")])), "no Origin");
    }
}
