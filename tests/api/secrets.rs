//! Secrets and private files: published example secrets refused, weak ones warned about, secret
//! and key files open to others refused, the database private whatever its folder.

use crate::helpers::{serve_in, serve_refused, spawn};
use reqwest::StatusCode;
use std::path::{Path, PathBuf};

/// `SECRET_KEY` of FastAPI's "OAuth2 with Password (and hashing), Bearer with JWT tokens".
const FASTAPI_TUTORIAL_KEY: &str = "09d25e094faa6ca2556c818166b7a9563b93f7099f6f0f4caa6cf63b88e8d3e7";

/// Writes a secret file as an operator should: readable by its owner only.
fn private_file(dir: &Path, name: &str, contents: &str) -> PathBuf {
    let path = dir.join(name);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    std::io::Write::write_all(&mut options.open(&path).unwrap(), contents.as_bytes()).unwrap();
    path
}

#[cfg(unix)]
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())).permissions().mode() & 0o777
}

#[cfg(unix)]
fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

#[tokio::test]
async fn the_fastapi_tutorial_secret_is_refused_at_start() {
    let data = tempfile::tempdir().unwrap();
    // As copied from the tutorial into a file: with a newline and stray spaces.
    let file = private_file(data.path(), "jwt-secret", &format!("  {FASTAPI_TUTORIAL_KEY}  \n"));
    let (status, stderr) =
        serve_refused(data.path(), &[&format!("--jwt-secret-file={}", file.display())]).await;
    assert!(!status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "{} is a publicly known example secret; generate one with e.g. `openssl rand -hex 32`",
            file.display()
        )),
        "{stderr}"
    );
    assert!(!stderr.contains(FASTAPI_TUTORIAL_KEY), "the secret is never shown: {stderr}");
}

#[tokio::test]
async fn a_weak_secret_starts_with_a_warning_that_never_shows_it() {
    let dir = tempfile::tempdir().unwrap();
    let weak = "passwordpasswordpasswordpassword";
    let file = private_file(dir.path(), "jwt-secret", &format!("{weak}\n"));
    let server = spawn(&[&format!("--jwt-secret-file={}", file.display())]).await;
    let pair = server.login("johndoe", "secret").await;
    assert_eq!(server.me(&pair.access).await.status(), StatusCode::OK);
    // Signed with that secret: a warning, not a refusal.
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
    validation.validate_aud = false;
    jsonwebtoken::decode::<serde_json::Value>(
        &pair.access,
        &jsonwebtoken::DecodingKey::from_secret(weak.as_bytes()),
        &validation,
    )
    .expect("signed with the configured secret");
    let log = server.log();
    assert!(log.contains("the HS256 secret looks weak"), "{log}");
    assert!(log.contains("it is one short pattern repeated"), "{log}");
    assert!(!log.contains(weak), "the secret is never logged: {log}");
}

#[cfg(unix)]
#[tokio::test]
async fn secret_and_key_files_open_to_others_stop_the_start() {
    let expect_refused = |stderr: &str, file: &Path| {
        assert!(
            stderr.contains(&format!("{} can be read or written by group or others", file.display())),
            "{stderr}"
        );
        assert!(stderr.contains(&format!("`chmod 600 {}`", file.display())), "{stderr}");
    };

    // --jwt-secret-file
    let dir = tempfile::tempdir().unwrap();
    let secret = "3f6c1e0b9a8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a29180706f5e4d3c2b1a090";
    let file = private_file(dir.path(), "jwt-secret", secret);
    set_mode(&file, 0o644);
    let (status, stderr) =
        serve_refused(dir.path(), &[&format!("--jwt-secret-file={}", file.display())]).await;
    assert!(!status.success());
    expect_refused(&stderr, &file);
    assert!(!stderr.contains(secret), "{stderr}");

    // The generated secret in the data folder.
    let server = spawn(&[]).await;
    let data = server.data.clone();
    server.kill().await;
    let generated = data.path().join("jwt-secret.key");
    set_mode(&generated, 0o640);
    let (status, stderr) = serve_refused(data.path(), &[]).await;
    assert!(!status.success());
    expect_refused(&stderr, &generated);

    // A signing key; once private again the server starts.
    let server = spawn(&["--jwt-alg=EdDSA"]).await;
    let data = server.data.clone();
    server.kill().await;
    let key = std::fs::read_dir(data.path().join("keys"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .find(|path| path.extension().is_some_and(|e| e == "pem"))
        .expect("a key file");
    set_mode(&key, 0o604);
    let (status, stderr) = serve_refused(data.path(), &["--jwt-alg=EdDSA"]).await;
    assert!(!status.success());
    expect_refused(&stderr, &key);
    set_mode(&key, 0o600);
    let server = serve_in(data, &["--jwt-alg=EdDSA"]).await;
    server.login("johndoe", "secret").await;
}

#[cfg(unix)]
#[tokio::test]
async fn the_database_is_private_in_a_folder_open_to_others() {
    let data = std::sync::Arc::new(tempfile::tempdir().unwrap());
    set_mode(data.path(), 0o755);
    // Under the usual umask, which would give SQLite's files 0644.
    let mut demo = tokio::process::Command::new(crate::helpers::BIN);
    demo.arg("demo").arg(format!("--data-dir={}", data.path().display())).env_remove("WSGUARD_CONFIG");
    unsafe {
        demo.pre_exec(|| {
            libc::umask(0o022);
            Ok(())
        });
    }
    let demo = demo.output().await.unwrap();
    assert!(demo.status.success(), "{}", String::from_utf8_lossy(&demo.stderr));
    let db = data.path().join("wsguard.db");
    let files = [db.clone(), data.path().join("wsguard.db-wal"), data.path().join("wsguard.db-shm")];
    assert_eq!(mode(&db), 0o600);

    let server = serve_in(data.clone(), &[]).await;
    server.login("johndoe", "secret").await;
    for file in &files {
        assert_eq!(mode(file), 0o600, "{}", file.display());
    }
    assert!(server.log().contains("the data folder is open to others"), "{}", server.log());

    // A database left 0644 (by an older version, with its companions after a crash): tightened.
    for file in &files {
        set_mode(file, 0o644);
    }
    let server = server.restart().await;
    for file in &files {
        assert_eq!(mode(file), 0o600, "{}", file.display());
    }
    let log = server.log();
    let tightened = log.lines().filter(|line| line.contains("tightened to 0600")).collect::<Vec<_>>();
    assert!(
        tightened.iter().any(|line| line.contains(&db.display().to_string()) && line.contains("644")),
        "{log}"
    );
    server.login("janedoe", "secret2").await;
}
