//! [`ApiBody`]: a server-API request's JSON body: `Content-Type: application/json` (415
//! otherwise), at most `--api-max-body-bytes` (413, found while reading: a body sent without a
//! length is cut off all the same), parsed into `T` (422 with what is wrong).

use super::error::CallError;
use crate::app::AppState;
use crate::http::error::ApiError;
use crate::http::extract::{is_media_type, parse_json, unsupported};
use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use futures_util::StreamExt;
use serde::de::DeserializeOwned;

pub(crate) struct ApiBody<T>(pub(crate) T);

impl<T: DeserializeOwned> FromRequest<AppState> for ApiBody<T> {
    type Rejection = CallError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, CallError> {
        json_body(req, state.config.api.api_max_body_bytes).await.map(ApiBody)
    }
}

/// The request's JSON body as `T`, if it is JSON and at most `limit` bytes.
async fn json_body<T: DeserializeOwned>(req: Request, limit: usize) -> Result<T, CallError> {
    if !is_media_type(&req, "application/json") {
        return Err(unsupported("application/json").into());
    }
    Ok(parse_json(&read_body(req, limit).await?)?)
}

/// The request's body if it is at most `limit` bytes (413 otherwise, found while reading: a body
/// sent without a length is cut off all the same). A body that came in one chunk, as most do, is
/// that chunk, not a copy.
pub(crate) async fn read_body(req: Request, limit: usize) -> Result<Bytes, CallError> {
    let mut chunks = req.into_body().into_data_stream();
    let mut first = Bytes::new();
    let mut joined: Vec<u8> = Vec::new();
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk.map_err(|_| ApiError::bad_request("Could not read the request body"))?;
        if first.len() + joined.len() + chunk.len() > limit {
            return Err(CallError::too_large(limit));
        }
        if first.is_empty() && joined.is_empty() {
            first = chunk;
        } else {
            if joined.is_empty() {
                joined.extend_from_slice(&std::mem::take(&mut first));
            }
            joined.extend_from_slice(&chunk);
        }
    }
    Ok(if joined.is_empty() { first } else { joined.into() })
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::StatusCode;
    use axum::response::IntoResponse;
    use serde::Deserialize;

    #[derive(Deserialize, Debug)]
    struct Publish {
        #[allow(dead_code)]
        channel: String,
    }

    fn request(content_type: &str, body: Body) -> Request {
        Request::builder().method("POST").header("content-type", content_type).body(body).unwrap()
    }

    async fn refusal(req: Request, limit: usize) -> (StatusCode, String) {
        let response = json_body::<Publish>(req, limit).await.unwrap_err().into_response();
        let status = response.status();
        let body = axum::body::to_bytes(response.into_body(), 4096).await.unwrap();
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
        (status, body["detail"].as_str().unwrap().to_owned())
    }

    #[tokio::test]
    async fn json_within_the_limit_parses() {
        // Media types are case-insensitive; parameters are ignored.
        for media_type in ["application/json", "Application/JSON", "APPLICATION/JSON; charset=UTF-8"] {
            let body = Body::from(r#"{"channel":"a"}"#);
            assert!(json_body::<Publish>(request(media_type, body), 64).await.is_ok(), "{media_type}");
        }
    }

    #[tokio::test]
    async fn bad_bodies_get_their_status_and_a_detail() {
        let (status, detail) = refusal(request("application/json", Body::from("{\"channel\":")), 64).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(detail.starts_with("Invalid JSON body: EOF"), "{detail}");
        let (status, detail) = refusal(request("application/json", Body::from("{}")), 64).await;
        assert_eq!(
            (status, detail.as_str()),
            (StatusCode::UNPROCESSABLE_ENTITY, "Invalid JSON body: missing field `channel`")
        );
        let (status, _) = refusal(request("text/plain", Body::from("{}")), 64).await;
        assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
        let (status, detail) = refusal(request("application/json", Body::from("x".repeat(65))), 64).await;
        assert_eq!(
            (status, detail.as_str()),
            (StatusCode::PAYLOAD_TOO_LARGE, "Request body too large (limit 64 bytes)")
        );
    }

    #[tokio::test]
    async fn a_body_in_chunks_is_joined_in_order() {
        let chunks = ["{\"chan", "nel\":", "\"a\"}"]
            .map(|chunk| Ok::<_, std::io::Error>(axum::body::Bytes::from(chunk)));
        let req = request("application/json", Body::from_stream(futures_util::stream::iter(chunks)));
        assert_eq!(&read_body(req, 64).await.ok().unwrap()[..], br#"{"channel":"a"}"#);
        let req = request("application/json", Body::from(r#"{"channel":"a"}"#));
        assert_eq!(&read_body(req, 15).await.ok().unwrap()[..], br#"{"channel":"a"}"#, "exactly the limit");
    }

    #[tokio::test]
    async fn a_body_without_a_length_is_cut_off_at_the_limit() {
        let chunks = futures_util::stream::iter(
            (0..100).map(|_| Ok::<_, std::io::Error>(Bytes::from_static(b"          "))),
        );
        let (status, _) = refusal(request("application/json", Body::from_stream(chunks)), 256).await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    }
}
