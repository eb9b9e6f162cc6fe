//! The `Store` contract, one set of tests run against every backend: `sqlite::<test>` on a fresh
//! file, `postgres::<test>` in a fresh schema of the PostgreSQL named by
//! `WSGUARD_TEST_DATABASE_URL` (default `postgres://postgres@127.0.0.1:5432/test`).
//!
//! Without a reachable PostgreSQL the `postgres::` tests are skipped (with a message), unless `CI`
//! or `WSGUARD_REQUIRE_SERVICES=1` is set: then they fail.
//!
//! Here: the backends, the users', logins' and revocations' part of the contract, and API keys.
//! In `store/`: publications, group commit, SQLite's publication writer, connecting, webhooks, the
//! admin role and the audit log.

use std::collections::HashSet;
use std::future::Future;
use std::io::Write;
use std::sync::{Arc, Once};
use std::time::Duration;

use sqlx::postgres::PgConnection;
use sqlx::Connection;
use tokio::sync::OnceCell;
use tokio::task::JoinHandle;
use wsguard::store::{
    self, ApiKeyRecord, DynStore, PostgresStore, RefreshRotation, Revocation, RevocationKind, Rotation,
    StoreError, UserRecord,
};

const DEFAULT_POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432/test";
/// An arbitrary "now" (unix seconds); every expiry below is relative to it.
const NOW: i64 = 1_700_000_000;
/// `grace_from` for a rotation without a grace window.
const NO_GRACE: i64 = i64::MAX;

// ---------------------------------------------------------------------------------------------
// Backends

macro_rules! store_tests {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    crate::with_sqlite(crate::$name).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    crate::with_postgres(crate::$name).await;
                }
            )*
        }
    };
}

store_tests!(
    users,
    principal,
    current_refresh,
    rotation,
    rotation_grace,
    concurrent_rotation,
    concurrent_rotation_within_grace,
    revoke_user,
    revocation_log,
    revocation_log_follower_misses_nothing,
    user_revocations,
    prune,
    publications,
    publication_retention,
    history_removal,
    concurrent_publications_have_no_gaps,
    batched_offsets_follow_queue_order,
    concurrent_channels_number_without_gaps,
    batch_retention,
    dropped_publishers,
    api_keys,
    admin_role,
    audit_log,
    webhook_events,
    webhook_nodes,
    webhook_lease,
    webhook_concurrent_nodes,
);

#[path = "store/admin.rs"]
mod admin;
#[path = "store/connecting.rs"]
mod connecting;
#[path = "store/group_commit.rs"]
mod group_commit;
#[path = "store/publications.rs"]
mod publications;
#[path = "store/sqlite_writer.rs"]
mod sqlite_writer;
#[path = "store/webhooks.rs"]
mod webhooks;
use admin::{admin_role, audit_log};
use group_commit::{
    batch_retention, batched_offsets_follow_queue_order, concurrent_channels_number_without_gaps,
    dropped_publishers,
};
use publications::{
    concurrent_publications_have_no_gaps, history_removal, publication_retention, publications,
};
use webhooks::{webhook_concurrent_nodes, webhook_events, webhook_lease, webhook_nodes};

/// Runs `test` on a store in a fresh SQLite file, opened through [`store::connect`].
async fn with_sqlite<F, Fut>(test: F)
where
    F: FnOnce(DynStore) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}", dir.path().join("t.db").display());
    let store = store::connect(&url).await.expect("open SQLite store");
    test(store).await;
}

/// Runs `test` on a store in a fresh schema (dropped afterwards, even if the test fails), or
/// skips it when PostgreSQL is not reachable and not required.
async fn with_postgres<F, Fut>(test: F)
where
    F: FnOnce(DynStore) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let Some(url) = postgres_url().await else {
        return;
    };
    let schema = fresh_schema();
    let store = PostgresStore::connect_with_schema(&url, &schema).await.expect("open PostgreSQL store");
    // In a task, so that a failing test still drops its schema.
    let outcome = tokio::spawn(test(Arc::new(store))).await;
    drop_schema(&url, &schema).await;
    if let Err(err) = outcome {
        std::panic::resume_unwind(err.into_panic());
    }
}

