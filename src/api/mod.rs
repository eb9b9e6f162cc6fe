//! The server API, `/api/*`: for application backends, authenticated by API keys
//! (`Authorization: Bearer <key>`, keys made by `wsguard apikey add`), never by users' tokens.
//!
//! Adding an endpoint:
//! - Its handler takes [`ApiCaller<NeedsScope>`](ApiCaller) first (`ApiCaller<NeedsPublish>`,
//!   `ApiCaller<NeedsDisconnect>`, `ApiCaller<NeedsRead>`): key, budget (429) and scope (403) are
//!   checked before anything else. Path parameters are [`ApiPath<T>`](ApiPath), a query string
//!   [`ApiQuery<T>`](ApiQuery) (422 with a `detail`, where axum's own answer in plain text); a
//!   JSON body is [`ApiBody<T>`](ApiBody), last (413, 415, 422). A handler returns
//!   `Result<_, CallError>` (`?` works on store and broker errors).
//! - Its route goes in [`routes`], inside the layer that logs and counts every call.
//! - Its `#[utoipa::path]` has `tag = TAG` and is listed in [`ServerApiDoc`]'s `paths`; the doc
//!   adds the key requirement, the [`KeyRefusals`] (401, 403, 503) and the `LimitRefusals` (413, 429)
//!   to every operation.
//!
//! The admin API (`admin/`, `/api/admin/*`) is the admin console's, and takes the console's login
//! as well as keys with the `admin` scope: see its module.

mod admin;
mod body;
mod caller;
mod calls;
mod channels;
mod error;
mod history;
mod params;
mod publish;
mod users;

// What Centrifugo's server API (`centrifugo::api`) shares with this one: keys, limits, logs.
pub(crate) use admin::AdminApiDoc;
pub(crate) use body::read_body;
pub(crate) use caller::{admit, check_declared_length};
pub(crate) use calls::record;
pub(crate) use error::CallError;

use crate::app::AppState;
use crate::http::error::ErrorBody;
use axum::routing::{get, post};
use axum::Router;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::Components;
use utoipa::{IntoResponses, Modify, OpenApi};

/// The OpenAPI tag of every server-API operation.
pub(crate) const TAG: &str = "server API";
/// The OpenAPI security scheme of every server-API operation.
pub(crate) const SCHEME: &str = "apiKey";

/// The server API's part of the OpenAPI description, merged into the HTTP API's.
#[derive(OpenApi)]
#[openapi(
    paths(publish::publish, publish::broadcast, users::disconnect, users::revoke, channels::list, channels::presence,
        history::history),
    modifiers(&ApiKeyScheme),
    tags((name = TAG, description = "For application backends. `Authorization: Bearer <API key>` \
        (`wsguard apikey add NAME --scopes …`); each operation needs one scope: `publish`, \
        `disconnect` or `read`. Requests per key are limited (429 with `Retry-After`).")),
)]
pub(crate) struct ServerApiDoc;

/// The `apiKey` scheme, a bearer API key and not a user's token, required by every operation,
/// each of which may answer the [`KeyRefusals`].
struct ApiKeyScheme;

impl Modify for ApiKeyScheme {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        add_key_scheme(openapi.components.get_or_insert_with(Default::default));
        let key = SecurityRequirement::new::<_, _, &str>(SCHEME, []);
        secure_every_operation::<KeyRefusals>(openapi, vec![key]);
    }
}

/// The bearer API key, as [`SCHEME`]: the server API's way in, and one of the admin API's.
fn add_key_scheme(components: &mut Components) {
    let scheme = HttpBuilder::new()
        .scheme(HttpAuthScheme::Bearer)
        .bearer_format("wsg_…")
        .description(Some("An API key from `wsguard apikey add`"))
        .build();
    components.add_security_scheme(SCHEME, SecurityScheme::Http(scheme));
}

/// What every operation of the server API and of the admin API may answer alike: a body over the
/// limit, a key's budget spent. Never built.
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)]
enum LimitRefusals {
    #[response(status = 413, description = "A declared body over `--api-max-body-bytes`",
        example = json!({"detail": "Request body too large (limit 65536 bytes)"}))]
    TooLarge(ErrorBody),
    #[response(status = 429, description = "An API key's request budget is spent",
        headers(("Retry-After" = u64, description = "Seconds until the key may call again")),
        example = json!({"detail": "Too many requests for this API key, try again shortly"}))]
    TooManyRequests(ErrorBody),
}

/// Gives every GET and POST operation `security`, and each of the `Refusals` and
/// [`LimitRefusals`] responses whose status it does not answer itself.
fn secure_every_operation<Refusals: IntoResponses>(
    openapi: &mut utoipa::openapi::OpenApi,
    security: Vec<SecurityRequirement>,
) {
    let mut refusals = Refusals::responses();
    refusals.extend(LimitRefusals::responses());
    for item in openapi.paths.paths.values_mut() {
        for operation in [&mut item.get, &mut item.post].into_iter().flatten() {
            operation.security = Some(security.clone());
            for (status, response) in &refusals {
                operation.responses.responses.entry(status.clone()).or_insert_with(|| response.clone());
            }
        }
    }
}

/// The refusals every server-API operation may answer besides the [`LimitRefusals`], for the
/// OpenAPI description (added to each by [`ApiKeyScheme`]). Never built.
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)]
pub(crate) enum KeyRefusals {
    #[response(status = 401,
        description = "No key (`Not authenticated`), not `Bearer <key>` (`Invalid authentication \
            credentials`), or no key of this server (`Invalid API key`, the same for every wrong key)",
        headers(("WWW-Authenticate" = String, description = "`Bearer`, with `error=\"invalid_token\"` when a key was presented")),
        example = json!({"detail": "Invalid API key"}))]
    Unauthorized(ErrorBody),
    #[response(status = 403, description = "The key lacks the operation's scope",
        example = json!({"detail": "This API key lacks the read scope"}))]
    Forbidden(ErrorBody),
    #[response(status = 503, description = "The database (the key table) or the broker is unreachable",
        headers(("Retry-After" = u64, description = "1")),
        example = json!({"detail": "Database unavailable, try again shortly"}))]
    Unavailable(ErrorBody),
}

/// Every server-API route, each call logged and counted.
pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/channels", get(channels::list))
        .route("/api/channels/{channel}/presence", get(channels::presence))
        .route("/api/channels/{channel}/history", get(history::history))
        .route("/api/publish", post(publish::publish))
        .route("/api/broadcast", post(publish::broadcast))
        .route("/api/users/{username}/disconnect", post(users::disconnect))
        .route("/api/users/{username}/revoke", post(users::revoke))
        .merge(admin::routes())
        .layer(axum::middleware::from_fn(calls::record))
}
