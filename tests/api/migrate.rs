//! `wsguard migrate` and `migrate --check` on SQLite and PostgreSQL: a new database has every
//! migration pending, `migrate` applies them, and a database that a newer version migrated (a
//! migration this binary does not know) is refused by both, and is a problem for the doctor.

use crate::helpers::{service, Schema, BIN, POSTGRES};
use std::path::Path;
use std::process::Stdio;

/// The migrations this binary carries, as `0001_init`: the files of `migrations/sqlite`, in order.
fn migrations() -> Vec<String> {
    let folder = Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations/sqlite");
    let mut names: Vec<String> = std::fs::read_dir(folder)
        .unwrap()
        .filter_map(|file| file.unwrap().file_name().to_str()?.strip_suffix(".sql").map(str::to_owned))
        .collect();
    names.sort();
    names
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
        .output()
        .await
        .unwrap();
    Run {
        success: output.status.success(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// `migrate` (with `--check` when `check`) against `database`, from `dir`.
async fn migrate(dir: &Path, database: &str, check: bool) -> Run {
    let url = format!("--database-url={database}");
    let mut args = vec!["migrate", url.as_str()];
    if check {
        args.push("--check");
    }
    wsguard(dir, &args).await
}

async fn doctor(dir: &Path, database: &str) -> Run {
    wsguard(dir, &["doctor", &format!("--database-url={database}"), "--bind=127.0.0.1:0"]).await
}

/// The whole story on one database, reached at `url`; `execute` runs SQL on it (with `{blob}`
/// standing for a binary value, written differently by each database).
async fn check_and_apply(dir: &Path, url: &str, execute: impl AsyncFn(&str)) {
    let names = migrations();
    let (total, last) = (names.len(), names.last().unwrap());
    let version: i64 = last[..4].parse().unwrap();
    let fresh = migrate(dir, url, true).await;
    assert!(!fresh.success, "a new database has migrations pending:\n{}", fresh.stdout);
    assert_eq!(
        fresh.stdout.lines().filter(|l| l.starts_with("pending  ")).count(),
        total,
        "{}",
        fresh.stdout
    );
    assert!(fresh.stdout.contains("pending  0001_init"), "{}", fresh.stdout);
    assert!(fresh.stderr.contains(&format!("{total} migration(s) pending")), "{}", fresh.stderr);

    let applied = migrate(dir, url, false).await;
    assert!(applied.success, "{}", applied.stderr);
    assert!(applied.stdout.contains(&format!("applied  {last}")), "{}", applied.stdout);
    let checked = migrate(dir, url, true).await;
    assert!(checked.success, "{}", checked.stderr);
    assert_eq!(checked.stdout.lines().filter(|l| l.starts_with("applied  ")).count(), total);
    assert!(checked.stdout.contains("up to date"), "{}", checked.stdout);
    let again = migrate(dir, url, false).await;
    assert!(again.success && !again.stdout.contains("applied  "), "nothing left to apply: {}", again.stdout);
    let healthy = doctor(dir, url).await;
    assert!(
        healthy.stdout.lines().any(|l| l.starts_with("ok ") && l.contains("schema up to date")),
        "{}",
        healthy.stdout
    );

    // The last migration forgotten: pending again, for `--check` (the doctor warns).
    execute(&format!("DELETE FROM _sqlx_migrations WHERE version = {version}")).await;
    let behind = migrate(dir, url, true).await;
    assert!(!behind.success);
    assert!(behind.stdout.contains(&format!("pending  {last}")), "{}", behind.stdout);
    let warned = doctor(dir, url).await;
    let line = warned.stdout.lines().find(|l| l.split_whitespace().nth(1) == Some("database")).unwrap();
    assert!(
        line.starts_with("warning ") && line.contains(last.as_str()) && line.contains("wsguard migrate"),
        "{line}"
    );

    // A migration of a newer version: neither command goes on, and the doctor says why.
    let columns = "version, description, success, checksum, execution_time";
    execute(&format!(
        "INSERT INTO _sqlx_migrations ({columns}) VALUES (9999, 'from the future', TRUE, {{blob}}, 0)"
    ))
    .await;
    for check in [true, false] {
        let refused = migrate(dir, url, check).await;
        assert!(!refused.success, "check: {check}");
        assert!(
            refused.stderr.contains("9999_from_the_future") && refused.stderr.contains("newer version"),
            "{}",
            refused.stderr
        );
    }
    let sick = doctor(dir, url).await;
    assert!(!sick.success);
    let line = sick.stdout.lines().find(|l| l.split_whitespace().nth(1) == Some("database")).unwrap();
    assert!(line.starts_with("problem ") && line.contains("newer version"), "{line}");
}

#[tokio::test]
async fn migrate_check_lists_and_migrate_applies_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("wsguard-data/wsguard.db").display());
    let execute = async |sql: &str| {
        use sqlx::Connection;
        let mut db = sqlx::SqliteConnection::connect(&url).await.unwrap();
        sqlx::query(&sql.replace("{blob}", "X'00'")).execute(&mut db).await.unwrap();
    };
    check_and_apply(dir.path(), &url, execute).await;
}

#[tokio::test]
async fn migrate_check_lists_and_migrate_applies_on_postgresql() {
    if !service("PostgreSQL", POSTGRES) {
        return;
    }
    let schema = Schema::create().await;
    let dir = tempfile::tempdir().unwrap();
    let url = schema.url();
    let execute = async |sql: &str| {
        use sqlx::Connection;
        let mut db = sqlx::PgConnection::connect(&url).await.unwrap();
        sqlx::query(&sql.replace("{blob}", "'\\x00'::bytea")).execute(&mut db).await.unwrap();
    };
    check_and_apply(dir.path(), &url, execute).await;
    schema.drop().await;
}