fn fresh_schema() -> String {
    format!("wsguard_test_{}", uuid::Uuid::new_v4().simple())
}

fn services_required() -> bool {
    let set = |name: &str| {
        std::env::var(name)
            .map(|v| !matches!(v.trim().to_ascii_lowercase().as_str(), "" | "0" | "false"))
            .unwrap_or(false)
    };
    set("CI") || set("WSGUARD_REQUIRE_SERVICES")
}

/// The test database URL if PostgreSQL answers there; `None` (skip, said once on the terminal)
/// when it does not and it is not required; a panic when it is required.
async fn postgres_url() -> Option<String> {
    static REACHABLE: OnceCell<Result<String, String>> = OnceCell::const_new();
    static SKIP_NOTICE: Once = Once::new();
    let outcome = REACHABLE
        .get_or_init(|| async {
            let url = std::env::var("WSGUARD_TEST_DATABASE_URL")
                .unwrap_or_else(|_| DEFAULT_POSTGRES_URL.to_owned());
            let attempt = tokio::time::timeout(Duration::from_secs(5), PgConnection::connect(&url));
            match attempt.await {
                Ok(Ok(conn)) => {
                    let _ = conn.close().await;
                    Ok(url)
                }
                Ok(Err(err)) => Err(format!("PostgreSQL not reachable at {url}: {err}")),
                Err(_) => Err(format!("PostgreSQL not reachable at {url}: timed out")),
            }
        })
        .await;
    match outcome {
        Ok(url) => Some(url.clone()),
        Err(why) if services_required() => {
            panic!("{why}; PostgreSQL is required here (CI or WSGUARD_REQUIRE_SERVICES is set)")
        }
        Err(why) => {
            SKIP_NOTICE.call_once(|| {
                // Straight to stderr: libtest captures `eprintln!` of passing tests.
                let _ = writeln!(
                    std::io::stderr(),
                    "\n{why}: skipping the postgres:: store tests; start it or set \
                     WSGUARD_TEST_DATABASE_URL (set WSGUARD_REQUIRE_SERVICES=1 to fail instead)\n"
                );
            });
            None
        }
    }
}

async fn admin_connection(url: &str) -> PgConnection {
    PgConnection::connect(url).await.expect("admin connection to PostgreSQL")
}

