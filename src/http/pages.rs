//! The browser pages, compiled into the binary: no CDN, no build step. Every page forbids inline
//! script and foreign origins by its Content-Security-Policy.

use crate::app::AppState;
use crate::auth::tokens::TokenKind;
use crate::auth::transport::{cookie, REFRESH_COOKIE};
use crate::auth::transport::{CookieKind, CookieRule, Sources};
use crate::auth::{transport, Identity, Mode};
use crate::http::error::ApiError;
use axum::extract::{Path, Query, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::sync::OnceLock;

/// Swagger UI sets inline styles; its scripts stay `'self'` only.
pub(super) const DOCS_CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
     connect-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

pub(super) const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; connect-src 'self'; \
     img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

const LOGIN_HTML: &str = include_str!("../../web/login.html");
const CHAT_HTML: &str = include_str!("../../web/chat.html");
const TOKEN_DEMO_HTML: &str = include_str!("../../web/token-demo.html");
const REFRESH_HTML: &str = include_str!("../../web/refresh.html");
const ADMIN_HTML: &str = include_str!("../../web/admin.html");
const ADMIN_DENIED_HTML: &str = include_str!("../../web/admin-denied.html");

/// `/static/<name>`: the pages' scripts and styles.
const ASSETS: &[(&str, &str, &str)] = &[
    ("chat.js", "text/javascript; charset=utf-8", include_str!("../../web/chat.js")),
    ("chat-view.js", "text/javascript; charset=utf-8", include_str!("../../web/chat-view.js")),
    ("login.js", "text/javascript; charset=utf-8", include_str!("../../web/login.js")),
    ("token-demo.js", "text/javascript; charset=utf-8", include_str!("../../web/token-demo.js")),
    ("refresh.js", "text/javascript; charset=utf-8", include_str!("../../web/refresh.js")),
    ("admin.js", "text/javascript; charset=utf-8", include_str!("../../web/admin.js")),
    ("admin-view.js", "text/javascript; charset=utf-8", include_str!("../../web/admin-view.js")),
    ("admin.css", "text/css; charset=utf-8", include_str!("../../web/admin.css")),
    ("style.css", "text/css; charset=utf-8", include_str!("../../web/style.css")),
];

const JS: &str = "text/javascript; charset=utf-8";

/// A file of the JavaScript client (`clients/js`), served so that a page can import the client
/// from wsguard itself. Its ETag is computed once, at the first request.
struct ClientFile {
    content_type: &'static str,
    body: &'static str,
    etag: OnceLock<HeaderValue>,
}

impl ClientFile {
    const fn new(content_type: &'static str, body: &'static str) -> Self {
        Self { content_type, body, etag: OnceLock::new() }
    }
}

/// The entry, `/client.js`.
static CLIENT_JS: ClientFile = ClientFile::new(JS, include_str!("../../clients/js/wsguard.js"));
static CLIENT_DTS: ClientFile =
    ClientFile::new("application/typescript; charset=utf-8", include_str!("../../clients/js/wsguard.d.ts"));
/// `/client/<name>`: the modules the entry imports (`./client/<name>`, which a browser resolves
/// against `/client.js`) and that import one another. Only these names; anything else is a 404.
static CLIENT_MODULES: [(&str, ClientFile); 7] = [
    ("client.js", ClientFile::new(JS, include_str!("../../clients/js/client/client.js"))),
    ("socket.js", ClientFile::new(JS, include_str!("../../clients/js/client/socket.js"))),
    ("streams.js", ClientFile::new(JS, include_str!("../../clients/js/client/streams.js"))),
    ("position.js", ClientFile::new(JS, include_str!("../../clients/js/client/position.js"))),
    ("options.js", ClientFile::new(JS, include_str!("../../clients/js/client/options.js"))),
    ("errors.js", ClientFile::new(JS, include_str!("../../clients/js/client/errors.js"))),
    ("stream.js", ClientFile::new(JS, include_str!("../../clients/js/client/stream.js"))),
];

fn page(html: String) -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8")),
            (header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP)),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
        ],
        html,
    )
        .into_response()
}

/// Escapes text for an HTML attribute or element.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[derive(Deserialize)]
pub(super) struct LoginQuery {
    next: Option<String>,
    error: Option<String>,
}

pub(super) async fn login(Query(query): Query<LoginQuery>) -> Response {
    let next = super::tokens::local_path(query.next.as_deref());
    let next = if next == "/" { "/chat" } else { next };
    let error = if query.error.is_some() { "Incorrect username or password." } else { "" };
    page(LOGIN_HTML.replace("{{next}}", &escape(next)).replace("{{error}}", error))
}

/// The user of the request's access cookie, if it is valid and the user active.
async fn logged_in(state: &AppState, parts: &Parts) -> Option<Identity> {
    let sources = Sources { header: false, subprotocol: false, query: false, cookie: CookieRule::NoCsrf };
    let presented = transport::find(parts, sources, CookieKind::Access).ok()??;
    state.auth.authenticate(Some(&presented), Mode::Required).await.ok()?
}

