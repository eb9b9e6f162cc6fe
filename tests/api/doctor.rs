//! `wsguard doctor` on real files, a real database (SQLite; PostgreSQL and Redis when they run)
//! and real HTTP endpoints: a good configuration passes, and each fault alone is a problem line
//! with its fix and exit status 1. No secret appears in what it prints.

use crate::helpers::{service, Schema, BIN, POSTGRES};
use axum::routing::get;
use axum::Json;
use serde_json::json;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use tempfile::TempDir;

/// A secret of the right length, which must never be printed.
const SECRET: &str = "3f6c0b1e9d2a4c5b8e7f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5";
const REDIS: &str = "127.0.0.1:6379";

/// A folder with a configuration file, its secret files, and the data folder beside them.
struct Setup {
    dir: TempDir,
}

impl Setup {
    fn new() -> Setup {
        let dir = tempfile::tempdir().unwrap();
        for name in ["jwt.secret", "app.secret", "hooks.secret"] {
            private_file(dir.path(), name, SECRET);
        }
        Setup { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Writes `wsguard.toml`: `top` keys (the HS256 secret file unless they name one), then
    /// `tables`. Relative paths are the file's folder's.
    fn config(&self, top: &str, tables: &str) -> String {
        let path = self.path("wsguard.toml");
        let secret = if top.contains("jwt_secret_file") { "" } else { "jwt_secret_file = \"jwt.secret\"\n" };
        std::fs::write(&path, format!("data_dir = \"data\"\n{secret}{top}\n{tables}")).unwrap();
        format!("--config={}", path.display())
    }
}

fn private_file(dir: &Path, name: &str, contents: &str) -> PathBuf {
    let path = dir.join(name);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(&path).unwrap().write_all(contents.as_bytes()).unwrap();
    path
}

/// An application answering HTTP on a port of its own: its JWKS at `/jwks` (one Ed25519 key), 404
/// elsewhere (an answer all the same).
async fn application() -> String {
    let jwks = json!({"keys": [{"kty": "OKP", "crv": "Ed25519", "kid": "k1",
        "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}]});
    let app = axum::Router::new().route("/jwks", get(move || async move { Json(jwks) }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    base
}

/// The tables of a configuration using every endpoint the doctor calls, at `base`.
fn tables(base: &str) -> String {
    format!(
        r#"
[[trusted_issuers]]
secret_file = "app.secret"

[[trusted_issuers]]
issuer = "https://id.example/"
jwks_url = "{base}/jwks"

[proxy]
connect = "{base}/rt/connect"

[[namespaces]]
name = "doc"
subscribe = "proxy"
subscribe_proxy = "{base}/rt/subscribe"

[webhooks]
url = "{base}/rt/hooks"
secret_file = "hooks.secret"
"#
    )
}

struct Run {
    success: bool,
    stdout: String,
    stderr: String,
}

async fn wsguard(dir: &Path, args: &[&str]) -> Run {
    let output = tokio::process::Command::new(BIN)
        .args(args)
        .env_remove("WSGUARD_CONFIG")
        .current_dir(dir)
        .stdin(Stdio::null())
        .output();
    let output = tokio::time::timeout(std::time::Duration::from_secs(20), output)
        .await
        .expect("wsguard took over 20 s")
        .unwrap();
    Run {
        success: output.status.success(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

async fn doctor(setup: &Setup, config: &str, extra: &[&str]) -> Run {
    let mut args = vec!["doctor", config, "--bind=127.0.0.1:0"];
    args.extend(extra);
    let run = wsguard(setup.dir.path(), &args).await;
    assert!(
        !run.stdout.contains(SECRET) && !run.stderr.contains(SECRET),
        "a secret printed:\n{}",
        run.stdout
    );
    run
}

/// The line of `stdout` about `subject`.
fn line<'a>(stdout: &'a str, subject: &str) -> &'a str {
    stdout
        .lines()
        .find(|l| l.contains(subject))
        .unwrap_or_else(|| panic!("no line about {subject}:\n{stdout}"))
}

fn assert_passes(run: &Run, subjects: &[&str]) {
    assert!(run.success, "{}\n{}", run.stdout, run.stderr);
    assert!(!run.stdout.lines().any(|l| l.starts_with("problem")), "{}", run.stdout);
    for subject in subjects {
        assert!(line(&run.stdout, subject).starts_with("ok "), "{subject}:\n{}", run.stdout);
    }
}

const SUBJECTS: [&str; 9] = [
    "configuration",
    "data folder",
    "HS256 secret",
    "trusted issuer (no iss) secret",
    "trusted issuer https://id.example/ keys",
    "connect proxy",
    "namespace doc subscribe proxy",
    "webhooks http",
    "listen address",
];

#[tokio::test]
async fn a_good_configuration_passes_on_sqlite() {
    let setup = Setup::new();
    let base = application().await;
    let config = setup.config("", &tables(&base));
    let run = doctor(&setup, &config, &[]).await;
    assert_passes(&run, &SUBJECTS);
    assert!(line(&run.stdout, "database sqlite://").contains("serve creates it"), "{}", run.stdout);
    assert!(!setup.path("data").exists(), "the doctor creates nothing");
}

#[tokio::test]
async fn a_good_configuration_passes_on_postgresql_and_redis() {
    if !service("PostgreSQL", POSTGRES) || !service("Redis", REDIS) {
        return;
    }
    let schema = Schema::create().await;
    let setup = Setup::new();
    let base = application().await;
    let top = format!("database_url = \"{}\"\nbroker_url = \"redis://{REDIS}\"", schema.url());
    let config = setup.config(&top, &tables(&base));
    let database = format!("--database-url={}", schema.url());
    assert!(wsguard(setup.dir.path(), &["migrate", &database]).await.success);
    let run = doctor(&setup, &config, &[]).await;
    assert_passes(&run, &SUBJECTS);
    assert_passes(&run, &["database postgres://", "broker redis://"]);
    assert!(line(&run.stdout, "database").contains("up to date"), "{}", run.stdout);
    schema.drop().await;
}

#[tokio::test]
async fn each_fault_alone_is_a_problem_with_its_fix() {
    let setup = Setup::new();
    let base = application().await;
    let good = tables(&base);
    let faults: [(&str, String, &str, &str); 5] = [
        ("jwt_secret_file = \"missing.secret\"", good.clone(), "HS256 secret", "no such file"),
        ("", good.clone(), "trusted issuer (no iss) secret", "chmod 600"),
        (
            "broker_url = \"redis://:hunter2@127.0.0.1:1\"",
            good.clone(),
            "broker redis://",
            "is Redis running",
        ),
        (
            "",
            good.replace(&format!("{base}/rt/connect"), "http://127.0.0.1:1/rt/connect"),
            "connect proxy",
            "is it running",
        ),
        (
            "",
            good.replace(&format!("{base}/jwks"), "http://127.0.0.1:1/jwks"),
            "keys http://127.0.0.1:1",
            "fetch failed",
        ),
    ];
    for (top, tables, subject, fix) in faults {
        // The second case: the issuer's secret open to everyone.
        let mode = if subject.contains("(no iss)") { 0o644 } else { 0o600 };
        set_mode(&setup.path("app.secret"), mode);
        let config = setup.config(top, &tables);
        let run = doctor(&setup, &config, &[]).await;
        assert!(!run.success, "{subject}: exit status 0\n{}", run.stdout);
        let found = line(&run.stdout, subject);
        assert!(found.starts_with("problem ") && found.contains(fix), "{subject}: {found}\n{}", run.stdout);
        assert_eq!(run.stdout.matches("problem ").count(), 1, "{subject} alone:\n{}", run.stdout);
        assert!(!run.stdout.contains("hunter2") && !run.stderr.contains("hunter2"), "a password printed");
        assert!(run.stderr.contains("1 problem(s)"), "{}", run.stderr);
    }
    set_mode(&setup.path("app.secret"), 0o600);

    // Another process listening on the address.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let bind = format!("--bind={}", taken.local_addr().unwrap());
    let config = setup.config("", &good);
    let run = wsguard(setup.dir.path(), &["doctor", &config, &bind]).await;
    assert!(!run.success);
    assert!(line(&run.stdout, "listen address").contains("already in use"), "{}", run.stdout);
}

fn set_mode(path: &Path, mode: u32) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }
}
