//! CORS: only configured origins, with credentials; none configured, no CORS headers at all.

use crate::helpers::spawn;
use reqwest::header::{
    ACCESS_CONTROL_ALLOW_CREDENTIALS, ACCESS_CONTROL_ALLOW_ORIGIN, ACCESS_CONTROL_REQUEST_HEADERS,
    ACCESS_CONTROL_REQUEST_METHOD, ORIGIN,
};
use reqwest::{Method, StatusCode};

const LISTED: &str = "https://app.example";

async fn preflight(server: &crate::helpers::Server, origin: &str) -> reqwest::Response {
    server
        .http
        .request(Method::OPTIONS, server.url("/users/me"))
        .header(ORIGIN, origin)
        .header(ACCESS_CONTROL_REQUEST_METHOD, "GET")
        .header(ACCESS_CONTROL_REQUEST_HEADERS, "authorization")
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn listed_origins_get_cors_with_credentials_and_others_get_none() {
    let server = spawn(&["--cors-origins=https://other.example,https://app.example"]).await;
    let pair = server.login("johndoe", "secret").await;

    let response = preflight(&server, LISTED).await;
    assert!(response.status().is_success(), "{}", response.status());
    assert_eq!(response.headers()[ACCESS_CONTROL_ALLOW_ORIGIN], LISTED);
    assert_eq!(response.headers()[ACCESS_CONTROL_ALLOW_CREDENTIALS], "true");

    let response = server
        .http
        .get(server.url("/users/me"))
        .bearer_auth(&pair.access)
        .header(ORIGIN, LISTED)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()[ACCESS_CONTROL_ALLOW_ORIGIN], LISTED);
    assert_eq!(response.headers()[ACCESS_CONTROL_ALLOW_CREDENTIALS], "true");

    for unlisted in ["https://evil.example", "https://app.example.evil.example", "null"] {
        let response = preflight(&server, unlisted).await;
        assert!(response.headers().get(ACCESS_CONTROL_ALLOW_ORIGIN).is_none(), "{unlisted}");
        let response = server
            .http
            .get(server.url("/users/me"))
            .bearer_auth(&pair.access)
            .header(ORIGIN, unlisted)
            .send()
            .await
            .unwrap();
        assert!(response.headers().get(ACCESS_CONTROL_ALLOW_ORIGIN).is_none(), "{unlisted}");
        assert!(response.headers().get(ACCESS_CONTROL_ALLOW_CREDENTIALS).is_none(), "{unlisted}");
    }
}

#[tokio::test]
async fn by_default_no_cors_headers_at_all() {
    let server = spawn(&[]).await;
    let pair = server.login("johndoe", "secret").await;
    let responses = [
        preflight(&server, LISTED).await,
        server
            .http
            .get(server.url("/users/me"))
            .bearer_auth(&pair.access)
            .header(ORIGIN, LISTED)
            .send()
            .await
            .unwrap(),
    ];
    for response in responses {
        let cors: Vec<_> =
            response.headers().keys().filter(|name| name.as_str().starts_with("access-control-")).collect();
        assert!(cors.is_empty(), "unexpected CORS headers {cors:?}");
    }
}