/// What a page behind the login answers without a valid access cookie: with a refresh cookie that
/// still verifies, a small page refreshes through `/refresh` (which needs the CSRF header only a
/// page can send) and comes back; anyone else goes to the login page, and then to `path`.
fn not_logged_in(state: &AppState, parts: &Parts, path: &str) -> Response {
    let refreshable = cookie(&parts.headers, REFRESH_COOKIE)
        .is_some_and(|token| state.auth.tokens.verify(token, TokenKind::Refresh).is_ok());
    if refreshable {
        return page(REFRESH_HTML.to_owned());
    }
    Redirect::to(&format!("/login?next={path}")).into_response()
}

/// `/chat` for a logged-in user.
pub(super) async fn chat(State(state): State<AppState>, parts: Parts) -> Response {
    match logged_in(&state, &parts).await {
        Some(_) => page(CHAT_HTML.to_owned()),
        None => not_logged_in(&state, &parts, "/chat"),
    }
}

/// `/admin`, the admin console, for a logged-in user with the admin role now (read from the
/// store); 403 for another user. Its referrer policy is `same-origin`, so that its requests carry
/// its real `Origin`, which the admin API checks (`no-referrer` would make it `null`).
pub(super) async fn admin(State(state): State<AppState>, parts: Parts) -> Response {
    let Some(identity) = logged_in(&state, &parts).await else {
        return not_logged_in(&state, &parts, "/admin");
    };
    let (status, html) = match crate::auth::admin::is_admin(state.store.as_ref(), &identity).await {
        Ok(true) => (StatusCode::OK, ADMIN_HTML),
        Ok(false) => (StatusCode::FORBIDDEN, ADMIN_DENIED_HTML),
        Err(err) => return ApiError::from(err).into_response(),
    };
    let mut response = page(html.to_owned());
    *response.status_mut() = status;
    response.headers_mut().insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    response
}

pub(super) async fn root(State(state): State<AppState>, parts: Parts) -> Redirect {
    if logged_in(&state, &parts).await.is_some() {
        Redirect::to("/chat")
    } else {
        Redirect::to("/login?next=/chat")
    }
}

pub(super) async fn token_demo() -> Response {
    page(TOKEN_DEMO_HTML.to_owned())
}

pub(super) async fn asset(Path(name): Path<String>) -> Response {
    match ASSETS.iter().find(|(asset, _, _)| *asset == name) {
        Some((_, content_type, body)) => (
            [
                (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
                (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
            ],
            *body,
        )
            .into_response(),
        None => not_found(),
    }
}

/// `GET /client.js`: the client as an ES module. Revalidated on every use (its URL carries no
/// version, and an old client must not outlive an upgrade), cheaply: a 304 for a matching ETag.
/// Public and credential-free, so any origin may load it (module scripts are fetched with CORS);
/// `X-TypeScript-Types` points Deno at the declarations.
pub(super) async fn client_js(parts: Parts) -> Response {
    let mut response = client_file(&parts, &CLIENT_JS);
    response.headers_mut().insert("x-typescript-types", HeaderValue::from_static("/client.d.ts"));
    response
}

/// `GET /client.d.ts`: the client's type declarations.
pub(super) async fn client_dts(parts: Parts) -> Response {
    client_file(&parts, &CLIENT_DTS)
}

/// `GET /client/<name>`: a module of the client, served as the entry is.
pub(super) async fn client_module(Path(name): Path<String>, parts: Parts) -> Response {
    match CLIENT_MODULES.iter().find(|(module, _)| *module == name) {
        Some((_, file)) => client_file(&parts, file),
        None => not_found(),
    }
}

fn not_found() -> Response {
    (StatusCode::NOT_FOUND, axum::Json(serde_json::json!({"detail": "Not Found"}))).into_response()
}

fn client_file(parts: &Parts, file: &ClientFile) -> Response {
    let etag = file.etag.get_or_init(|| {
        let digest = hex::encode(&Sha256::digest(file.body.as_bytes())[..12]);
        HeaderValue::from_str(&format!("\"{digest}\"")).expect("hex is a valid header value")
    });
    let fresh = parts
        .headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|tag| {
            tag.trim().trim_start_matches("W/") == etag.to_str().unwrap_or_default() || tag.trim() == "*"
        });
    let headers = [
        (header::CONTENT_TYPE, HeaderValue::from_static(file.content_type)),
        (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        (header::ETAG, etag.clone()),
        (header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*")),
    ];
    if fresh {
        (StatusCode::NOT_MODIFIED, headers).into_response()
    } else {
        (headers, file.body).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::escape;

    #[test]
    fn escapes_markup() {
        assert_eq!(escape(r#"/chat"><script>x</script>"#), "/chat&quot;&gt;&lt;script&gt;x&lt;/script&gt;");
    }
}
