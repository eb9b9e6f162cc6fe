//! Group commit: concurrent publications share transactions. What must hold whatever the batches:
//! an ack means stored, each channel numbered 1, 2, 3… in queue order and readable without a gap
//! at any moment, retention as for one publication at a time, a failed batch leaves nothing, and
//! publishers that stop waiting break nothing.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::join_all;
use sqlx::Connection;
use wsguard::store::{self, DynStore, NewPublication, PostgresStore, Range, Retention, StoreError};

use crate::publications::new_publication;
use crate::{drop_schema, fresh_schema, postgres_url};

/// Every stored publication of `channel`, by offset (data).
async fn stored(store: &DynStore, channel: &str) -> BTreeMap<i64, String> {
    let (page, _) = store.publications(channel, Range::After(0), 100_000, 0).await.unwrap();
    page.into_iter().map(|p| (p.offset, p.data)).collect()
}

/// Futures polled together queue in poll order: each channel's offsets follow that order, within
/// a batch and across batches.
pub(crate) async fn batched_offsets_follow_queue_order(store: DynStore) {
    // At most 30: `join_all` polls that many in order.
    let publishes = (0..30).map(|i| {
        let channel = ["left", "right", "middle"][i % 3];
        let store = store.clone();
        async move { store.publish(new_publication(channel, &i.to_string())).await.unwrap() }
    });
    let published = join_all(publishes).await;
    for (i, (publication, position)) in published.iter().enumerate() {
        assert_eq!(publication.offset, (i / 3 + 1) as i64, "publication {i}");
        assert_eq!((position.offset, publication.data.clone()), (publication.offset, i.to_string()));
    }
    for channel in ["left", "right", "middle"] {
        let epochs: Vec<_> =
            published.iter().filter(|(p, _)| p.channel == channel).map(|(_, at)| &at.epoch).collect();
        assert!(epochs.windows(2).all(|w| w[0] == w[1]), "one epoch per channel");
        assert_eq!(
            stored(&store, channel).await.into_keys().collect::<Vec<_>>(),
            (1..=10).collect::<Vec<_>>()
        );
    }
}

/// Many tasks, each publishing and awaiting its acks on one of several channels, while a follower
/// reads each channel: it never sees a gap, and in the end every channel holds 1..n, each acked
/// publication under the offset its ack gave.
pub(crate) async fn concurrent_channels_number_without_gaps(store: DynStore) {
    concurrent_writers(&[store.clone(), store]).await;
}

/// The same through two stores on one database (two nodes, or the server and the CLI).
pub(crate) async fn concurrent_writers(stores: &[DynStore]) {
    const TASKS: usize = 24;
    const CHANNELS: usize = 4;
    const EACH: usize = 15;
    let writers: Vec<_> = (0..TASKS)
        .map(|t| {
            let store = stores[t % stores.len()].clone();
            tokio::spawn(async move {
                let channel = format!("busy-{}", t % CHANNELS);
                let mut acked = Vec::new();
                for i in 0..EACH {
                    let data = format!("{t}-{i}");
                    let (p, _) = store
                        .publish(NewPublication { sender: Some("w"), ..new_publication(&channel, &data) })
                        .await
                        .unwrap();
                    acked.push((channel.clone(), p.offset, data));
                }
                acked
            })
        })
        .collect();
    // Follows every channel while they publish: each page continues where the last ended.
    let mut seen = [0i64; CHANNELS];
    while !writers.iter().all(|w| w.is_finished()) {
        for (c, last) in seen.iter_mut().enumerate() {
            let (page, _) =
                stores[0].publications(&format!("busy-{c}"), Range::After(*last), 50, 0).await.unwrap();
            for p in page {
                assert_eq!(p.offset, *last + 1, "a reader saw a later offset before an earlier");
                *last = p.offset;
            }
        }
        tokio::task::yield_now().await;
    }
    let mut acked = Vec::new();
    for writer in writers {
        let mine = writer.await.unwrap();
        assert!(mine.windows(2).all(|w| w[0].1 < w[1].1), "one writer's publications in order");
        acked.extend(mine);
    }
    for c in 0..CHANNELS {
        let channel = format!("busy-{c}");
        let kept = stored(&stores[0], &channel).await;
        let want = (TASKS / CHANNELS * EACH) as i64;
        assert_eq!(kept.keys().copied().collect::<Vec<_>>(), (1..=want).collect::<Vec<_>>(), "{channel}");
        for (_, offset, data) in acked.iter().filter(|(ch, _, _)| *ch == channel) {
            assert_eq!(kept.get(offset), Some(data), "acked {data} is stored under its offset");
        }
    }
}