async fn drop_schema(url: &str, schema: &str) {
    let dropped = async {
        let mut conn = PgConnection::connect(url).await?;
        sqlx::query(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE")).execute(&mut conn).await?;
        conn.close().await
    };
    if let Err(err) = dropped.await {
        let _ = writeln!(std::io::stderr(), "could not drop schema {schema}: {err}");
    }
}

// ---------------------------------------------------------------------------------------------
// Helpers

fn user(name: &str) -> UserRecord {
    UserRecord {
        username: name.to_owned(),
        email: Some(format!("{name}@example.com")),
        full_name: Some(format!("{name} Example")),
        password_hash: format!("$argon2id$hash-of-{name}"),
        disabled: false,
        admin: false,
    }
}

fn assert_same_user(got: &UserRecord, want: &UserRecord) {
    assert_eq!(got.username, want.username);
    assert_eq!(got.email, want.email);
    assert_eq!(got.full_name, want.full_name);
    assert_eq!(got.password_hash, want.password_hash);
    assert_eq!(got.disabled, want.disabled);
}

fn family_revocation(family: &str, username: &str, expires_at: i64) -> Revocation {
    Revocation {
        kind: RevocationKind::Family,
        subject: family.to_owned(),
        username: username.to_owned(),
        expires_at,
    }
}

fn token_revocation(jti: &str, username: &str, expires_at: i64) -> Revocation {
    Revocation {
        kind: RevocationKind::Token,
        subject: jti.to_owned(),
        username: username.to_owned(),
        expires_at,
    }
}

async fn family_revoked(store: &DynStore, username: &str, family: &str) -> bool {
    store.principal(username, family).await.unwrap().expect("user exists").1
}

async fn log(store: &DynStore) -> Vec<Revocation> {
    store.revocations_since(0, 1000).await.unwrap().into_iter().map(|(_, r)| r).collect()
}

// ---------------------------------------------------------------------------------------------
// The contract

async fn users(store: DynStore) {
    store.ping().await.unwrap();
    assert!(store.list_users().await.unwrap().is_empty());
    assert!(store.user("alice").await.unwrap().is_none());

    let alice = UserRecord { email: None, full_name: None, ..user("alice") };
    let bob = UserRecord { disabled: true, ..user("bob") };
    let zed = user("Zed");
    for u in [&bob, &zed, &alice] {
        store.create_user(u).await.unwrap();
    }
    assert_same_user(&store.user("alice").await.unwrap().unwrap(), &alice);
    assert_same_user(&store.user("bob").await.unwrap().unwrap(), &bob);
    assert!(store.user("Alice").await.unwrap().is_none(), "exact match");

    let duplicate = store.create_user(&user("alice")).await;
    assert!(matches!(duplicate, Err(StoreError::Conflict)), "{duplicate:?}");

    // By username, byte order (uppercase first), as SQLite's BINARY collation sorts.
    let listed = store.list_users().await.unwrap();
    let names: Vec<&str> = listed.iter().map(|u| u.username.as_str()).collect();
    assert_eq!(names, ["Zed", "alice", "bob"]);
    assert_same_user(&listed[1], &alice);

    assert!(store.set_disabled("alice", true).await.unwrap());
    assert!(store.user("alice").await.unwrap().unwrap().disabled);
    assert!(store.set_disabled("alice", false).await.unwrap());
    assert!(!store.user("alice").await.unwrap().unwrap().disabled);
    assert!(!store.set_disabled("nobody", true).await.unwrap());

    assert!(store.set_password_hash("bob", "new-hash").await.unwrap());
    assert_eq!(store.user("bob").await.unwrap().unwrap().password_hash, "new-hash");
    assert!(!store.set_password_hash("nobody", "x").await.unwrap());
    assert!(store.user("nobody").await.unwrap().is_none());
}

async fn principal(store: DynStore) {
    store.create_user(&user("alice")).await.unwrap();
    store.create_user(&user("bob")).await.unwrap();
    store.create_family("fam-a", "alice", "jti-1", NOW + 3600).await.unwrap();

    assert!(store.principal("nobody", "fam-a").await.unwrap().is_none());

    let (found, revoked) = store.principal("alice", "fam-a").await.unwrap().unwrap();
    assert_same_user(&found, &user("alice"));
    assert!(!revoked, "a live family");
    assert!(family_revoked(&store, "alice", "unknown-family").await, "an unknown family counts as revoked");
    assert!(family_revoked(&store, "bob", "fam-a").await, "another user's login counts as revoked");

    // The user comes with its current state, disabled included.
    store.set_disabled("alice", true).await.unwrap();
    let (found, revoked) = store.principal("alice", "fam-a").await.unwrap().unwrap();
    assert!(found.disabled);
    assert!(!revoked);

    store.revoke(&family_revocation("fam-a", "alice", NOW + 3600), NOW).await.unwrap();
    assert!(family_revoked(&store, "alice", "fam-a").await);
}

async fn current_refresh(store: DynStore) {
    store.create_user(&user("alice")).await.unwrap();
    store.create_user(&user("bob")).await.unwrap();
    store.create_family("fam-a", "alice", "jti-1", NOW + 3600).await.unwrap();
    assert_eq!(store.current_refresh("fam-a", "alice", NOW).await.unwrap().as_deref(), Some("jti-1"));
    store
        .rotate_family(RefreshRotation { expires_at: NOW + 3600, ..refresh("fam-a", "jti-1", "jti-2") })
        .await
        .unwrap();
    assert_eq!(store.current_refresh("fam-a", "alice", NOW).await.unwrap().as_deref(), Some("jti-2"));
    assert_eq!(store.current_refresh("fam-a", "bob", NOW).await.unwrap(), None, "another user's login");
    assert_eq!(store.current_refresh("fam-a", "alice", NOW + 3600).await.unwrap(), None, "expired");
    assert_eq!(store.current_refresh("unknown", "alice", NOW).await.unwrap(), None);
    store.revoke(&family_revocation("fam-a", "alice", NOW + 3600), NOW).await.unwrap();
    assert_eq!(store.current_refresh("fam-a", "alice", NOW).await.unwrap(), None, "revoked");
}

async fn prune(store: DynStore) {
    store.create_user(&user("alice")).await.unwrap();
    store.create_family("live", "alice", "jti-1", NOW + 60).await.unwrap();
    store.create_family("expired", "alice", "jti-2", NOW - 1).await.unwrap();
    store.create_family("edge", "alice", "jti-3", NOW).await.unwrap();
    store.revoke(&token_revocation("t-live", "alice", NOW + 60), NOW - 100).await.unwrap();
    store.revoke(&token_revocation("t-expired", "alice", NOW - 1), NOW - 100).await.unwrap();
    store.revoke(&family_revocation("edge", "alice", NOW), NOW - 100).await.unwrap();

    assert_eq!(store.prune(NOW).await.unwrap(), store::Pruned { logins: 2, revocations: 2, publications: 0 });
    assert_eq!(store.prune(NOW).await.unwrap(), store::Pruned::default(), "nothing twice");
    assert_eq!(store.current_refresh("live", "alice", NOW).await.unwrap().as_deref(), Some("jti-1"));
    assert!(family_revoked(&store, "alice", "expired").await, "a pruned login stays refused");
    let log: Vec<String> =
        store.revocations_since(0, 100).await.unwrap().into_iter().map(|(_, r)| r.subject).collect();
    assert_eq!(log, ["t-live"]);
    let (_, live) = store.live_revocations(NOW).await.unwrap();
    assert_eq!(live.len(), 1);
}

/// A refresh of login `family` from its token `presented` to `next` at `NOW`, the next token living
/// until `NOW + 200`, without a grace window; a test says what it changes of that.
fn refresh<'a>(family: &'a str, presented: &'a str, next: &'a str) -> RefreshRotation<'a> {
    RefreshRotation { family, presented, next, expires_at: NOW + 200, now: NOW, grace_from: NO_GRACE }
}

