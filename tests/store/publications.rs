//! Publications: numbered per channel from 1, read back by range and position, trimmed to their
//! retention, and numbered without gaps under concurrent publishers.

use wsguard::store::{DynStore, NewPublication, Position, Publication, Range, Retention};

/// A publication of `data` to `channel` by the server API (no sender) at 1 ms, its whole history
/// kept; a test says what it changes of that.
pub(crate) fn new_publication<'a>(channel: &'a str, data: &'a str) -> NewPublication<'a> {
    NewPublication { channel, sender: None, data, created_ms: 1, retention: Retention::ALL }
}

pub(crate) async fn publications(store: DynStore) {
    let (page, position) = store.publications("lobby", Range::Before(i64::MAX), 50, 0).await.unwrap();
    assert!(page.is_empty() && position.is_none(), "a channel that never published has no position");

    let mut lobby: Vec<Publication> = Vec::new();
    let mut epoch = String::new();
    for i in 1..=5 {
        let data = format!(r#"{{"text":"hello {i} ✓"}}"#);
        let (publication, at) = store
            .publish(NewPublication {
                sender: Some("alice"),
                created_ms: 1000 + i,
                ..new_publication("lobby", &data)
            })
            .await
            .unwrap();
        assert_eq!(publication.offset, i, "numbered from 1 without gaps");
        assert_eq!(
            (publication.sender.as_deref(), publication.data.as_str()),
            (Some("alice"), data.as_str())
        );
        assert_eq!(at.offset, i);
        if i > 1 {
            assert_eq!(at.epoch, epoch, "one epoch while the history lives");
        }
        epoch = at.epoch;
        lobby.push(publication);
        // Another channel's publications interleave and are numbered on their own.
        let (other, _) = store
            .publish(NewPublication { created_ms: 2000 + i, ..new_publication("other", "{}") })
            .await
            .unwrap();
        assert_eq!(other.offset, i);
    }
    let page = |range, limit| {
        let store = store.clone();
        async move { store.publications("lobby", range, limit, 0).await.unwrap() }
    };
    let (all, position) = page(Range::Before(i64::MAX), 50).await;
    assert_eq!(all, lobby, "oldest first, exactly what publish returned");
    assert_eq!(position, Some(Position { offset: 5, epoch: epoch.clone() }));
    assert_eq!(page(Range::Before(i64::MAX), 2).await.0, lobby[3..], "the newest, oldest first");
    assert_eq!(page(Range::Before(4), 2).await.0, lobby[1..3], "paging back");
    assert!(page(Range::Before(1), 10).await.0.is_empty());
    assert_eq!(page(Range::After(2), 2).await.0, lobby[2..4], "catching up");
    assert!(page(Range::After(5), 10).await.0.is_empty());
    assert_eq!(page(Range::After(i64::MAX), 0).await.1.unwrap().offset, 5, "the position alone");
}

pub(crate) async fn publication_retention(store: DynStore) {
    // Three kept: the oldest go as new ones arrive, the numbering goes on.
    let three = Retention { size: Some(3), ttl_ms: None };
    for i in 1..=5 {
        store
            .publish(NewPublication {
                created_ms: 1000,
                retention: three,
                ..new_publication("kept", &i.to_string())
            })
            .await
            .unwrap();
    }
    let (kept, position) = store.publications("kept", Range::After(0), 10, 0).await.unwrap();
    assert_eq!(kept.iter().map(|p| p.offset).collect::<Vec<_>>(), [3, 4, 5]);
    assert_eq!(position.unwrap().offset, 5);

    // A TTL hides what expired at once and prune deletes it; a channel left without any
    // publication goes too, and starts again from 1 in a new epoch.
    let minute = Retention { size: None, ttl_ms: Some(60_000) };
    let (_, first) = store
        .publish(NewPublication { created_ms: 1_000, retention: minute, ..new_publication("brief", "1") })
        .await
        .unwrap();
    store
        .publish(NewPublication { created_ms: 30_000, retention: minute, ..new_publication("brief", "2") })
        .await
        .unwrap();
    let (visible, _) = store.publications("brief", Range::After(0), 10, 61_000).await.unwrap();
    assert_eq!(visible.iter().map(|p| p.offset).collect::<Vec<_>>(), [2]);
    let pruned = store.prune(61).await.unwrap();
    assert_eq!(pruned.publications, 1);
    assert_eq!(store.publications("brief", Range::After(0), 10, 0).await.unwrap().0.len(), 1);
    let pruned = store.prune(91).await.unwrap();
    assert_eq!(pruned.publications, 1);
    assert!(store.publications("brief", Range::After(0), 10, 0).await.unwrap().1.is_none());
    let (again, at) = store
        .publish(NewPublication { created_ms: 100_000, retention: minute, ..new_publication("brief", "3") })
        .await
        .unwrap();
    assert_eq!(again.offset, 1);
    assert_ne!(at.epoch, first.epoch, "history lost: a new epoch");
    // Channels kept forever are never pruned.
    assert_eq!(store.publications("kept", Range::After(0), 10, 0).await.unwrap().0.len(), 3);
}

pub(crate) async fn history_removal(store: DynStore) {
    let kept = Retention::ALL;
    for i in 1..=3 {
        store
            .publish(NewPublication {
                created_ms: 1000,
                retention: kept,
                ..new_publication("wiped", &i.to_string())
            })
            .await
            .unwrap();
        store
            .publish(NewPublication {
                created_ms: 1000,
                retention: kept,
                ..new_publication("spared", &i.to_string())
            })
            .await
            .unwrap();
    }
    let (_, before) = store.publications("wiped", Range::After(0), 0, 0).await.unwrap();
    assert_eq!(store.remove_history("wiped").await.unwrap(), 3);
    let (left, position) = store.publications("wiped", Range::After(0), 10, 0).await.unwrap();
    assert!(left.is_empty(), "{left:?}");
    assert_eq!(position, before, "where the channel stands is kept");
    let (next, at) = store
        .publish(NewPublication { created_ms: 2000, retention: kept, ..new_publication("wiped", "4") })
        .await
        .unwrap();
    assert_eq!(
        (next.offset, Some(at)),
        (4, before.map(|p| Position { offset: 4, ..p })),
        "numbering goes on"
    );
    assert_eq!(store.publications("wiped", Range::After(0), 10, 0).await.unwrap().0, [next]);
    assert_eq!(
        store.publications("spared", Range::After(0), 10, 0).await.unwrap().0.len(),
        3,
        "another channel"
    );
    assert_eq!(store.remove_history("never").await.unwrap(), 0, "a channel that never published");
}

pub(crate) async fn concurrent_publications_have_no_gaps(store: DynStore) {
    const WRITERS: i64 = 8;
    const EACH: i64 = 25;
    let tasks: Vec<_> = (0..WRITERS)
        .map(|w| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut offsets = Vec::new();
                for i in 0..EACH {
                    let (p, _) = store
                        .publish(NewPublication {
                            sender: Some("w"),
                            ..new_publication("busy", &format!("{w}-{i}"))
                        })
                        .await
                        .unwrap();
                    offsets.push(p.offset);
                }
                offsets
            })
        })
        .collect();
    let mut offsets = Vec::new();
    for task in tasks {
        let mine = task.await.unwrap();
        assert!(mine.windows(2).all(|w| w[0] < w[1]), "one writer's publications in order");
        offsets.extend(mine);
    }
    offsets.sort_unstable();
    assert_eq!(offsets, (1..=WRITERS * EACH).collect::<Vec<_>>(), "every offset once, no gap");
    let (stored, _) = store.publications("busy", Range::After(0), 1000, 0).await.unwrap();
    assert_eq!(stored.len() as i64, WRITERS * EACH);
}
