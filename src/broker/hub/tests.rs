use super::*;

/// An event's frames for rooms only.
fn room_only(text: &str) -> Frames {
    Frames { room: Some(text.into()), ..Frames::default() }
}

/// Connects `socket` of `username` and joins it to `channel` in `view`; its outbox.
fn joined(hub: &Hub, socket: u64, username: &str, channel: &str, view: View) -> outbox::Receiver {
    let outbox = hub.connect(socket, username);
    hub.join(socket, channel, view);
    outbox
}

#[test]
fn presence_edges_count_users_not_sockets() {
    let hub = Hub::default();
    let _a = hub.connect(1, "john");
    let _b = hub.connect(2, "john");
    let _c = hub.connect(3, "jane");
    assert_eq!(hub.join(1, "r", View::Room), Some(Change { channel_edge: true, user_edge: true }));
    assert_eq!(hub.join(2, "r", View::Room), Some(Change { channel_edge: false, user_edge: false }));
    assert_eq!(hub.join(2, "r", View::Room), None, "joining twice changes nothing");
    assert_eq!(hub.join(3, "r", View::Room), Some(Change { channel_edge: false, user_edge: true }));
    assert_eq!(hub.members("r").into_iter().collect::<Vec<_>>(), ["jane", "john"]);
    assert_eq!(hub.leave(1, "r"), Some(Change { channel_edge: false, user_edge: false }));
    assert_eq!(hub.disconnect(2), vec![("r".to_owned(), Change { channel_edge: false, user_edge: true })]);
    assert_eq!(hub.leave(3, "r"), Some(Change { channel_edge: true, user_edge: true }));
    assert!(hub.members("r").is_empty());
}

#[test]
fn the_watcher_sees_each_users_first_and_last_socket_in_order() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    let watcher: Watcher =
        Box::new(move |channel, user, joined| log.lock().unwrap().push(format!("{channel} {user} {joined}")));
    let hub = Hub::watched(Some(watcher));
    let _a = joined(&hub, 1, "john", "r", View::Room);
    let _b = joined(&hub, 2, "john", "r", View::Channel);
    let _c = joined(&hub, 3, "jane", "r", View::Room);
    hub.leave(1, "r");
    hub.disconnect(2);
    hub.disconnect(3);
    let expected = ["r john true", "r jane true", "r john false", "r jane false"];
    assert_eq!(*seen.lock().unwrap(), expected);
}

#[test]
fn subscribers_count_sockets_not_users() {
    let hub = Hub::default();
    let _a = joined(&hub, 1, "john", "r", View::Room);
    let _b = joined(&hub, 2, "john", "r", View::Room);
    let _c = joined(&hub, 3, "jane", "s", View::Room);
    assert_eq!(hub.subscribers("r"), 2);
    assert_eq!(hub.subscribers("none"), 0);
    assert_eq!(hub.subscriber_counts(), BTreeMap::from([("r".to_owned(), 2), ("s".to_owned(), 1)]));
    let _idle = hub.connect(4, "jane");
    let tally = Tally { sockets: 4, users: 2, channels: 2, subscriptions: 3 };
    assert_eq!(hub.tally(), tally);
    hub.disconnect(1);
    hub.leave(3, "s");
    assert_eq!(hub.subscriber_counts(), BTreeMap::from([("r".to_owned(), 1)]));
    assert_eq!(hub.tally(), Tally { sockets: 3, users: 2, channels: 1, subscriptions: 1 });
}

#[tokio::test]
async fn every_socket_gets_the_same_bytes_not_a_copy() {
    let hub = Hub::default();
    let mut one = joined(&hub, 1, "john", "r", View::Room);
    let mut two = joined(&hub, 2, "jane", "r", View::Room);
    let mut other_view = joined(&hub, 3, "jim", "r", View::Channel);
    hub.deliver(
        "r",
        Frames {
            room: Some("room frame".into()),
            channel: Some("channel frame".into()),
            ..Frames::default()
        },
    );
    let (one, two, three) =
        (one.recv().await.unwrap(), two.recv().await.unwrap(), other_view.recv().await.unwrap());
    let (a, b) = (one.frame().unwrap(), two.frame().unwrap());
    assert_eq!(a.as_str(), "room frame");
    assert_eq!(a.as_ptr(), b.as_ptr(), "one frame shared by both sockets");
    assert_eq!(three.frame().map(|f| f.as_str()), Some("channel frame"));
}

#[tokio::test]
async fn a_batch_reaches_each_socket_in_order_in_one_take() {
    let hub = Hub::default();
    let mut room = joined(&hub, 1, "john", "r", View::Room);
    let mut channel_only = joined(&hub, 2, "jane", "r", View::Channel);
    let mut batch: Vec<Frames> = (0..3).map(|n| room_only(&format!("room {n}"))).collect();
    batch[1].channel = Some("channel 1".into());
    hub.deliver_all("r", batch);
    assert_eq!(hub.deliveries(), 4, "three frames to one socket, one to the other");
    let mut taken = std::collections::VecDeque::new();
    assert_eq!(room.drain_into(&mut taken), 3);
    let texts: Vec<_> = taken.iter().map(|d| d.frame().unwrap().to_string()).collect();
    assert_eq!(texts, ["room 0", "room 1", "room 2"]);
    taken.clear();
    assert_eq!(channel_only.drain_into(&mut taken), 1, "only what its view is told of");
    assert_eq!(taken[0].frame().map(|f| f.as_str()), Some("channel 1"));
}

#[tokio::test]
async fn a_batch_that_does_not_fit_drops_the_socket() {
    let hub = Hub::default();
    let _slow = joined(&hub, 1, "slow", "r", View::Room);
    hub.deliver_all("r", (0..OUTBOX_FRAMES - 1).map(|i| room_only(&i.to_string())).collect());
    assert!(hub.is_member(1, "r"));
    hub.deliver_all("r", (0..2).map(|i| room_only(&i.to_string())).collect());
    assert!(!hub.is_member(1, "r"), "dropped rather than given part of the batch");
}

#[tokio::test]
async fn a_full_outbox_drops_the_socket_not_the_others() {
    let hub = Hub::default();
    let mut slow = joined(&hub, 1, "slow", "r", View::Room);
    let mut fast = joined(&hub, 2, "fast", "r", View::Room);
    for i in 0..=OUTBOX_FRAMES {
        hub.deliver("r", room_only(&i.to_string()));
        let delivered = fast.recv().await.and_then(|d| d.frame().cloned());
        assert_eq!(delivered.as_deref(), Some(i.to_string().as_str()));
    }
    assert!(!hub.is_member(1, "r"));
    let mut drained = 0;
    while slow.recv().await.is_some() {
        drained += 1;
    }
    assert_eq!(drained, OUTBOX_FRAMES, "the queued frames drain, then the outbox ends");
    assert_eq!(hub.members("r").into_iter().collect::<Vec<_>>(), ["fast"]);
}