async fn rotation(store: DynStore) {
    store.create_user(&user("alice")).await.unwrap();
    store.create_family("fam", "alice", "jti-1", NOW + 100).await.unwrap();
    let duplicate = store.create_family("fam", "alice", "jti-x", NOW + 100).await;
    assert!(matches!(duplicate, Err(StoreError::Conflict)), "{duplicate:?}");

    let rotated = store.rotate_family(refresh("fam", "jti-1", "jti-2")).await.unwrap();
    assert_eq!(rotated, Rotation::Rotated);
    assert!(!family_revoked(&store, "alice", "fam").await);
    assert!(log(&store).await.is_empty(), "a rotation logs nothing");

    // The old token again: replay. The family dies and the log says so, with the latest expiry.
    let replay = store
        .rotate_family(RefreshRotation {
            expires_at: NOW + 300,
            now: NOW + 1,
            ..refresh("fam", "jti-1", "jti-3")
        })
        .await
        .unwrap();
    assert_eq!(replay, Rotation::Reused);
    assert!(family_revoked(&store, "alice", "fam").await);
    assert_eq!(log(&store).await, [family_revocation("fam", "alice", NOW + 200)]);

    // Even the current token is now dead, and nothing more is logged.
    let after = store
        .rotate_family(RefreshRotation {
            expires_at: NOW + 400,
            now: NOW + 2,
            ..refresh("fam", "jti-2", "jti-4")
        })
        .await
        .unwrap();
    assert_eq!(after, Rotation::Dead);
    assert_eq!(log(&store).await.len(), 1);

    let unknown = store
        .rotate_family(RefreshRotation {
            expires_at: NOW + 100,
            ..refresh("no-such-family", "jti-1", "jti-2")
        })
        .await
        .unwrap();
    assert_eq!(unknown, Rotation::Dead);

    // An expired family is dead for its current token and for a replayed one, without logging.
    store.create_family("old", "alice", "old-1", NOW - 1).await.unwrap();
    for presented in ["old-1", "old-0"] {
        let outcome = store
            .rotate_family(RefreshRotation { expires_at: NOW + 100, ..refresh("old", presented, "old-2") })
            .await
            .unwrap();
        assert_eq!(outcome, Rotation::Dead, "{presented}");
    }
    // Expiry is strict: a family expiring exactly now is dead.
    store.create_family("edge", "alice", "edge-1", NOW).await.unwrap();
    let edge = store
        .rotate_family(RefreshRotation { expires_at: NOW + 100, ..refresh("edge", "edge-1", "edge-2") })
        .await
        .unwrap();
    assert_eq!(edge, Rotation::Dead);
    assert_eq!(log(&store).await.len(), 1);
}

