//! The command line, restarts, and the bcrypt-to-argon2id migration.

use crate::helpers::{eventually, spawn};
use reqwest::StatusCode;
use serde_json::{json, Value};

async fn password_hash(data: &std::path::Path, username: &str) -> String {
    use sqlx::Connection;
    let url = format!("sqlite://{}", data.join("wsguard.db").display());
    let mut db = sqlx::SqliteConnection::connect(&url).await.unwrap();
    sqlx::query_scalar("SELECT password_hash FROM users WHERE username = ?")
        .bind(username)
        .fetch_one(&mut db)
        .await
        .unwrap()
}

#[tokio::test]
async fn users_are_managed_from_the_command_line() {
    let server = spawn(&[]).await;
    let added = server
        .cli(&["user", "add", "carol", "--email", "carol@example.com", "--full-name", "Carol"], "hunter22\n")
        .await;
    assert!(added.status.success(), "{}", String::from_utf8_lossy(&added.stderr));
    let pair = server.login("carol", "hunter22").await;
    let me: Value = server.me(&pair.access).await.json().await.unwrap();
    assert_eq!(
        me,
        json!({"username": "carol", "email": "carol@example.com", "full_name": "Carol", "disabled": false})
    );
    assert!(password_hash(&server.data_dir(), "carol").await.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));

    let again = server.cli(&["user", "add", "carol"], "x\n").await;
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already exists"));
    for bad in ["bad name", ""] {
        let refused = server.cli(&["user", "add", bad], "x\n").await;
        assert!(!refused.status.success(), "{bad:?}");
    }
    let no_password = server.cli(&["user", "add", "dave"], "").await;
    assert!(!no_password.status.success());
    assert!(String::from_utf8_lossy(&no_password.stderr).contains("password must not be empty"));
    let argv_password = server.cli(&["user", "add", "dave", "--password", "x"], "").await;
    assert!(!argv_password.status.success(), "passwords are never taken from argv");

    let list = server.cli(&["user", "list"], "").await;
    let list = String::from_utf8(list.stdout).unwrap();
    assert!(list.contains("carol\tactive\tcarol@example.com\tCarol"), "{list}");
    assert!(list.contains("alice\tdisabled"), "{list}");
    assert!(!list.contains('$'), "no hashes in listings: {list}");

    assert!(server.cli(&["user", "disable", "carol"], "").await.status.success());
    let refused = server.token_form(&[("username", "carol"), ("password", "hunter22")]).await;
    assert_eq!(refused.status(), StatusCode::BAD_REQUEST);
    assert!(server.cli(&["user", "enable", "carol"], "").await.status.success());
    // Disabling ended the old login; this node learns of it from the revocation log (250 ms).
    eventually("the old login refused", std::time::Duration::from_secs(1), async || {
        match server.me(&pair.access).await.status() {
            StatusCode::UNAUTHORIZED => Ok(()),
            status => Err(status),
        }
    })
    .await;
    server.login("carol", "hunter22").await;

    assert!(server.cli(&["user", "passwd", "carol"], "n3w-pass\n").await.status.success());
    server.login("carol", "n3w-pass").await;
    assert!(!server.cli(&["user", "disable", "nobody"], "").await.status.success());
}

#[tokio::test]
async fn users_keys_and_tokens_survive_a_restart() {
    let server = spawn(&[]).await;
    let pair = server.login("johndoe", "secret").await;
    let key = std::fs::read(server.data_dir().join("jwt-secret.key")).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(server.data_dir().join("jwt-secret.key")).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let server = server.restart().await;
    assert_eq!(std::fs::read(server.data_dir().join("jwt-secret.key")).unwrap(), key);
    assert_eq!(server.me(&pair.access).await.status(), StatusCode::OK);
    assert_eq!(server.refresh(&pair.refresh).await.status(), StatusCode::OK);
    server.login("janedoe", "secret2").await;
}

/// passlib's bcrypt hash of "secret", as the FastAPI tutorial's user table holds it.
const PASSLIB_SECRET: &str = "$2b$12$EixZaYVK1fsbw1ZfbX3OXePaWxn96p36WQoeG6Lruj3vjPGga31lW";

#[tokio::test]
async fn bcrypt_hashes_verify_and_become_argon2id() {
    let server = spawn(&[]).await;
    let lines = format!(
        "{}\n{}\n",
        json!({"username": "legacy", "hashed_password": PASSLIB_SECRET, "email": "legacy@example.com", "full_name": "Legacy", "disabled": false}),
        json!({"username": "legacy2", "hashed_password": bcrypt::hash("other", 4).unwrap()}),
    );
    let imported = server.cli(&["user", "import"], &lines).await;
    assert!(imported.status.success(), "{}", String::from_utf8_lossy(&imported.stderr));

    let wrong = server.token_form(&[("username", "legacy"), ("password", "nope")]).await;
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        password_hash(&server.data_dir(), "legacy").await,
        PASSLIB_SECRET,
        "a failed login changes nothing"
    );

    server.login("legacy", "secret").await;
    assert!(password_hash(&server.data_dir(), "legacy").await.starts_with("$argon2id$"));
    server.login("legacy", "secret").await;
    server.login("legacy2", "other").await;

    let bad =
        server.cli(&["user", "import"], "{\"username\": \"x\", \"hashed_password\": \"plain\"}\n").await;
    assert!(!bad.status.success());
}

