//! The admin API, `/api/admin/*`: what the admin console (`/admin`, `web/admin.js`) shows and
//! does, for the console and for scripts alike. Who may call it is [`Admin`] (`caller.rs`): an API
//! key with the `admin` scope, or a browser logged in as a user with the admin role, from this
//! server's own pages, with the CSRF header on every change.
//!
//! - `cluster.rs`: the cluster's nodes (as they share themselves in Redis); this node's sockets and
//!   counters (no node shares those: each answer names the node that gave it).
//! - `channels.rs`: channels with subscribers; one channel's presence and recent history.
//! - `actions.rs`: publish, disconnect a user, revoke a user's tokens.
//! - `keys.rs`: the server API's keys: list, add (the key in that answer only), revoke.
//! - `audit.rs`: every action above is audited before it runs; the log, newest first.
//!
//! The actions call what the server API and the CLI call (the channel engine, `auth::logins`,
//! the key store); only the audit is the admin API's own.

mod actions;
mod audit;
mod caller;
mod channels;
mod cluster;
mod keys;

use crate::app::AppState;
use crate::http::error::ErrorBody;
use axum::routing::{get, post};
use axum::Router;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, SecurityRequirement, SecurityScheme};
use utoipa::{Modify, OpenApi};

/// The OpenAPI tag of every admin operation.
pub(crate) const TAG: &str = "admin";
/// The OpenAPI security scheme of the console's login cookie.
const CONSOLE_SCHEME: &str = "adminConsole";

/// The admin API's part of the OpenAPI description.
#[derive(OpenApi)]
#[openapi(
    paths(cluster::nodes, cluster::connections, cluster::stats, channels::list, channels::detail,
        actions::publish, actions::disconnect, actions::revoke, keys::list, keys::add, keys::revoke,
        audit::audit),
    modifiers(&AdminSchemes),
    tags((name = TAG, description = "What the admin console (`/admin`) shows and does. An API key \
        with the `admin` scope (`wsguard apikey add NAME --scopes admin`), or the cookie login of \
        a user with the admin role (`wsguard user admin NAME --on`) from this server's own pages, \
        with `X-CSRF-Token` on every POST. Every action is written to the audit log first.")),
)]
pub(crate) struct AdminApiDoc;

/// The two ways in, either of which every operation takes, and the refusals each may answer.
struct AdminSchemes;

impl Modify for AdminSchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        super::add_key_scheme(components);
        let cookie = ApiKeyValue::with_description(
            crate::auth::transport::ACCESS_COOKIE,
            "The cookie login of a user with the admin role (`POST /login/cookie`), from this \
             server's pages; a POST also needs `X-CSRF-Token` (the `csrf_access_token` cookie)",
        );
        components.add_security_scheme(CONSOLE_SCHEME, SecurityScheme::ApiKey(ApiKey::Cookie(cookie)));
        let either = vec![
            SecurityRequirement::new::<_, _, &str>(super::SCHEME, []),
            SecurityRequirement::new::<_, _, &str>(CONSOLE_SCHEME, []),
        ];
        super::secure_every_operation::<AdminRefusals>(openapi, either);
    }
}

/// What every admin operation may answer besides its own and the server API's limits (413, 429).
/// Never built.
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)]
pub(crate) enum AdminRefusals {
    #[response(status = 401,
        description = "No key and no login (`Not authenticated`), not `Bearer <key>`, a wrong key \
            (`Invalid API key`), a bad or expired login cookie, or a POST without the right \
            `X-CSRF-Token` (`CSRF token missing or incorrect`)",
        headers(("WWW-Authenticate" = String, description = "`Bearer`, with `error=\"invalid_token\"` when a credential was presented")),
        example = json!({"detail": "CSRF token missing or incorrect"}))]
    Unauthorized(ErrorBody),
    #[response(status = 403,
        description = "A key without the `admin` scope, a user without the admin role now, or a \
            console request from another origin",
        example = json!({"detail": "Admin role required"}))]
    Forbidden(ErrorBody),
    #[response(status = 503, description = "The database or the broker is unreachable (nothing is done unaudited)",
        headers(("Retry-After" = u64, description = "1, when given")),
        example = json!({"detail": "Database unavailable, try again shortly"}))]
    Unavailable(ErrorBody),
}

/// Every admin route; [`super::routes`] puts them in the layer that logs and counts every call.
pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/admin/nodes", get(cluster::nodes))
        .route("/api/admin/connections", get(cluster::connections))
        .route("/api/admin/stats", get(cluster::stats))
        .route("/api/admin/channels", get(channels::list))
        .route("/api/admin/channels/{channel}", get(channels::detail))
        .route("/api/admin/publish", post(actions::publish))
        .route("/api/admin/users/{username}/disconnect", post(actions::disconnect))
        .route("/api/admin/users/{username}/revoke", post(actions::revoke))
        .route("/api/admin/keys", get(keys::list).post(keys::add))
        .route("/api/admin/keys/{name}/revoke", post(keys::revoke))
        .route("/api/admin/audit", get(audit::audit))
}