/// The token just replaced, presented again within the grace window, changes nothing and says when
/// it was replaced; after the window, or an older token, it is a replay as ever.
async fn rotation_grace(store: DynStore) {
    store.create_user(&user("alice")).await.unwrap();
    store.create_family("fam", "alice", "jti-1", NOW + 100).await.unwrap();
    assert_eq!(store.replaced_at("fam", "alice", "jti-1", NOW).await.unwrap(), None, "nothing replaced yet");
    assert_eq!(
        store
            .rotate_family(RefreshRotation { grace_from: NOW - 10, ..refresh("fam", "jti-1", "jti-2") })
            .await
            .unwrap(),
        Rotation::Rotated
    );
    assert_eq!(store.replaced_at("fam", "alice", "jti-1", NOW + 5).await.unwrap(), Some(NOW));
    assert_eq!(
        store.replaced_at("fam", "bob", "jti-1", NOW + 5).await.unwrap(),
        None,
        "another user's login"
    );
    let again = store
        .rotate_family(RefreshRotation {
            expires_at: NOW + 205,
            now: NOW + 5,
            grace_from: NOW - 5,
            ..refresh("fam", "jti-1", "jti-x")
        })
        .await
        .unwrap();
    assert_eq!(again, Rotation::Repeated { rotated_at: NOW });
    assert_eq!(
        store.current_refresh("fam", "alice", NOW + 5).await.unwrap().as_deref(),
        Some("jti-2"),
        "unchanged"
    );
    assert!(log(&store).await.is_empty());

    assert_eq!(
        store
            .rotate_family(RefreshRotation {
                expires_at: NOW + 300,
                now: NOW + 20,
                grace_from: NOW + 10,
                ..refresh("fam", "jti-2", "jti-3")
            })
            .await
            .unwrap(),
        Rotation::Rotated
    );
    let older = store
        .rotate_family(RefreshRotation {
            expires_at: NOW + 300,
            now: NOW + 21,
            grace_from: NOW + 11,
            ..refresh("fam", "jti-1", "jti-y")
        })
        .await
        .unwrap();
    assert_eq!(older, Rotation::Reused, "only the token just replaced has a grace");
    assert!(family_revoked(&store, "alice", "fam").await);

    store.create_family("late", "alice", "late-1", NOW + 100).await.unwrap();
    store
        .rotate_family(RefreshRotation { grace_from: NOW - 10, ..refresh("late", "late-1", "late-2") })
        .await
        .unwrap();
    let late = store
        .rotate_family(RefreshRotation {
            now: NOW + 30,
            grace_from: NOW + 20,
            ..refresh("late", "late-1", "late-3")
        })
        .await
        .unwrap();
    assert_eq!(late, Rotation::Reused, "after the window, a replay");
}

