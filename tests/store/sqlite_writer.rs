//! SQLite's publication writer commits inline, on the runtime: what could block must not block it.
//! A write lock held by another connection is waited for off the runtime, and the log is
//! checkpointed off the writer's path, yet still checkpointed.

use std::time::{Duration, Instant};

use sqlx::{Connection, SqliteConnection};
use wsguard::store::{self, NewPublication, Range};

use crate::publications::new_publication;

/// Another connection holds the write lock (the CLI, another node): a publication waits for it
/// without stopping the runtime (this one has a single thread), then is stored.
#[tokio::test]
async fn a_write_lock_held_elsewhere_is_waited_for_off_the_runtime() {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}", dir.path().join("t.db").display());
    let store = store::connect(&url).await.expect("open SQLite store");
    store.publish(new_publication("held", "1")).await.unwrap();
    let mut holder = SqliteConnection::connect(&url).await.unwrap();
    sqlx::raw_sql("BEGIN IMMEDIATE").execute(&mut holder).await.unwrap();

    let publishing = tokio::spawn({
        let store = store.clone();
        async move { store.publish(new_publication("held", "2")).await }
    });
    let started = Instant::now();
    // A check that nothing happens (the publication waits) and that the runtime runs meanwhile:
    // only time can show either.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(started.elapsed() < Duration::from_millis(1000), "the runtime was blocked");
    assert!(!publishing.is_finished(), "published through a held write lock");

    sqlx::raw_sql("COMMIT").execute(&mut holder).await.unwrap();
    let (publication, _) = publishing.await.unwrap().expect("stored once the lock was free");
    assert_eq!(publication.offset, 2);
    // The writer is back on its inline path.
    let (next, _) = store.publish(new_publication("held", "3")).await.unwrap();
    assert_eq!(next.offset, 3);
}

/// Thousands of commits, one at a time: the log is checkpointed as they go, so it does not grow
/// with them (each commit writes a few 4 KiB pages: unchecked, this log passes 200 MB). The bound
/// is the writer's worst case on a machine too busy to checkpoint as fast as it commits: the log
/// restarts past 16 MiB, and up to 1,024 more commits go on while a slow checkpoint runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_log_is_checkpointed_as_publications_commit() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("t.db");
    let store = store::connect(&format!("sqlite://{}", file.display())).await.expect("open SQLite store");
    let data = format!("\"{}\"", "x".repeat(1000));
    for i in 0..10_000 {
        let channel = format!("grow-{}", i % 50);
        store.publish(new_publication(&channel, &data)).await.unwrap();
    }
    let wal = std::fs::metadata(dir.path().join("t.db-wal")).expect("the log").len();
    assert!(wal < 64 << 20, "the log grew to {wal} bytes");
}

/// In memory, the writer's connection and the pool's share one database.
#[tokio::test]
async fn in_memory_the_writer_and_the_pool_share_the_database() {
    let store = store::connect("sqlite::memory:").await.expect("open SQLite store in memory");
    for data in ["1", "2"] {
        store.publish(new_publication("kept", data)).await.unwrap();
    }
    let (page, position) = store.publications("kept", store::Range::After(0), 10, 0).await.unwrap();
    assert_eq!(page.iter().map(|p| p.data.as_str()).collect::<Vec<_>>(), ["1", "2"]);
    assert_eq!(position.unwrap().offset, 2);
}

/// A database made before migration 0007 (rowid tables) keeps its channels and publications when
/// they move to key-ordered tables: the numbering goes on in the same epoch, and the expiry sweep
/// still finds what expires.
#[tokio::test]
async fn history_survives_the_move_to_key_ordered_tables() {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("t.db").display());
    let mut before = sqlx::migrate!("./migrations/sqlite");
    let upto6: Vec<_> = before.migrations.iter().filter(|m| m.version <= 6).cloned().collect();
    assert_eq!(upto6.len(), 6, "the migrations before the move");
    before.migrations = upto6.into();
    let mut old = SqliteConnection::connect(&url).await.unwrap();
    before.run(&mut old).await.unwrap();
    sqlx::raw_sql(
        "INSERT INTO channels VALUES ('kept', 'e1', 2, 9223372036854775807), ('brief', 'e2', 1, 5000);
         INSERT INTO publications VALUES ('kept', 1, 'alice', '{\"n\":1}', 10, 9223372036854775807),
             ('kept', 2, NULL, '{\"n\":2}', 20, 9223372036854775807), ('brief', 1, NULL, '{}', 30, 5000);",
    )
    .execute(&mut old)
    .await
    .unwrap();
    old.close().await.unwrap();

    let store = store::connect(&url).await.expect("open and migrate");
    let (kept, position) = store.publications("kept", Range::After(0), 10, 0).await.unwrap();
    assert_eq!(
        kept.iter().map(|p| (p.offset, p.data.as_str())).collect::<Vec<_>>(),
        [(1, r#"{"n":1}"#), (2, r#"{"n":2}"#)]
    );
    assert_eq!(kept[0].sender.as_deref(), Some("alice"));
    assert_eq!(position.unwrap().epoch, "e1");
    let (next, at) =
        store.publish(NewPublication { created_ms: 40, ..new_publication("kept", "3") }).await.unwrap();
    assert_eq!((next.offset, at.epoch.as_str()), (3, "e1"), "numbering goes on in its epoch");
    // Seconds: 5 s is past `brief`'s expiry (5,000 ms), and nothing of `kept` expires.
    assert_eq!(store.prune(6).await.unwrap().publications, 1);
    assert_eq!(store.publications("kept", Range::After(0), 10, 0).await.unwrap().0.len(), 3);
    let mut check = SqliteConnection::connect(&url).await.unwrap();
    let layouts: Vec<(String,)> =
        sqlx::query_as("SELECT sql FROM sqlite_master WHERE name IN ('channels', 'publications')")
            .fetch_all(&mut check)
            .await
            .unwrap();
    assert!(layouts.len() == 2 && layouts.iter().all(|(sql,)| sql.ends_with("WITHOUT ROWID")), "{layouts:?}");
}
