//! Webhooks' part of the contract: members by node, the events their changes cause for the whole
//! cluster, dead nodes, the delivery lease and the queue.

use wsguard::store::{DynStore, HookKind, HookKinds, MemberChange};

use crate::NOW;

const MS: i64 = NOW * 1000;

fn change(channel: &str, user: &str, joined: bool) -> MemberChange {
    let presence = channel.starts_with("doc:");
    MemberChange { channel: channel.to_owned(), user: user.to_owned(), joined, presence }
}

/// The waiting events as `name channel user`.
async fn queued(store: &DynStore) -> Vec<String> {
    let events = store.hook_events(1000).await.unwrap();
    assert!(events.windows(2).all(|pair| pair[0].id < pair[1].id), "ids increase");
    events
        .iter()
        .map(|e| format!("{} {} {}", e.kind.name(), e.channel, e.user.as_deref().unwrap_or("-")))
        .collect()
}

async fn record(store: &DynStore, node: &str, changes: &[MemberChange]) -> u64 {
    store.record_members(node, changes, HookKinds::all(), MS).await.unwrap()
}

pub(crate) async fn webhook_events(store: DynStore) {
    assert_eq!(record(&store, "a", &[change("doc:1", "alice", true)]).await, 2);
    assert_eq!(record(&store, "b", &[change("doc:1", "bob", true), change("doc:1", "alice", true)]).await, 1);
    assert_eq!(record(&store, "a", &[change("doc:1", "alice", true)]).await, 0, "recorded already");
    assert_eq!(record(&store, "a", &[change("doc:1", "alice", false)]).await, 0, "alice is still on b");
    assert_eq!(record(&store, "a", &[change("doc:1", "alice", false)]).await, 0, "not recorded");
    let leaving = [change("doc:1", "alice", false), change("doc:1", "bob", false)];
    assert_eq!(record(&store, "b", &leaving).await, 3);
    // Without presence: the channel's events only.
    record(&store, "a", &[change("news:1", "alice", true), change("news:1", "alice", false)]).await;
    assert_eq!(
        queued(&store).await,
        [
            "channel_occupied doc:1 -",
            "presence_join doc:1 alice",
            "presence_join doc:1 bob",
            "presence_leave doc:1 alice",
            "presence_leave doc:1 bob",
            "channel_vacated doc:1 -",
            "channel_occupied news:1 -",
            "channel_vacated news:1 -",
        ]
    );
    let events = store.hook_events(2).await.unwrap();
    assert_eq!(events.len(), 2);
    assert_eq!((events[0].time_ms, events[0].user.as_deref()), (MS, None));
    assert_eq!(store.hook_backlog().await.unwrap(), (8, Some(MS)));
    store.delete_hook_events(events[1].id).await.unwrap();
    assert_eq!(queued(&store).await.len(), 6);
    assert_eq!(store.hook_backlog().await.unwrap().0, 6);
    let last = store.hook_events(100).await.unwrap().last().unwrap().id;
    store.delete_hook_events(last).await.unwrap();
    assert_eq!(store.hook_backlog().await.unwrap(), (0, None));

    // Only what the application asked for is recorded.
    let occupied = HookKinds::of([HookKind::ChannelOccupied]);
    let recorded = store.record_members("a", &[change("doc:2", "carol", true)], occupied, MS).await.unwrap();
    assert_eq!(recorded, 1);
    assert_eq!(queued(&store).await, ["channel_occupied doc:2 -"]);
    assert_eq!(store.hook_members("a").await.unwrap(), [("doc:2".to_owned(), "carol".to_owned())]);
}

pub(crate) async fn webhook_nodes(store: DynStore) {
    assert!(!store.hook_heartbeat("a", MS).await.unwrap(), "new");
    assert!(store.hook_heartbeat("a", MS + 2000).await.unwrap());
    assert!(!store.hook_heartbeat("b", MS + 20_000).await.unwrap());
    record(&store, "a", &[change("doc:1", "alice", true), change("doc:2", "alice", true)]).await;
    record(&store, "b", &[change("doc:1", "bob", true)]).await;
    // "c" never said it was alive: gone as well.
    record(&store, "c", &[change("doc:3", "carol", true)]).await;
    store.delete_hook_events(i64::MAX).await.unwrap();
    let recorded = store.reap_hook_nodes("b", MS + 1000, HookKinds::all(), MS).await.unwrap();
    assert_eq!(recorded, 2, "a is alive");
    assert_eq!(queued(&store).await, ["presence_leave doc:3 carol", "channel_vacated doc:3 -"]);
    store.delete_hook_events(i64::MAX).await.unwrap();
    assert_eq!(store.reap_hook_nodes("b", MS + 5000, HookKinds::all(), MS).await.unwrap(), 3);
    assert_eq!(
        queued(&store).await,
        ["presence_leave doc:1 alice", "presence_leave doc:2 alice", "channel_vacated doc:2 -"]
    );
    assert!(!store.hook_heartbeat("a", MS + 30_000).await.unwrap(), "taken for dead: it must resync");
    assert!(store.hook_members("a").await.unwrap().is_empty());
    store.delete_hook_events(i64::MAX).await.unwrap();
    assert_eq!(store.retire_hook_node("b", HookKinds::all(), MS).await.unwrap(), 2);
    assert_eq!(queued(&store).await, ["presence_leave doc:1 bob", "channel_vacated doc:1 -"]);
}

pub(crate) async fn webhook_lease(store: DynStore) {
    assert!(store.take_hook_lease("a", MS, MS + 10_000).await.unwrap());
    assert!(!store.take_hook_lease("b", MS + 1000, MS + 11_000).await.unwrap(), "a holds it");
    assert!(store.take_hook_lease("a", MS + 5000, MS + 15_000).await.unwrap(), "renewed");
    assert!(!store.take_hook_lease("b", MS + 12_000, MS + 22_000).await.unwrap());
    assert!(store.take_hook_lease("b", MS + 16_000, MS + 26_000).await.unwrap(), "a let it run out");
    assert!(!store.take_hook_lease("a", MS + 17_000, MS + 27_000).await.unwrap());
    store.release_hook_lease("a").await.unwrap();
    assert!(!store.take_hook_lease("a", MS + 17_000, MS + 27_000).await.unwrap(), "not a's to release");
    store.release_hook_lease("b").await.unwrap();
    assert!(store.take_hook_lease("a", MS + 17_000, MS + 27_000).await.unwrap());
}

/// Nodes joining one channel at once: one occupies it, whoever it is; every join is recorded once.
pub(crate) async fn webhook_concurrent_nodes(store: DynStore) {
    let tasks: Vec<_> = (0..8)
        .map(|n| {
            let store = store.clone();
            tokio::spawn(async move {
                let node = format!("node{n}");
                for user in 0..5 {
                    let joined = [change("doc:9", &format!("u{n}-{user}"), true)];
                    store.record_members(&node, &joined, HookKinds::all(), MS).await.unwrap();
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let events = queued(&store).await;
    assert_eq!(events.iter().filter(|e| e.starts_with("channel_occupied")).count(), 1);
    assert_eq!(events[0], "channel_occupied doc:9 -", "before any join");
    assert_eq!(events.iter().filter(|e| e.starts_with("presence_join")).count(), 40);
}