/// Two clients refreshing with the same token at once, within a grace window: one rotates, the
/// others get the same rotation again; the login lives on.
async fn concurrent_rotation_within_grace(store: DynStore) {
    store.create_user(&user("alice")).await.unwrap();
    store.create_family("fam", "alice", "jti-1", NOW + 100).await.unwrap();
    let tasks: Vec<JoinHandle<Rotation>> = (0..8)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .rotate_family(RefreshRotation {
                        grace_from: NOW - 10,
                        ..refresh("fam", "jti-1", &format!("next-{i}"))
                    })
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut outcomes = Vec::new();
    for task in tasks {
        outcomes.push(task.await.unwrap());
    }
    let rotated = outcomes.iter().filter(|o| **o == Rotation::Rotated).count();
    let repeated = outcomes.iter().filter(|o| **o == Rotation::Repeated { rotated_at: NOW }).count();
    assert_eq!((rotated, repeated), (1, 7), "{outcomes:?}");
    assert!(!family_revoked(&store, "alice", "fam").await);
    assert!(log(&store).await.is_empty());
}

/// Two clients refreshing with the same token at once: one rotates, one is a replay (and revokes
/// the family), every later one finds it dead. Never two rotations.
async fn concurrent_rotation(store: DynStore) {
    store.create_user(&user("alice")).await.unwrap();
    store.create_family("fam", "alice", "jti-1", NOW + 100).await.unwrap();
    let tasks: Vec<JoinHandle<Rotation>> = (0..8)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                store.rotate_family(refresh("fam", "jti-1", &format!("next-{i}"))).await.unwrap()
            })
        })
        .collect();
    let mut outcomes = Vec::new();
    for task in tasks {
        outcomes.push(task.await.unwrap());
    }
    let count = |wanted: Rotation| outcomes.iter().filter(|o| **o == wanted).count();
    assert_eq!(count(Rotation::Rotated), 1, "{outcomes:?}");
    assert_eq!(count(Rotation::Reused), 1, "{outcomes:?}");
    assert_eq!(count(Rotation::Dead), 6, "{outcomes:?}");
    assert!(family_revoked(&store, "alice", "fam").await);
    assert_eq!(log(&store).await, [family_revocation("fam", "alice", NOW + 200)]);
}

async fn revoke_user(store: DynStore) {
    store.create_user(&user("alice")).await.unwrap();
    store.create_user(&user("bob")).await.unwrap();
    for (family, username, expires_at) in [
        ("a-live-1", "alice", NOW + 100),
        ("a-live-2", "alice", NOW + 200),
        ("a-expired", "alice", NOW - 1),
        ("a-revoked", "alice", NOW + 300),
        ("b-live", "bob", NOW + 100),
    ] {
        store.create_family(family, username, "jti", expires_at).await.unwrap();
    }
    let earlier = store.revoke(&family_revocation("a-revoked", "alice", NOW + 300), NOW - 10).await.unwrap();

    let revoked: HashSet<Revocation> = store.revoke_user("alice", NOW).await.unwrap().into_iter().collect();
    let live = HashSet::from([
        family_revocation("a-live-1", "alice", NOW + 100),
        family_revocation("a-live-2", "alice", NOW + 200),
    ]);
    assert_eq!(revoked, live, "only the live families");
    for family in ["a-live-1", "a-live-2", "a-revoked"] {
        assert!(family_revoked(&store, "alice", family).await, "{family}");
    }
    // An expired family is left alone (not revoked, not logged): `principal` reports only the
    // revoked flag, its tokens having expired anyway.
    assert!(!family_revoked(&store, "alice", "a-expired").await);
    assert!(!family_revoked(&store, "bob", "b-live").await);

    // Each one is in the log, after the earlier entry.
    let since: HashSet<Revocation> =
        store.revocations_since(earlier, 100).await.unwrap().into_iter().map(|(_, r)| r).collect();
    assert_eq!(since, live);

    assert!(store.revoke_user("alice", NOW).await.unwrap().is_empty());
    assert!(store.revoke_user("nobody", NOW).await.unwrap().is_empty());
    assert_eq!(log(&store).await.len(), 3);
}

