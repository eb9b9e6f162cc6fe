//! The server API's keys from the console, as `wsguard apikey` manages them: listed without
//! secrets, added (the key shown in that one answer, only its hash stored), revoked. Additions and
//! revocations are audited.

use super::caller::Admin;
use crate::api::body::ApiBody;
use crate::api::params::ApiPath;
use crate::api::CallError;
use crate::app::AppState;
use crate::auth::api_keys::{self, Scope};
use crate::http::error::ErrorBody;
use crate::store::{ApiKeyRecord, StoreError};
use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// A key as listed: never the key or its hash.
#[derive(Serialize, ToSchema)]
pub(crate) struct KeyView {
    name: String,
    scopes: Vec<String>,
    /// Unix seconds.
    created_at: i64,
    /// Unix seconds, to the minute; `null` until first used.
    last_used_at: Option<i64>,
}

#[derive(Serialize, ToSchema)]
#[schema(example = json!({"keys": [{"name": "billing", "scopes": ["publish", "read"],
    "created_at": 1765100000, "last_used_at": null}]}))]
pub(crate) struct KeyList {
    keys: Vec<KeyView>,
}

/// API keys
///
/// Every key of the server API, by name: its scopes and dates, never the key or its hash.
#[utoipa::path(get, path = "/api/admin/keys", tag = super::TAG,
    responses((status = 200, body = KeyList, description = "Keys by name")))]
pub(super) async fn list(_: Admin, State(state): State<AppState>) -> Result<Json<KeyList>, CallError> {
    let keys = state
        .store
        .api_keys()
        .await?
        .into_iter()
        .map(|key| KeyView {
            name: key.name,
            scopes: key.scopes,
            created_at: key.created_at,
            last_used_at: key.last_used_at,
        })
        .collect();
    Ok(Json(KeyList { keys }))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"name": "billing", "scopes": ["publish", "read"]}))]
pub(crate) struct NewKey {
    /// 1-64 of A-Z a-z 0-9 _ . -, unique.
    #[schema(pattern = "^[A-Za-z0-9_.-]{1,64}$")]
    name: String,
    /// One or more.
    #[schema(min_items = 1)]
    scopes: Vec<ScopeName>,
}

/// A scope, by name.
#[derive(Deserialize, ToSchema, Clone, Copy)]
#[serde(rename_all = "lowercase")]
pub(crate) enum ScopeName {
    Publish,
    Disconnect,
    Read,
    Admin,
}

impl From<ScopeName> for Scope {
    fn from(name: ScopeName) -> Scope {
        match name {
            ScopeName::Publish => Scope::Publish,
            ScopeName::Disconnect => Scope::Disconnect,
            ScopeName::Read => Scope::Read,
            ScopeName::Admin => Scope::Admin,
        }
    }
}

/// A key just added: the only answer that ever holds it.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"name": "billing", "scopes": ["publish", "read"], "key": "wsg_…"}))]
pub(crate) struct AddedKey {
    name: String,
    scopes: Vec<String>,
    /// The key itself, shown this once: only its SHA-256 is stored.
    key: String,
}

/// The scopes named, in [`Scope::ALL`]'s order, each once; 422 for none.
fn scopes(names: &[ScopeName]) -> Result<Vec<String>, CallError> {
    let scopes: api_keys::Scopes = names.iter().map(|name| Scope::from(*name)).collect();
    if scopes == api_keys::Scopes::default() {
        return Err(CallError::invalid("scopes must name at least one of publish, disconnect, read, admin"));
    }
    Ok(scopes.names())
}

/// Add an API key
///
/// As `wsguard apikey add` does: the answer holds the key, shown this once (`Cache-Control:
/// no-store`); only its SHA-256 is stored. It works on every node at once. Audited.
#[utoipa::path(post, path = "/api/admin/keys", tag = super::TAG, request_body = NewKey,
    responses(
        (status = 201, body = AddedKey, description = "Audited and added; the key is in this answer only"),
        (status = 409, body = ErrorBody, description = "A key of that name exists",
            example = json!({"detail": "API key billing already exists"})),
        (status = 415, body = ErrorBody, description = "Not JSON"),
        (status = 422, body = ErrorBody, description = "A bad name, no scope or an unknown one",
            example = json!({"detail": "API key names are 1-64 of A-Z a-z 0-9 _ . -"})),
    ))]
pub(super) async fn add(
    Admin(actor): Admin,
    State(state): State<AppState>,
    ApiBody(request): ApiBody<NewKey>,
) -> Result<Response, CallError> {
    api_keys::check_name(&request.name).map_err(CallError::invalid)?;
    let scopes = scopes(&request.scopes)?;
    let exists =
        || CallError::status(StatusCode::CONFLICT, format!("API key {} already exists", request.name));
    if state.store.api_keys().await?.iter().any(|key| key.name == request.name) {
        return Err(exists());
    }
    actor.record(&state, "apikey.add", &request.name, format!("scopes {}", scopes.join(","))).await?;
    let key = api_keys::generate();
    let record = ApiKeyRecord {
        name: request.name.clone(),
        key_hash: api_keys::digest_hex(&key),
        scopes: scopes.clone(),
        created_at: crate::clock::now_secs(),
        last_used_at: None,
    };
    match state.store.create_api_key(&record).await {
        Err(StoreError::Conflict) => return Err(exists()),
        other => other?,
    }
    let mut response =
        (StatusCode::CREATED, Json(AddedKey { name: request.name, scopes, key })).into_response();
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

/// A key named in the path.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub(crate) struct KeyPath {
    /// The key's name: 1-64 of A-Z a-z 0-9 _ . -
    #[param(pattern = "^[A-Za-z0-9_.-]{1,64}$", example = "billing")]
    name: String,
}

/// Revoke an API key
///
/// As `wsguard apikey revoke` does: this node refuses the key at once, every other within about a
/// second. Audited.
#[utoipa::path(post, path = "/api/admin/keys/{name}/revoke", tag = super::TAG,
    params(KeyPath),
    responses(
        (status = 204, description = "Audited and revoked"),
        (status = 404, body = ErrorBody, description = "No key of that name", example = json!({"detail": "no API key billing"})),
        (status = 422, body = ErrorBody, description = "Not a key name"),
    ))]
pub(super) async fn revoke(
    Admin(actor): Admin,
    State(state): State<AppState>,
    ApiPath(KeyPath { name }): ApiPath<KeyPath>,
) -> Result<StatusCode, CallError> {
    api_keys::check_name(&name).map_err(CallError::invalid)?;
    let missing = || CallError::status(StatusCode::NOT_FOUND, format!("no API key {name}"));
    if !state.store.api_keys().await?.iter().any(|key| key.name == name) {
        return Err(missing());
    }
    actor.record(&state, "apikey.revoke", &name, String::new()).await?;
    if !state.store.delete_api_key(&name).await? {
        return Err(missing());
    }
    // This node at once, rather than at its next reread of the table.
    if let Err(err) = state.api_keys.reload(state.store.as_ref()).await {
        tracing::warn!(error = %err, "rereading the API keys after a revocation failed");
    }
    Ok(StatusCode::NO_CONTENT)
}