#[tokio::test]
async fn a_config_file_is_read_and_flags_override_it() {
    let data = tempfile::tempdir().unwrap();
    let config = data.path().join("custom.toml");
    std::fs::write(&config, "access_ttl = \"2m\"\nissuer = \"from-file\"\n").unwrap();
    let body = login_under(data.path(), &config, &["--issuer=from-flag"], &[]).await;
    assert_eq!(body["expires_in"], 120, "access_ttl from the file");
    assert_eq!(crate::helpers::claims(body["access_token"].as_str().unwrap())["iss"], "from-flag");

    std::fs::write(&config, "acess_ttl = \"2m\"\n").unwrap();
    let typo =
        crate::helpers::cli(data.path(), &["--config", config.to_str().unwrap(), "user", "list"], "").await;
    assert!(!typo.status.success(), "unknown keys are refused");
}

/// A login's token response from `wsguard serve` started with the config file `config`, `args`
/// and the environment `envs`, over a fresh data folder `data` with the demo users.
async fn login_under(
    data: &std::path::Path,
    config: &std::path::Path,
    args: &[&str],
    envs: &[(&str, &str)],
) -> Value {
    assert!(crate::helpers::cli(data, &["demo"], "").await.status.success());
    let mut child = tokio::process::Command::new(crate::helpers::BIN)
        .args(["--config", config.to_str().unwrap(), "serve", "--bind=127.0.0.1:0"])
        .args(args)
        .arg(format!("--data-dir={}", data.display()))
        .envs(envs.iter().copied())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    use tokio::io::AsyncBufReadExt;
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let base = lines.next_line().await.unwrap().unwrap().replace("wsguard listening on ", "");
    reqwest::Client::new()
        .post(format!("{base}/token"))
        .form(&[("username", "johndoe"), ("password", "secret")])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test]
async fn environment_variables_sit_between_the_file_and_the_flags() {
    let data = tempfile::tempdir().unwrap();
    let config = data.path().join("wsguard.toml");
    std::fs::write(&config, "access_ttl = \"2m\"\nissuer = \"from-file\"\naudience = \"from-file\"\n")
        .unwrap();
    let envs = [("WSGUARD_ISSUER", "from-env"), ("WSGUARD_AUDIENCE", "from-env")];
    let body = login_under(data.path(), &config, &["--audience=from-flag"], &envs).await;
    assert_eq!(body["expires_in"], 120, "access_ttl from the file");
    let claims = crate::helpers::claims(body["access_token"].as_str().unwrap());
    assert_eq!(claims["iss"], "from-env", "the environment wins over the file");
    assert_eq!(claims["aud"], "from-flag", "the flag wins over the environment");
}

#[tokio::test]
async fn the_readme_lists_every_setting_with_its_flag_and_variable() {
    let help = std::process::Command::new(crate::helpers::BIN).args(["serve", "--help"]).output().unwrap();
    // Joined into one line: clap wraps long help.
    let help = String::from_utf8(help.stdout).unwrap().split_whitespace().collect::<Vec<_>>().join(" ");
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let start = readme.find("## Configuration").expect("a Configuration section");
    let rows: Vec<&str> = readme[start..].lines().filter(|l| l.starts_with("| `--")).collect();
    let words = |text: &str, prefix: &str| -> Vec<String> {
        text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_'))
            .filter(|w| w.starts_with(prefix) && w.len() > prefix.len())
            .map(str::to_owned)
            .collect()
    };
    let (mut documented, mut variables) = (Vec::new(), Vec::new());
    for row in &rows {
        let cells: Vec<&str> = row.split('|').collect();
        documented.extend(words(cells[1], "--"));
        variables.extend(words(cells[2], "WSGUARD_"));
    }
    for flag in &documented {
        assert!(
            help.contains(&format!("{flag} ")) || help.contains(&format!("{flag}=")),
            "{flag} is not a flag"
        );
    }
    for variable in &variables {
        assert!(
            help.contains(&format!("env: {variable}=")) || help.contains(&format!("env: {variable}]")),
            "{variable}"
        );
    }
    for flag in words(&help, "--") {
        if !["--help", "--config"].contains(&flag.as_str()) {
            assert!(documented.contains(&flag), "{flag} is missing from the README's configuration table");
        }
    }
}

#[tokio::test]
async fn serve_on_a_taken_address_names_it_and_the_flag() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = taken.local_addr().unwrap().to_string();
    let data = tempfile::tempdir().unwrap();
    let output = tokio::process::Command::new(crate::helpers::BIN)
        .args(["serve", &format!("--bind={address}"), &format!("--data-dir={}", data.path().display())])
        .env_remove("WSGUARD_CONFIG")
        .current_dir(data.path())
        .stdin(std::process::Stdio::null())
        .output();
    let output = tokio::time::timeout(std::time::Duration::from_secs(20), output).await.unwrap().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!("cannot listen on {address}: the address is already in use")),
        "{stderr}"
    );
    assert!(stderr.contains("--bind"), "{stderr}");
}