async fn revocation_log(store: DynStore) {
    assert_eq!(store.live_revocations(NOW).await.unwrap(), (0, vec![]));
    assert!(store.revocations_since(0, 10).await.unwrap().is_empty());

    store.create_user(&user("alice")).await.unwrap();
    store.create_family("fam", "alice", "jti-1", NOW + 100).await.unwrap();

    let token = token_revocation("jti-live", "alice", NOW + 50);
    let family = family_revocation("fam", "alice", NOW + 100);
    let expired = token_revocation("jti-expired", "alice", NOW - 5);
    let edge = token_revocation("jti-edge", "alice", NOW);

    let id1 = store.revoke(&token, NOW).await.unwrap();
    assert!(!family_revoked(&store, "alice", "fam").await, "a token only");
    let id2 = store.revoke(&family, NOW).await.unwrap();
    assert!(family_revoked(&store, "alice", "fam").await, "revoking a family kills it");
    let id3 = store.revoke(&expired, NOW).await.unwrap();
    let id4 = store.revoke(&edge, NOW).await.unwrap();
    assert!(id1 > 0 && id1 < id2 && id2 < id3 && id3 < id4);

    // Revoking a family that does not exist is still logged.
    let ghost = family_revocation("ghost", "alice", NOW + 10);
    let id5 = store.revoke(&ghost, NOW).await.unwrap();
    assert!(id5 > id4);

    let all = store.revocations_since(0, 10).await.unwrap();
    assert_eq!(
        all,
        [
            (id1, token.clone()),
            (id2, family.clone()),
            (id3, expired.clone()),
            (id4, edge.clone()),
            (id5, ghost.clone()),
        ]
    );
    assert_eq!(store.revocations_since(id1, 10).await.unwrap(), all[1..].to_vec());
    assert_eq!(store.revocations_since(0, 2).await.unwrap(), all[..2].to_vec());
    assert_eq!(store.revocations_since(id2, 2).await.unwrap(), all[2..4].to_vec());
    assert!(store.revocations_since(id5, 10).await.unwrap().is_empty());

    // Entries still in force: expiry strictly after now.
    let (newest, live) = store.live_revocations(NOW).await.unwrap();
    assert_eq!(newest, id5);
    assert_eq!(live.into_iter().collect::<HashSet<_>>(), HashSet::from([token, family.clone(), ghost]));
    let (newest, live) = store.live_revocations(NOW + 60).await.unwrap();
    assert_eq!(newest, id5);
    assert_eq!(live, [family]);
    assert_eq!(store.live_revocations(NOW + 1000).await.unwrap(), (id5, vec![]));
}

/// A user revocation and a disconnection go through the log like the others, each with its time
/// (the disconnection's in milliseconds); a starting node loads the revocation while it is in force, never the disconnection;
/// both are pruned once expired. Neither needs the user to have a row, nor touches their logins
/// (ending those is the caller's: `Store::revoke_user`).
async fn user_revocations(store: DynStore) {
    store.create_user(&user("alice")).await.unwrap();
    store.create_family("fam", "alice", "jti-1", NOW + 100).await.unwrap();
    let alice = Revocation::user("alice", NOW + 1, NOW + 500);
    let bob = Revocation::user("bob", NOW - 5, NOW + 50);
    let closed = Revocation::disconnect("alice", NOW * 1000 + 999, NOW + 60);
    assert_eq!(alice.kind, RevocationKind::User { issued_before: NOW + 1 });
    assert_eq!(closed.kind, RevocationKind::Disconnect { at_ms: NOW * 1000 + 999 });
    let id1 = store.revoke(&alice, NOW).await.unwrap();
    let id2 = store.revoke(&bob, NOW).await.unwrap();
    let id3 = store.revoke(&closed, NOW).await.unwrap();
    assert!(!family_revoked(&store, "alice", "fam").await);
    assert_eq!(
        store.revocations_since(0, 10).await.unwrap(),
        [(id1, alice.clone()), (id2, bob.clone()), (id3, closed.clone())],
        "the log carries each with its kind and time"
    );
    let (newest, live) = store.live_revocations(NOW).await.unwrap();
    assert_eq!(newest, id3);
    assert_eq!(
        live.into_iter().collect::<HashSet<_>>(),
        HashSet::from([alice.clone(), bob]),
        "a disconnection is never in force"
    );
    assert_eq!(store.live_revocations(NOW + 100).await.unwrap().1, std::slice::from_ref(&alice));
    assert_eq!(
        store.prune(NOW + 100).await.unwrap(),
        store::Pruned { logins: 1, revocations: 2, publications: 0 }
    );
    assert_eq!(log(&store).await, [alice]);
}

