//! The public signing keys, for anyone verifying wsguard's tokens on their own.

use crate::app::AppState;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::Json;

/// The public signing keys.
///
/// The JWK Set (RFC 7517) of the keys that verify tokens: RSA `n`/`e`, EC P-256 `x`/`y`, Ed25519
/// OKP `x`, each with `kid`, `alg` and `use: sig`. Empty with HS256: a shared secret is never published.
#[utoipa::path(get, path = "/.well-known/jwks.json", tag = "tokens",
    responses((status = 200, description = "The public keys", content_type = "application/json",
        example = json!({"keys": [{"kty": "OKP", "crv": "Ed25519", "kid": "eddsa-1763846658-1a2b3c4d",
            "alg": "EdDSA", "use": "sig", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}]}))))]
pub(super) async fn jwks(State(state): State<AppState>) -> impl IntoResponse {
    // Short: verifiers see a rotated key soon; they refetch on an unknown `kid` anyway.
    ([(header::CACHE_CONTROL, "public, max-age=60")], Json(state.auth.tokens.jwks().as_ref().clone()))
}
