//! SQLite's publication writer commits inline, on the runtime: what could block must not block it.
//! A write lock held by another connection is waited for off the runtime, and the log is
//! checkpointed off the writer's path, yet still checkpointed.

use std::time::{Duration, Instant};

use sqlx::{Connection, SqliteConnection};
use wsguard::store::{self, Retention};

/// Another connection holds the write lock (the CLI, another node): a publication waits for it
/// without stopping the runtime (this one has a single thread), then is stored.
#[tokio::test]
async fn a_write_lock_held_elsewhere_is_waited_for_off_the_runtime() {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}", dir.path().join("t.db").display());
    let store = store::connect(&url).await.expect("open SQLite store");
    store.publish("held", None, "1", 1, Retention::ALL).await.unwrap();
    let mut holder = SqliteConnection::connect(&url).await.unwrap();
    sqlx::raw_sql("BEGIN IMMEDIATE").execute(&mut holder).await.unwrap();

    let publishing = tokio::spawn({
        let store = store.clone();
        async move { store.publish("held", None, "2", 1, Retention::ALL).await }
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
    let (next, _) = store.publish("held", None, "3", 1, Retention::ALL).await.unwrap();
    assert_eq!(next.offset, 3);
}

/// Thousands of commits, one at a time: the log is checkpointed as they go, so it does not grow
/// with them (each commit writes a few 4 KiB pages: unchecked, this log passes 100 MB).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_log_is_checkpointed_as_publications_commit() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("t.db");
    let store = store::connect(&format!("sqlite://{}", file.display())).await.expect("open SQLite store");
    let data = format!("\"{}\"", "x".repeat(1000));
    for i in 0..5000 {
        let channel = format!("grow-{}", i % 50);
        store.publish(&channel, None, &data, 1, Retention::ALL).await.unwrap();
    }
    let wal = std::fs::metadata(dir.path().join("t.db-wal")).expect("the log").len();
    assert!(wal < 32 << 20, "the log grew to {wal} bytes");
}

/// In memory, the writer's connection and the pool's share one database.
#[tokio::test]
async fn in_memory_the_writer_and_the_pool_share_the_database() {
    let store = store::connect("sqlite::memory:").await.expect("open SQLite store in memory");
    for data in ["1", "2"] {
        store.publish("kept", None, data, 1, Retention::ALL).await.unwrap();
    }
    let (page, position) = store.publications("kept", store::Range::After(0), 10, 0).await.unwrap();
    assert_eq!(page.iter().map(|p| p.data.as_str()).collect::<Vec<_>>(), ["1", "2"]);
    assert_eq!(position.unwrap().offset, 2);
}
