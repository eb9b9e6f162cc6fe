//! The OpenAPI description of Centrifugo's server API, merged into the HTTP API's: one operation,
//! `POST /centrifugo/api/{method}`, whose parameters and results are Centrifugo's (see
//! docs/protocol.md, "Centrifugo server API"). The types here only name shapes; none is built.
#![allow(dead_code)]

use utoipa::openapi::security::{ApiKey, ApiKeyValue, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};

/// The OpenAPI tag of the operation.
pub(super) const TAG: &str = "Centrifugo server API";
/// Its security scheme: a wsguard API key in `X-API-Key`.
/// Named as a literal in `call`'s `security` too, which takes no path.
pub(super) const SCHEME: &str = "centrifugoApiKey";

#[derive(OpenApi)]
#[openapi(
    paths(super::call),
    components(schemas(super::Method)),
    modifiers(&KeyScheme),
    tags((name = TAG, description = "Centrifugo's server API, for Centrifugo's API clients (`cent`, \
        gocent, phpcent…) pointed at `<wsguard>/centrifugo/api`. A wsguard API key in `X-API-Key` \
        or `Authorization: apikey <key>`; each method needs the scope wsguard's own server API \
        needs for the same thing.")),
)]
pub(crate) struct CentrifugoApiDoc;

struct KeyScheme;

impl Modify for KeyScheme {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        let key = ApiKeyValue::with_description("X-API-Key", "An API key from `wsguard apikey add`");
        components.add_security_scheme(SCHEME, SecurityScheme::ApiKey(ApiKey::Header(key)));
    }
}

/// Centrifugo's error: its code (its documentation's codes page) and what was wrong.
#[derive(ToSchema)]
pub(super) struct CentrifugoError {
    code: u32,
    message: String,
    /// Worth retrying.
    temporary: Option<bool>,
}

/// A method's outcome: `result` or `error`; a batch's, `replies`.
#[derive(ToSchema)]
pub(super) struct CentrifugoAnswer {
    #[schema(value_type = Option<Object>)]
    result: Option<serde_json::Value>,
    error: Option<CentrifugoError>,
    #[schema(value_type = Option<Vec<Object>>)]
    replies: Option<Vec<serde_json::Value>>,
}

/// A request refused before any method ran.
#[derive(ToSchema)]
#[schema(example = json!({"error": {"code": 101, "message": "invalid API key"}}))]
pub(super) struct CentrifugoRefusal {
    error: CentrifugoError,
}