/// Retention applies within a batch as it would one publication after another.
pub(crate) async fn batch_retention(store: DynStore) {
    let three = Retention { size: Some(3), ttl_ms: None };
    store.publish(NewPublication { retention: three, ..new_publication("short", "0") }).await.unwrap();
    let published = join_all((1..=10).map(|i| {
        let store = store.clone();
        async move {
            store
                .publish(NewPublication { retention: three, ..new_publication("short", &i.to_string()) })
                .await
                .unwrap()
        }
    }))
    .await;
    let offsets: Vec<_> = published.iter().map(|(p, _)| p.offset).collect();
    assert_eq!(offsets, (2..=11).collect::<Vec<_>>());
    let (kept, position) = store.publications("short", Range::After(0), 100, 0).await.unwrap();
    assert_eq!(kept.iter().map(|p| p.data.as_str()).collect::<Vec<_>>(), ["8", "9", "10"]);
    assert_eq!(kept.iter().map(|p| p.offset).collect::<Vec<_>>(), [9, 10, 11]);
    assert_eq!(position.unwrap().offset, 11);
}

/// Publishers that stop waiting (their sockets closed) before or while their batch is written:
/// the others are answered, nothing acked is missing, numbering has no gap, and the writer goes on.
pub(crate) async fn dropped_publishers(store: DynStore) {
    // How many publications the endless publishers have had acked.
    let (progress, mut endless_acked) = tokio::sync::watch::channel(0usize);
    let progress = Arc::new(progress);
    let publisher = |t: usize| {
        let (store, progress) = (store.clone(), progress.clone());
        tokio::spawn(async move {
            let mut acked = Vec::new();
            for i in 0..if t < 10 { 1 } else { usize::MAX } {
                let data = format!("{t}-{i}");
                let (p, _) = store.publish(new_publication("quit", &data)).await.unwrap();
                acked.push((p.offset, data));
                if t >= 10 {
                    progress.send_modify(|n| *n += 1);
                }
            }
            acked
        })
    };
    // Ten single publications, every other one given up at once; twenty endless publishers
    // given up at some point of their work.
    let single: Vec<_> = (0..10).map(publisher).collect();
    let endless: Vec<_> = (10..30).map(publisher).collect();
    let mut acked = Vec::new();
    for (i, task) in single.into_iter().enumerate() {
        if i % 2 == 1 {
            task.abort();
            let _ = task.await;
        } else {
            acked.extend(task.await.unwrap());
        }
    }
    // The endless ones are given up once they are well into their work (a few rounds each).
    tokio::time::timeout(Duration::from_secs(10), endless_acked.wait_for(|n| *n >= 60))
        .await
        .expect("the endless publishers stored nothing")
        .unwrap();
    for task in endless {
        task.abort();
        assert!(task.await.unwrap_err().is_cancelled(), "no publication failed");
    }
    let (last, _) = store.publish(new_publication("quit", "after")).await.unwrap();
    let kept = stored(&store, "quit").await;
    assert_eq!(kept.keys().copied().collect::<Vec<_>>(), (1..=last.offset).collect::<Vec<_>>(), "no gap");
    assert!(acked.len() == 5 && last.offset > 5);
    for (offset, data) in acked {
        assert_eq!(kept.get(&offset), Some(&data));
    }
}