/// Many concurrent log writers and a follower reading `after last seen` the whole time, as every
/// node does: the follower must end up with every entry, never having jumped over one.
async fn revocation_log_follower_misses_nothing(store: DynStore) {
    const WRITERS: usize = 6;
    const EACH: usize = 25;
    let writers: Vec<JoinHandle<Vec<i64>>> = (0..WRITERS)
        .map(|w| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut ids = Vec::new();
                for i in 0..EACH {
                    let revocation = token_revocation(&format!("jti-{w}-{i}"), "u", NOW + 100);
                    ids.push(store.revoke(&revocation, NOW).await.unwrap());
                }
                ids
            })
        })
        .collect();

    fn follow(batch: Vec<(i64, Revocation)>, last: &mut i64, seen: &mut Vec<i64>) {
        for (id, _) in batch {
            assert!(id > *last, "ids go up");
            *last = id;
            seen.push(id);
        }
    }
    let (mut last, mut seen) = (0, Vec::new());
    while !writers.iter().all(|w| w.is_finished()) {
        let batch = store.revocations_since(last, 7).await.unwrap();
        follow(batch, &mut last, &mut seen);
        tokio::task::yield_now().await;
    }
    let mut written = HashSet::new();
    for writer in writers {
        written.extend(writer.await.unwrap());
    }
    loop {
        let batch = store.revocations_since(last, 7).await.unwrap();
        if batch.is_empty() {
            break;
        }
        follow(batch, &mut last, &mut seen);
    }
    assert_eq!(written.len(), WRITERS * EACH, "ids are unique");
    assert_eq!(seen.len(), written.len(), "the follower skipped entries");
    assert_eq!(seen.into_iter().collect::<HashSet<_>>(), written);
}

fn api_key(name: &str, scopes: &[&str]) -> ApiKeyRecord {
    ApiKeyRecord {
        name: name.to_owned(),
        key_hash: format!("{:0>64}", hex::encode(name)),
        scopes: scopes.iter().map(|s| s.to_string()).collect(),
        created_at: NOW,
        last_used_at: None,
    }
}

async fn api_keys(store: DynStore) {
    assert!(store.api_keys().await.unwrap().is_empty());
    let backend = api_key("backend", &["publish", "read"]);
    let ops = api_key("ops.v2", &["disconnect"]);
    store.create_api_key(&ops).await.unwrap();
    store.create_api_key(&backend).await.unwrap();
    // By name, scopes in the order written, and every field as written.
    assert_eq!(store.api_keys().await.unwrap(), vec![backend.clone(), ops.clone()]);

    // A taken name is a conflict, and changes nothing.
    let mut again = api_key("backend", &["disconnect"]);
    again.key_hash = "f".repeat(64);
    assert!(matches!(store.create_api_key(&again).await, Err(StoreError::Conflict)));
    assert_eq!(store.api_keys().await.unwrap(), vec![backend.clone(), ops.clone()]);

    // Last used only moves forward.
    store.touch_api_key("backend", NOW + 60).await.unwrap();
    store.touch_api_key("backend", NOW + 30).await.unwrap();
    store.touch_api_key("nobody", NOW).await.unwrap();
    let keys = store.api_keys().await.unwrap();
    assert_eq!(keys[0].last_used_at, Some(NOW + 60));
    assert_eq!(keys[1].last_used_at, None);

    assert!(store.delete_api_key("backend").await.unwrap());
    assert!(!store.delete_api_key("backend").await.unwrap(), "already gone");
    assert_eq!(store.api_keys().await.unwrap(), vec![ops]);
    // The name is free again.
    store.create_api_key(&again).await.unwrap();
}
