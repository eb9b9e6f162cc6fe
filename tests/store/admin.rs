//! The admin role and the audit log, on both backends.

use crate::user;
use wsguard::store::{AuditEntry, DynStore};

pub async fn admin_role(store: DynStore) {
    store.create_user(&user("alice")).await.unwrap();
    assert!(!store.user("alice").await.unwrap().unwrap().admin, "no role by default");
    assert!(store.set_admin("alice", true).await.unwrap());
    assert!(store.user("alice").await.unwrap().unwrap().admin);
    let (found, _) = store.principal("alice", "no-login").await.unwrap().unwrap();
    assert!(found.admin, "the principal's row carries it too");
    assert!(store.set_admin("alice", false).await.unwrap());
    assert!(!store.user("alice").await.unwrap().unwrap().admin);
    assert!(!store.set_admin("nobody", true).await.unwrap());
    let root = wsguard::store::UserRecord { admin: true, ..user("root") };
    store.create_user(&root).await.unwrap();
    assert!(store.list_users().await.unwrap().iter().any(|u| u.username == "root" && u.admin));
}

fn entry(action: &str, target: &str, at_ms: i64) -> AuditEntry {
    AuditEntry {
        id: 0,
        at_ms,
        actor: "root".into(),
        via: "console".into(),
        action: action.into(),
        target: target.into(),
        address: "192.0.2.7".into(),
        detail: "é and \"quotes\"".into(),
    }
}

pub async fn audit_log(store: DynStore) {
    assert!(store.audit_log(i64::MAX, 10).await.unwrap().is_empty());
    let mut ids = Vec::new();
    for (n, target) in ["a", "b", "c", "d"].into_iter().enumerate() {
        ids.push(store.append_audit(&entry("disconnect", target, 1_000 + n as i64)).await.unwrap());
    }
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
    let newest = store.audit_log(i64::MAX, 2).await.unwrap();
    let targets: Vec<&str> = newest.iter().map(|e| e.target.as_str()).collect();
    assert_eq!(targets, ["d", "c"]);
    assert_eq!(newest[0], AuditEntry { id: ids[3], ..entry("disconnect", "d", 1_003) });
    let older = store.audit_log(newest[1].id, 10).await.unwrap();
    let targets: Vec<&str> = older.iter().map(|e| e.target.as_str()).collect();
    assert_eq!(targets, ["b", "a"]);
    assert!(store.audit_log(ids[0], 10).await.unwrap().is_empty());
}
