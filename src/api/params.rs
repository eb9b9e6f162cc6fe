//! [`ApiPath`] and [`ApiQuery`]: a server-API request's path parameters and query string, whose
//! mistakes get 422 with a JSON `detail` (axum's own extractors answer them in plain text).

use super::error::CallError;
use crate::auth::credentials;
use crate::http::error::ErrorBody;
use axum::extract::{FromRequestParts, Path};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use utoipa::IntoParams;

/// A channel named in the path.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub(crate) struct ChannelPath {
    /// `namespace:name`, or a room of the default namespace
    #[param(pattern = "^[A-Za-z0-9_.@:-]{1,128}$", example = "user:johndoe")]
    pub(crate) channel: String,
}

/// A user named in the path.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub(crate) struct UserPath {
    /// The user: 1-64 of A-Z a-z 0-9 _ . - @
    #[param(pattern = "^[A-Za-z0-9_.@-]{1,64}$", example = "johndoe")]
    pub(crate) username: String,
}

/// What an operation naming a user in its path answers when the name is not a username
/// ([`UserPath::checked`]). Never built.
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)]
pub(crate) enum NotAUsername {
    #[response(status = 422, description = "Not a username",
        example = json!({"detail": "username may contain only letters, digits and _ . - @"}))]
    Invalid(ErrorBody),
}

impl UserPath {
    /// The username, checked as wsguard checks usernames (422 otherwise).
    pub(crate) fn checked(&self) -> Result<&str, CallError> {
        credentials::check_username(&self.username).map_err(CallError::invalid)?;
        Ok(&self.username)
    }
}

/// A query's `limit`, `default` when absent; 422 outside 1-`max`.
pub(crate) fn limit(given: Option<i64>, default: i64, max: i64) -> Result<i64, CallError> {
    let limit = given.unwrap_or(default);
    if !(1..=max).contains(&limit) {
        return Err(CallError::invalid(format!("limit must be 1-{max}")));
    }
    Ok(limit)
}

/// Path parameters, as `axum::extract::Path` reads them.
pub(crate) struct ApiPath<T>(pub(crate) T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for ApiPath<T> {
    type Rejection = CallError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, CallError> {
        match Path::<T>::from_request_parts(parts, state).await {
            Ok(Path(value)) => Ok(ApiPath(value)),
            Err(rejection) => Err(CallError::invalid(format!("Invalid path: {}", rejection.body_text()))),
        }
    }
}

/// The query string (`?limit=10&since=…`); absent, it is empty.
pub(crate) struct ApiQuery<T>(pub(crate) T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = CallError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, CallError> {
        let query = parts.uri.query().unwrap_or("");
        serde_urlencoded::from_str(query)
            .map(ApiQuery)
            .map_err(|e| CallError::invalid(format!("Invalid query: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::{Request, StatusCode};
    use axum::response::IntoResponse;

    #[derive(Deserialize, Debug, PartialEq)]
    struct History {
        limit: Option<u32>,
        since: Option<String>,
    }

    async fn query(uri: &str) -> Result<History, StatusCode> {
        let (mut parts, ()) = Request::builder().uri(uri).body(()).unwrap().into_parts();
        ApiQuery::<History>::from_request_parts(&mut parts, &())
            .await
            .map(|ApiQuery(q)| q)
            .map_err(|e| e.into_response().status())
    }

    #[tokio::test]
    async fn queries_parse_and_bad_ones_get_422() {
        assert_eq!(query("/h").await, Ok(History { limit: None, since: None }));
        assert_eq!(
            query("/h?limit=5&since=abc").await,
            Ok(History { limit: Some(5), since: Some("abc".into()) })
        );
        assert_eq!(query("/h?limit=-1").await, Err(StatusCode::UNPROCESSABLE_ENTITY));
        assert_eq!(query("/h?limit=x").await, Err(StatusCode::UNPROCESSABLE_ENTITY));
    }
}