/// A batch the database refuses (here: a trigger rejects one of its publications) answers all
/// its publishers with the error and stores nothing of it; the next batch is numbered on.
async fn failed_batch_leaves_nothing(store: DynStore) {
    store.publish(new_publication("fine", "1")).await.unwrap();
    // On this current-thread runtime the writer runs only once all five are queued: one batch.
    let batch = ["fine", "fine", "poisoned", "fresh", "fine"].into_iter().enumerate().map(|(i, channel)| {
        let store = store.clone();
        let data = if channel == "poisoned" { "\"poison\"".to_owned() } else { i.to_string() };
        async move { store.publish(new_publication(channel, &data)).await }
    });
    for outcome in join_all(batch).await {
        assert!(matches!(outcome, Err(StoreError::Other(_))), "{outcome:?}");
    }
    assert_eq!(stored(&store, "fine").await.len(), 1, "nothing of the batch stored");
    for channel in ["poisoned", "fresh"] {
        let (page, position) = store.publications(channel, Range::After(0), 10, 0).await.unwrap();
        assert!(page.is_empty() && position.is_none(), "{channel}: no row made");
    }
    let (next, _) = store.publish(new_publication("fine", "2")).await.unwrap();
    assert_eq!(next.offset, 2, "the failed batch's offsets were not used up");
}

#[tokio::test]
async fn sqlite_failed_batch_leaves_nothing() {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}", dir.path().join("t.db").display());
    let store = store::connect(&url).await.expect("open SQLite store");
    let mut conn = sqlx::SqliteConnection::connect(&url).await.unwrap();
    sqlx::query(
        "CREATE TRIGGER poison BEFORE INSERT ON publications WHEN NEW.data = '\"poison\"' \
         BEGIN SELECT RAISE(ABORT, 'poisoned publication'); END",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    failed_batch_leaves_nothing(store).await;
}

#[tokio::test]
async fn postgres_failed_batch_leaves_nothing() {
    let Some(url) = postgres_url().await else {
        return;
    };
    let schema = fresh_schema();
    let store = PostgresStore::connect_with_schema(&url, &schema).await.expect("open PostgreSQL store");
    let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
    let outcome = async {
        sqlx::raw_sql(&format!(
            "SET search_path = \"{schema}\"; \
             CREATE FUNCTION poison() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
               IF NEW.data = '\"poison\"' THEN RAISE EXCEPTION 'poisoned publication'; END IF; \
               RETURN NEW; END $$; \
             CREATE TRIGGER poison BEFORE INSERT ON publications FOR EACH ROW EXECUTE FUNCTION poison();"
        ))
        .execute(&mut conn)
        .await
        .unwrap();
        // In a task: a failed assertion still drops the schema.
        tokio::spawn(failed_batch_leaves_nothing(Arc::new(store))).await
    }
    .await;
    let _ = conn.close().await;
    drop_schema(&url, &schema).await;
    if let Err(err) = outcome {
        std::panic::resume_unwind(err.into_panic());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_two_stores_number_together() {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}", dir.path().join("t.db").display());
    let first = store::connect(&url).await.expect("open SQLite store");
    let second = store::connect(&url).await.expect("open SQLite store again");
    concurrent_writers(&[first, second]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_two_nodes_number_together() {
    let Some(url) = postgres_url().await else {
        return;
    };
    let schema = fresh_schema();
    let node_a = PostgresStore::connect_with_schema(&url, &schema).await.expect("node A");
    let node_b = PostgresStore::connect_with_schema(&url, &schema).await.expect("node B");
    let stores: Vec<DynStore> = vec![Arc::new(node_a), Arc::new(node_b)];
    let outcome = tokio::spawn(async move { concurrent_writers(&stores).await }).await;
    drop_schema(&url, &schema).await;
    if let Err(err) = outcome {
        std::panic::resume_unwind(err.into_panic());
    }
}
