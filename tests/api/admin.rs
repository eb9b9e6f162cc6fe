//! The admin console and API: who gets in (an admin's cookie login from this server's pages, with
//! CSRF on every change; a key with the `admin` scope), a withdrawn role refused at the next
//! request, the page itself. The actions and their audit: `admin_actions.rs`.

use crate::helpers::{spawn, Server};
use reqwest::header::{CONTENT_SECURITY_POLICY, COOKIE, LOCATION, REFERRER_POLICY, SET_COOKIE};
use reqwest::{Method, RequestBuilder, StatusCode};
use serde_json::{json, Value};

/// The admin made for each test, and its password.
pub const ADMIN: (&str, &str) = ("root", "r00t-pass");

/// A browser logged in by the cookie login, calling as the console's page does.
pub struct Console<'a> {
    server: &'a Server,
    /// The `Cookie` header: the access token and its CSRF value.
    cookies: String,
    pub csrf: String,
}

impl<'a> Console<'a> {
    pub async fn login(server: &'a Server, user: &str, password: &str) -> Console<'a> {
        let response = server
            .http
            .post(server.url("/login/cookie"))
            .json(&json!({"username": user, "password": password}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "cookie login of {user}");
        let value = |name: &str| {
            let line = response
                .headers()
                .get_all(SET_COOKIE)
                .iter()
                .map(|v| v.to_str().unwrap())
                .find(|v| v.starts_with(&format!("{name}=")))
                .unwrap_or_else(|| panic!("{name} not set"));
            line.split(';').next().unwrap()[name.len() + 1..].to_owned()
        };
        let (access, csrf) = (value("access_token_cookie"), value("csrf_access_token"));
        Console { server, cookies: format!("access_token_cookie={access}; csrf_access_token={csrf}"), csrf }
    }

    /// The server's own origin, as its pages send it.
    pub fn origin(&self) -> String {
        self.server.base.clone()
    }

    /// A request with the login cookies and `headers`, and nothing else.
    pub fn raw(&self, method: Method, path: &str, headers: &[(&str, &str)]) -> RequestBuilder {
        let mut request =
            self.server.http.request(method, self.server.url(path)).header(COOKIE, &self.cookies);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        request
    }

    /// A request as the console page makes it: the cookies, `Sec-Fetch-Site: same-origin`, and
    /// for a POST its `Origin` and `X-CSRF-Token`.
    pub fn request(&self, method: Method, path: &str) -> RequestBuilder {
        let origin = self.origin();
        let mut headers = vec![("sec-fetch-site", "same-origin")];
        if method == Method::POST {
            headers.extend([("origin", origin.as_str()), ("x-csrf-token", self.csrf.as_str())]);
        }
        self.raw(method, path, &headers)
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.request(Method::GET, path).send().await.unwrap()
    }

    pub async fn post(&self, path: &str, body: Option<Value>) -> reqwest::Response {
        let request = self.request(Method::POST, path);
        match body {
            Some(body) => request.json(&body),
            None => request,
        }
        .send()
        .await
        .unwrap()
    }

    /// GET `path`, expecting 200, as JSON.
    pub async fn read(&self, path: &str) -> Value {
        let response = self.get(path).await;
        assert_eq!(response.status(), StatusCode::OK, "GET {path}");
        response.json().await.unwrap()
    }
}

/// Adds `name` with the admin role from the CLI.
pub async fn add_admin(server: &Server, name: &str, password: &str) {
    let added = server.cli(&["user", "add", name, "--admin"], &format!("{password}\n")).await;
    assert!(added.status.success(), "{}", String::from_utf8_lossy(&added.stderr));
    assert!(String::from_utf8_lossy(&added.stdout).contains("(admin)"));
}

/// A key with `scopes` from the CLI.
pub async fn add_key(server: &Server, name: &str, scopes: &str) -> String {
    let added = server.cli(&["apikey", "add", name, "--scopes", scopes], "").await;
    assert!(added.status.success(), "{}", String::from_utf8_lossy(&added.stderr));
    String::from_utf8(added.stdout).unwrap().trim().to_owned()
}

pub async fn detail(response: reqwest::Response) -> (StatusCode, String) {
    let status = response.status();
    let body: Value = response.json().await.unwrap();
    (status, body["detail"].as_str().unwrap_or_default().to_owned())
}

/// The audit log's actions, newest first.
pub async fn audited(console: &Console<'_>) -> Vec<String> {
    let log = console.read("/api/admin/audit").await;
    log["entries"].as_array().unwrap().iter().map(|e| e["action"].as_str().unwrap().to_owned()).collect()
}

#[tokio::test]
async fn the_page_is_for_admins_only_and_other_users_get_403() {
    let server = spawn(&[]).await;
    add_admin(&server, ADMIN.0, ADMIN.1).await;
    let anonymous = server.http.get(server.url("/admin")).send().await.unwrap();
    assert_eq!(anonymous.status(), StatusCode::SEE_OTHER);
    assert_eq!(anonymous.headers()[LOCATION], "/login?next=/admin");

    let john = Console::login(&server, "johndoe", "secret").await;
    let page = john.get("/admin").await;
    assert_eq!(page.status(), StatusCode::FORBIDDEN);
    assert!(page.text().await.unwrap().contains("Admin role required"));
    for path in ["/api/admin/stats", "/api/admin/audit", "/api/admin/keys"] {
        assert_eq!(detail(john.get(path).await).await, (StatusCode::FORBIDDEN, "Admin role required".into()));
    }
    let publish = john.post("/api/admin/publish", Some(json!({"channel": "general", "data": {"text": "x"}})));
    assert_eq!(detail(publish.await).await, (StatusCode::FORBIDDEN, "Admin role required".into()));

    let root = Console::login(&server, ADMIN.0, ADMIN.1).await;
    let page = root.get("/admin").await;
    assert_eq!(page.status(), StatusCode::OK);
    let csp = page.headers()[CONTENT_SECURITY_POLICY].to_str().unwrap().to_owned();
    assert!(csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"), "{csp}");
    assert_eq!(page.headers()[REFERRER_POLICY], "same-origin", "so that its POSTs carry the real Origin");
    let html = page.text().await.unwrap();
    assert!(html.contains(r#"<script type="module" src="/static/admin.js">"#) && !html.contains("<script>"));
    for asset in ["/static/admin.js", "/static/admin-view.js", "/static/admin.css"] {
        assert_eq!(
            server.http.get(server.url(asset)).send().await.unwrap().status(),
            StatusCode::OK,
            "{asset}"
        );
    }
    // Only the CLI's grant is in the log: reads and refusals write nothing.
    assert_eq!(audited(&root).await, ["admin.grant"]);
}

#[tokio::test]
async fn changes_need_the_csrf_header_and_this_servers_origin() {
    let server = spawn(&[]).await;
    add_admin(&server, ADMIN.0, ADMIN.1).await;
    let root = Console::login(&server, ADMIN.0, ADMIN.1).await;
    let path = "/api/admin/users/johndoe/disconnect";
    let origin = root.origin();
    let (own, csrf) = (("origin", origin.as_str()), ("x-csrf-token", root.csrf.as_str()));
    let same = ("sec-fetch-site", "same-origin");
    let post = |headers: &[(&str, &str)]| root.raw(Method::POST, path, headers).send();

    let no_csrf = post(&[own, same]).await.unwrap();
    assert_eq!(detail(no_csrf).await, (StatusCode::UNAUTHORIZED, "CSRF token missing or incorrect".into()));
    let wrong = post(&[own, same, ("x-csrf-token", "not-the-value")]).await.unwrap();
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);

    let cross = (StatusCode::FORBIDDEN, "Cross-origin request refused".to_owned());
    for headers in [
        [("origin", "https://evil.example"), same, csrf],
        [("origin", "null"), same, csrf],
        [own, ("sec-fetch-site", "cross-site"), csrf],
        [own, ("sec-fetch-site", "same-site"), csrf],
        [("origin", "http://127.0.0.1:1"), ("sec-fetch-site", "same-origin"), csrf],
    ] {
        assert_eq!(detail(post(&headers).await.unwrap()).await, cross, "{headers:?}");
    }
    let reader = root.raw(Method::GET, "/api/admin/stats", &[("origin", "https://evil.example")]);
    assert_eq!(detail(reader.send().await.unwrap()).await, cross, "a read from another site");
    assert_eq!(detail(post(&[csrf]).await.unwrap()).await, cross, "a change without Origin");
    // --allowed-origins and CORS do not open the console to other sites.
    let listed =
        spawn(&["--allowed-origins=https://app.example", "--cors-origins=https://app.example"]).await;
    add_admin(&listed, ADMIN.0, ADMIN.1).await;
    let root_there = Console::login(&listed, ADMIN.0, ADMIN.1).await;
    let app = [("origin", "https://app.example"), ("x-csrf-token", root_there.csrf.as_str())];
    let from_app = root_there.raw(Method::POST, path, &app).send().await.unwrap();
    assert_eq!(detail(from_app).await, cross);

    // None of these was done, or audited.
    assert_eq!(audited(&root).await, ["admin.grant"]);
    let sent = root.request(Method::POST, path).send().await.unwrap();
    assert_eq!(sent.status(), StatusCode::NO_CONTENT, "the same request, as the page sends it");
    assert_eq!(audited(&root).await, ["disconnect", "admin.grant"]);
}

#[tokio::test]
async fn a_withdrawn_role_is_refused_at_the_next_request() {
    let server = spawn(&[]).await;
    add_admin(&server, ADMIN.0, ADMIN.1).await;
    let root = Console::login(&server, ADMIN.0, ADMIN.1).await;
    assert_eq!(root.get("/api/admin/stats").await.status(), StatusCode::OK);

    let off = server.cli(&["user", "admin", ADMIN.0, "--off"], "").await;
    assert!(off.status.success(), "{}", String::from_utf8_lossy(&off.stderr));
    // No wait: the role is read from the database at every request, the token is unchanged.
    assert_eq!(
        detail(root.get("/api/admin/stats").await).await,
        (StatusCode::FORBIDDEN, "Admin role required".into())
    );
    assert_eq!(root.get("/admin").await.status(), StatusCode::FORBIDDEN);
    let publish = root.post("/api/admin/publish", Some(json!({"channel": "general", "data": {"text": "x"}})));
    assert_eq!(publish.await.status(), StatusCode::FORBIDDEN);

    let on = server.cli(&["user", "admin", ADMIN.0, "--on"], "").await;
    assert!(on.status.success());
    assert_eq!(
        root.get("/api/admin/stats").await.status(),
        StatusCode::OK,
        "granted again: the same login works"
    );
    let log = root.read("/api/admin/audit").await;
    let entries: Vec<(&str, &str, &str, &str)> = log["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["action"].as_str().unwrap(),
                e["actor"].as_str().unwrap(),
                e["via"].as_str().unwrap(),
                e["target"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        entries,
        [
            ("admin.grant", "cli", "cli", "root"),
            ("admin.withdraw", "cli", "cli", "root"),
            ("admin.grant", "cli", "cli", "root")
        ]
    );

    // A disabled admin is out too (disabling also ends the login).
    assert!(server.cli(&["user", "disable", ADMIN.0], "").await.status.success());
    assert!(!root.get("/api/admin/stats").await.status().is_success());
    let list = String::from_utf8(server.cli(&["user", "list"], "").await.stdout).unwrap();
    assert!(
        list.contains("root\tdisabled\t\t\tadmin")
            && list.contains("johndoe\tactive\tjohndoe@example.com\tJohn Doe\t-"),
        "{list}"
    );
    let nobody = server.cli(&["user", "admin", "nobody", "--on"], "").await;
    assert!(!nobody.status.success() && String::from_utf8_lossy(&nobody.stderr).contains("no user nobody"));
    let neither = server.cli(&["user", "admin", ADMIN.0], "").await;
    assert!(!neither.status.success(), "--on or --off is required");
}

#[tokio::test]
async fn scripts_need_a_key_with_the_admin_scope_and_never_a_users_token() {
    let server = spawn(&[]).await;
    add_admin(&server, ADMIN.0, ADMIN.1).await;
    let reader = add_key(&server, "reader", "read,publish,disconnect").await;
    let admin = add_key(&server, "ops", "admin").await;
    let get = |key: &str| server.http.get(server.url("/api/admin/nodes")).bearer_auth(key).send();
    assert_eq!(
        detail(get(&reader).await.unwrap()).await,
        (StatusCode::FORBIDDEN, "This API key lacks the admin scope".into())
    );
    let nodes: Value = get(&admin).await.unwrap().json().await.unwrap();
    assert_eq!(nodes["nodes"].as_array().unwrap().len(), 1, "{nodes}");
    assert_eq!(nodes["nodes"][0]["this"], true);
    // An admin key opens the admin API only: the backends' operations keep their own scopes.
    let channels = server.http.get(server.url("/api/channels")).bearer_auth(&admin).send().await.unwrap();
    assert_eq!(channels.status(), StatusCode::FORBIDDEN);

    // An Authorization header is taken for a key, whatever cookies come along.
    let pair = server.login(ADMIN.0, ADMIN.1).await;
    assert_eq!(
        detail(get(&pair.access).await.unwrap()).await,
        (StatusCode::UNAUTHORIZED, "Invalid API key".into())
    );
    let root = Console::login(&server, ADMIN.0, ADMIN.1).await;
    let both = root.request(Method::GET, "/api/admin/nodes").bearer_auth(&reader).send().await.unwrap();
    assert_eq!(both.status(), StatusCode::FORBIDDEN, "the key decides, not the admin's cookie");
    let none = server.http.get(server.url("/api/admin/nodes")).send().await.unwrap();
    assert_eq!(detail(none).await, (StatusCode::UNAUTHORIZED, "Not authenticated".into()));

    // Calls are counted by key name, the console's under its own label.
    assert_eq!(root.get("/api/admin/stats").await.status(), StatusCode::OK);
    let metrics = server.http.get(server.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains(r#"wsguard_api_requests_total{key="ops",status="2xx"} 1"#), "{metrics}");
    assert!(metrics.contains(r#"wsguard_api_requests_total{key="(console)",status="2xx"} 1"#), "{metrics}");
}
