//! The HTTP API: routes, the OpenAPI description, and the layers every response goes through.

mod cookies;
pub(crate) mod error;
pub(crate) mod extract;
mod health;
mod jwks;
mod me;
pub(crate) mod origin;
mod pages;
mod tokens;

use crate::app::AppState;
use axum::extract::DefaultBodyLimit;
use axum::extract::Request;
use axum::http::{header, HeaderName, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use error::{ApiError, InactiveUser};
use serde_json::json;
use std::convert::Infallible;
use tower::{Service, ServiceBuilder};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::cors::{AllowCredentials, AllowOrigin, CorsLayer};
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::trace::TraceLayer;
use utoipa::openapi::security::{Flow, OAuth2, Password, Scopes, SecurityRequirement, SecurityScheme};
use utoipa::{IntoResponses, Modify, OpenApi};
use utoipa_swagger_ui::SwaggerUi;

/// The OpenAPI security scheme of users' tokens.
const BEARER: &str = "bearer";

#[derive(OpenApi)]
#[openapi(
    info(title = "wsguard", description = "OAuth2 password flow, JWTs, and WebSockets bound to their tokens."),
    paths(
        tokens::token, tokens::login, tokens::login_cookie, tokens::refresh, tokens::logout,
        me::me, me::items, me::change_password,
        health::healthz, health::readyz,
        jwks::jwks,
    ),
    modifiers(&BearerScheme),
    tags((name = "tokens", description = "Logins, refresh and logout"), (name = "users"), (name = "health")),
)]
struct ApiDoc;

/// The OAuth2 password flow, so that Swagger UI's "Authorize" logs in through `/token`; every
/// operation that takes it may answer [`InactiveUser`], as its extractors refuse a disabled user.
struct BearerScheme;

impl Modify for BearerScheme {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            BEARER,
            SecurityScheme::OAuth2(OAuth2::new([Flow::Password(Password::new("/token", Scopes::new()))])),
        );
        let bearer = SecurityRequirement::new::<_, _, &str>(BEARER, []);
        let inactive = InactiveUser::responses();
        for item in openapi.paths.paths.values_mut() {
            for operation in [&mut item.get, &mut item.post, &mut item.put].into_iter().flatten() {
                if operation.security.as_ref().is_some_and(|security| security.contains(&bearer)) {
                    operation.responses.responses.extend(inactive.clone());
                }
            }
        }
    }
}

/// The API's routes and the pages.
pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/token", post(tokens::token))
        .route("/login", post(tokens::login).get(pages::login))
        .route("/login/cookie", post(tokens::login_cookie))
        .route("/refresh", post(tokens::refresh))
        .route("/logout", post(tokens::logout))
        .route("/users/me", get(me::me))
        .route("/users/me/password", put(me::change_password))
        .route("/items/", get(me::items))
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(health::metrics))
        .route("/.well-known/jwks.json", get(jwks::jwks))
        // The pages.
        .route("/", get(pages::root))
        .route("/chat", get(pages::chat))
        .route("/admin", get(pages::admin))
        .route("/token-demo", get(pages::token_demo))
        .route("/static/{name}", get(pages::asset))
        .route("/client.js", get(pages::client_js))
        .route("/client/{name}", get(pages::client_module))
        .route("/client.d.ts", get(pages::client_dts))
}

/// `routes` (every route of the server), their description `openapi` and the fallbacks, inside the
/// layers every request goes through. The layers wrap the router once rather than each route
/// (`Router::layer`), so a new connection clones one service, not one per route.
pub(crate) fn service(
    state: AppState,
    routes: Router<AppState>,
    openapi: utoipa::openapi::OpenApi,
) -> impl Service<Request, Response = Response, Error = Infallible, Future: Send> + Clone + Send + 'static {
    let tls = state.config.tls();
    ServiceBuilder::new()
        // Outermost, so that every answer carries them, a caught panic's too.
        .map_response(move |response| secure(response, tls))
        .layer(CatchPanicLayer::custom(|_| ApiError::internal().into_response()))
        // The span names the path only: a query string may hold a token.
        .layer(TraceLayer::new_for_http().make_span_with(|request: &Request| {
            tracing::debug_span!("request", method = %request.method(), path = %request.uri().path())
        }))
        .option_layer(cors(&state.config.cors_origins))
        .layer(DefaultBodyLimit::max(extract::MAX_BODY_BYTES))
        .service(
            routes
                .merge(docs(openapi))
                .fallback(not_found)
                .method_not_allowed_fallback(method_not_allowed)
                .with_state(state),
        )
}

/// The headers every response carries: not framed, no referrer, no MIME sniffing, unless its
/// handler chose otherwise (a page's own referrer policy); and under TLS, HSTS, which is the
/// server's alone. (On plain HTTP HSTS would be ignored, or pin a dev host to HTTPS.) One pass
/// over the headers, where a layer per header nests a future per header in every request.
fn secure(response: impl IntoResponse, tls: bool) -> Response {
    let mut response = response.into_response();
    let headers = response.headers_mut();
    for (name, value) in [
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
    ] {
        headers.entry(name).or_insert(HeaderValue::from_static(value));
    }
    if tls {
        headers.insert(header::STRICT_TRANSPORT_SECURITY, HeaderValue::from_static("max-age=31536000"));
    }
    response
}

/// The OpenAPI description of these routes.
pub(crate) fn openapi() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

/// Swagger UI and `openapi`, under the pages' Content-Security-Policy: the UI is served from this
/// origin, so a script injected into it would run with the user's cookies.
fn docs(openapi: utoipa::openapi::OpenApi) -> Router<AppState> {
    Router::from(SwaggerUi::new("/docs").url("/openapi.json", openapi)).layer(
        SetResponseHeaderLayer::if_not_present(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(pages::DOCS_CSP),
        ),
    )
}

/// CORS for the configured origins only, with credentials; none configured, no CORS headers.
fn cors(origins: &[String]) -> Option<CorsLayer> {
    if origins.is_empty() {
        return None;
    }
    // Validated by the config: header-safe, no wildcard.
    let origins: Vec<HeaderValue> = origins.iter().filter_map(|o| HeaderValue::from_str(o).ok()).collect();
    let listed = origins.clone();
    Some(
        CorsLayer::new()
            .allow_origin(AllowOrigin::list(origins))
            // Not even `Allow-Credentials` for an origin off the list.
            .allow_credentials(AllowCredentials::predicate(move |origin, _| listed.contains(origin)))
            .allow_methods([Method::GET, Method::POST, Method::PUT, Method::DELETE])
            .allow_headers([
                header::AUTHORIZATION,
                header::CONTENT_TYPE,
                HeaderName::from_static("x-csrf-token"),
            ])
            .max_age(std::time::Duration::from_secs(600)),
    )
}

async fn not_found() -> impl IntoResponse {
    (StatusCode::NOT_FOUND, Json(json!({ "detail": "Not Found" })))
}

async fn method_not_allowed() -> impl IntoResponse {
    (StatusCode::METHOD_NOT_ALLOWED, Json(json!({ "detail": "Method Not Allowed" })))
}
