//! The browser pages: redirects, the login form, CSP, and the static assets.

use crate::helpers::spawn;
use crate::refresh::cookie_login;
use reqwest::header::{CONTENT_SECURITY_POLICY, CONTENT_TYPE, LOCATION};
use reqwest::StatusCode;

#[tokio::test]
async fn chat_needs_a_login_and_the_login_page_keeps_next_local() {
    let server = spawn(&[]).await;
    let chat = server.http.get(server.url("/chat")).send().await.unwrap();
    assert_eq!(chat.status(), StatusCode::SEE_OTHER);
    assert_eq!(chat.headers()[LOCATION], "/login?next=/chat");
    let root = server.http.get(server.url("/")).send().await.unwrap();
    assert_eq!(root.headers()[LOCATION], "/login?next=/chat");

    let login = server.http.get(server.url("/login?next=/chat")).send().await.unwrap();
    assert_eq!(login.status(), StatusCode::OK);
    let csp = login.headers()[CONTENT_SECURITY_POLICY].to_str().unwrap().to_owned();
    assert!(csp.contains("script-src 'self'") && csp.contains("default-src 'self'"), "{csp}");
    assert!(!csp.contains("unsafe-inline"));
    let html = login.text().await.unwrap();
    assert!(html.contains(r#"action="/login/cookie""#), "{html}");
    assert!(html.contains(r#"value="/chat""#));
    assert!(!html.contains("{{"), "placeholders filled");

    for evil in ["//evil.example", "https://evil.example", "/\"><script>alert(1)</script>"] {
        let url = format!("{}?next={}", server.url("/login"), urlencode(evil));
        let html = server.http.get(url).send().await.unwrap().text().await.unwrap();
        assert!(!html.contains("evil.example"), "{evil}");
        assert!(!html.contains("<script>alert"), "{evil}");
    }
    for path in ["/login", "/healthz", "/token"] {
        let response = server.http.get(server.url(path)).send().await.unwrap();
        let headers = response.headers();
        assert_eq!(headers["x-content-type-options"], "nosniff", "{path}");
        assert_eq!(headers["referrer-policy"], "no-referrer", "{path}");
        assert_eq!(headers["x-frame-options"], "DENY", "{path}");
        assert!(headers.get("strict-transport-security").is_none(), "no HSTS on plain HTTP: {path}");
    }
    let failed = server.http.get(server.url("/login?error=1")).send().await.unwrap().text().await.unwrap();
    assert!(failed.contains("Incorrect username or password"));
}

fn urlencode(text: &str) -> String {
    serde_urlencoded::to_string([("x", text)]).unwrap()[2..].to_owned()
}

#[tokio::test]
async fn logged_in_users_get_the_chat_and_expired_ones_refresh() {
    let server = spawn(&["--access-ttl=1s"]).await;
    let [access, csrf, refresh, csrf_refresh] = cookie_login(&server, "johndoe", "secret").await;
    let cookies = format!("access_token_cookie={access}; csrf_access_token={csrf}; refresh_token_cookie={refresh}; csrf_refresh_token={csrf_refresh}");
    let chat = server.http.get(server.url("/chat")).header("cookie", &cookies).send().await.unwrap();
    assert_eq!(chat.status(), StatusCode::OK);
    assert!(chat.headers()[CONTENT_SECURITY_POLICY].to_str().unwrap().contains("frame-ancestors 'none'"));
    let html = chat.text().await.unwrap();
    assert!(html.contains("/static/chat.js"));
    assert!(!html.contains("<script>"), "no inline script");
    let root = server.http.get(server.url("/")).header("cookie", &cookies).send().await.unwrap();
    assert_eq!(root.headers()[LOCATION], "/chat");

    // The access cookie expires (1 s + 5 s leeway, in whole seconds); the refresh cookie still
    // verifies. Time must pass: the expiry is what is tested.
    tokio::time::sleep(std::time::Duration::from_millis(7500)).await;
    let chat = server.http.get(server.url("/chat")).header("cookie", &cookies).send().await.unwrap();
    assert_eq!(chat.status(), StatusCode::OK);
    assert!(chat.text().await.unwrap().contains("/static/refresh.js"));
    // A garbage refresh cookie goes to the login page.
    let chat = server
        .http
        .get(server.url("/chat"))
        .header("cookie", format!("access_token_cookie={access}; refresh_token_cookie=garbage"))
        .send()
        .await
        .unwrap();
    assert_eq!(chat.status(), StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn assets_and_the_token_demo_are_served() {
    let server = spawn(&[]).await;
    for (path, kind) in [
        ("/static/chat.js", "javascript"),
        ("/static/token-demo.js", "javascript"),
        ("/static/refresh.js", "javascript"),
        ("/static/style.css", "css"),
    ] {
        let response = server.http.get(server.url(path)).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        assert!(response.headers()[CONTENT_TYPE].to_str().unwrap().contains(kind), "{path}");
    }
    assert_eq!(
        server.http.get(server.url("/static/nope.js")).send().await.unwrap().status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        server.http.get(server.url("/static/..%2FCargo.toml")).send().await.unwrap().status(),
        StatusCode::NOT_FOUND
    );
    let demo = server.http.get(server.url("/token-demo")).send().await.unwrap();
    assert_eq!(demo.status(), StatusCode::OK);
    assert!(demo.text().await.unwrap().contains("/static/token-demo.js"));
}

#[tokio::test]
async fn the_javascript_client_is_served_with_its_types() {
    use reqwest::header::{CACHE_CONTROL, ETAG, IF_NONE_MATCH};
    let server = spawn(&["--cors-origins=https://app.example"]).await;
    const JS: &str = "text/javascript; charset=utf-8";
    let cases = [
        ("/client.js", JS, include_str!("../../clients/js/wsguard.js")),
        ("/client/client.js", JS, include_str!("../../clients/js/client/client.js")),
        ("/client/socket.js", JS, include_str!("../../clients/js/client/socket.js")),
        ("/client/streams.js", JS, include_str!("../../clients/js/client/streams.js")),
        ("/client/position.js", JS, include_str!("../../clients/js/client/position.js")),
        ("/client/options.js", JS, include_str!("../../clients/js/client/options.js")),
        ("/client/errors.js", JS, include_str!("../../clients/js/client/errors.js")),
        (
            "/client.d.ts",
            "application/typescript; charset=utf-8",
            include_str!("../../clients/js/wsguard.d.ts"),
        ),
    ];
    for (path, content_type, source) in cases {
        let response = server.http.get(server.url(path)).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        let headers = response.headers().clone();
        assert_eq!(headers[CONTENT_TYPE], content_type, "{path}");
        assert_eq!(headers[CACHE_CONTROL], "no-cache", "{path}: revalidated, never stale after an upgrade");
        assert_eq!(headers["access-control-allow-origin"], "*", "{path}: importable from any origin");
        assert!(!headers.contains_key("access-control-allow-credentials"), "{path}");
        for (name, value) in [
            ("x-content-type-options", "nosniff"),
            ("referrer-policy", "no-referrer"),
            ("x-frame-options", "DENY"),
        ] {
            assert_eq!(headers[name], value, "{path}: {name}");
        }
        assert_eq!(response.text().await.unwrap(), source, "{path}: the file as built in");

        // Revalidation: the ETag (strong, or weak as a proxy may make it, or among others) is a 304.
        let etag = headers[ETAG].to_str().unwrap().to_owned();
        assert!(etag.starts_with('"') && etag.len() == 26, "{etag}");
        for tag in [etag.clone(), format!("W/{etag}"), format!("\"other\", {etag}"), "*".to_owned()] {
            let again = server.http.get(server.url(path)).header(IF_NONE_MATCH, &tag).send().await.unwrap();
            assert_eq!(again.status(), StatusCode::NOT_MODIFIED, "{path} {tag}");
            assert_eq!(again.headers()[ETAG], etag.as_str());
            assert!(again.text().await.unwrap().is_empty());
        }
        let changed =
            server.http.get(server.url(path)).header(IF_NONE_MATCH, "\"0000\"").send().await.unwrap();
        assert_eq!(changed.status(), StatusCode::OK, "{path}");

        // From a configured CORS origin, that origin (with credentials) rather than `*`.
        let cors =
            server.http.get(server.url(path)).header("origin", "https://app.example").send().await.unwrap();
        assert_eq!(cors.headers()["access-control-allow-origin"], "https://app.example", "{path}");
        assert_eq!(cors.headers().get_all("access-control-allow-origin").iter().count(), 1, "{path}");
        let other =
            server.http.get(server.url(path)).header("origin", "https://other.example").send().await.unwrap();
        assert_eq!(other.headers()["access-control-allow-origin"], "*", "{path}");
    }
    let js = server.http.get(server.url("/client.js")).send().await.unwrap();
    assert_eq!(js.headers()["x-typescript-types"], "/client.d.ts");
    let post = server.http.post(server.url("/client.js")).send().await.unwrap();
    assert_eq!(post.status(), StatusCode::METHOD_NOT_ALLOWED);
}

/// The modules `/client.js` imports, resolved as a browser does (relative to the importing
/// module's URL), and theirs in turn: every one is served, and nothing else under `/client/`.
#[tokio::test]
async fn the_client_modules_resolve_from_the_served_entry() {
    let server = spawn(&[]).await;
    let entry = reqwest::Url::parse(&server.url("/client.js")).unwrap();
    let mut pending = vec![entry.clone()];
    let mut seen = std::collections::BTreeSet::new();
    while let Some(url) = pending.pop() {
        if !seen.insert(url.path().to_owned()) {
            continue;
        }
        let response = server.http.get(url.clone()).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{url}");
        assert_eq!(response.headers()[CONTENT_TYPE], "text/javascript; charset=utf-8", "{url}");
        let source = response.text().await.unwrap();
        for specifier in static_imports(&source) {
            assert!(specifier.starts_with("./"), "{url}: {specifier} is relative, no bare names");
            pending.push(url.join(&specifier).unwrap());
        }
    }
    let modules = ["client", "socket", "stream", "streams", "position", "options", "errors"]
        .map(|m| format!("/client/{m}.js"));
    let mut expected: std::collections::BTreeSet<String> = modules.into_iter().collect();
    expected.insert("/client.js".to_owned());
    assert_eq!(seen, expected, "every module served is imported, every import is served");

    for unknown in [
        "/client/nope.js",
        "/client/wsguard.js",
        "/client/wsguard.d.ts",
        "/client/..%2FCargo.toml",
        "/client/",
    ] {
        let response = server.http.get(server.url(unknown)).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::NOT_FOUND, "{unknown}");
        assert!(!response.headers().contains_key("access-control-allow-origin"), "{unknown}");
    }
    let post = server.http.post(server.url("/client/client.js")).send().await.unwrap();
    assert_eq!(post.status(), StatusCode::METHOD_NOT_ALLOWED);
}

/// The specifiers of a module's static imports and re-exports (`... from '<specifier>'`).
fn static_imports(source: &str) -> Vec<String> {
    source
        .lines()
        .filter(|line| line.starts_with("import ") || line.starts_with("export "))
        .filter_map(|line| line.split_once(" from '"))
        .map(|(_, rest)| rest.split('\'').next().unwrap().to_owned())
        .collect()
}
