//! This node's copy of the key table, reread from the store every second: a key revoked anywhere
//! (the CLI, with every node sharing one database) stops working here within about a second, and
//! a call costs no database round trip. When the table could not be reread for a few seconds (the
//! database is unreachable), keys are refused rather than trusted: a revocation made meanwhile
//! would go unseen.
//!
//! Why a copy rather than a query per call: a lookup would put a round trip to the shared database
//! in every call of every node; the copy costs one query a second per node, and a call a hash and
//! a scan in memory.

use super::{digest, Scopes};
use crate::clock::now_secs as now;
use crate::store::{ApiKeyRecord, DynStore, Store, StoreResult};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};
use subtle::{ConditionallySelectable, ConstantTimeEq};
use tokio_util::sync::CancellationToken;

/// How often the table is reread: the bound on how late a revocation made elsewhere takes effect.
pub(crate) const RELOAD_EVERY: Duration = Duration::from_secs(1);
/// A table older than this is not trusted.
const STALE_AFTER: Duration = Duration::from_secs(5);
/// A key the table lacks makes the node reread it, so that a key added a moment ago works at once;
/// those rereads start at least this far apart, which bounds what wrong keys cost the database
/// (50 reads a second per node) and slows guessing.
const REREAD_ON_MISS_SPACING: Duration = Duration::from_millis(20);
/// A key's "last used" is written at most this often (seconds), per node.
const TOUCH_EVERY_SECS: i64 = 60;

/// Who called: the key's name and scopes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Caller {
    /// Shared with the table: a call clones no string.
    pub(crate) name: Arc<str>,
    pub(crate) scopes: Scopes,
}

/// The table could not be reread lately; no key is trusted until it is.
#[derive(Debug)]
pub(crate) struct Stale;

struct Entry {
    digest: [u8; 32],
    caller: Caller,
    last_used: Option<i64>,
}

impl Entry {
    fn from_record(record: ApiKeyRecord) -> Option<Entry> {
        let mut digest = [0u8; 32];
        if hex::decode_to_slice(&record.key_hash, &mut digest).is_err() {
            tracing::warn!(
                key = record.name,
                "an API key's stored hash is not a SHA-256; the key is ignored"
            );
            return None;
        }
        let scopes = Scopes::from_names(record.scopes.iter().map(String::as_str));
        Some(Entry {
            digest,
            caller: Caller { name: record.name.into(), scopes },
            last_used: record.last_used_at,
        })
    }
}

#[derive(Default)]
struct Table {
    entries: Vec<Entry>,
    /// When its last read started; `None` before the first read.
    loaded: Option<Instant>,
}

#[derive(Default)]
pub(crate) struct ApiKeys {
    table: RwLock<Table>,
    /// One reread on a miss at a time; the calls that missed meanwhile wait for it.
    rereading: tokio::sync::Mutex<()>,
    /// Keys used on this node since the last reread, and when (unix seconds).
    used: Mutex<HashMap<Arc<str>, i64>>,
}

impl ApiKeys {
    /// The caller whose key `presented` is, `None` for no key of the table.
    pub(crate) fn find(&self, presented: &str) -> Result<Option<Caller>, Stale> {
        let digest = digest(presented);
        let table = self.table.read().expect("API key table lock poisoned");
        if table.loaded.is_none_or(|at| at.elapsed() >= STALE_AFTER) {
            return Err(Stale);
        }
        let Some(index) = position(&table.entries, &digest) else {
            return Ok(None);
        };
        let caller = table.entries[index].caller.clone();
        drop(table);
        let mut used = self.used.lock().expect("API key use lock poisoned");
        // Most calls find their key noted already: no new name to allocate.
        if let Some(at) = used.get_mut(&caller.name) {
            *at = now();
        } else {
            used.insert(caller.name.clone(), now());
        }
        Ok(Some(caller))
    }

    /// As [`find`](Self::find), but a key the table lacks is looked for again in a read of the
    /// store that started after the call arrived (one read serves every call waiting for it). A
    /// store that fails the read leaves the answer to the copy.
    pub(crate) async fn find_fresh(
        &self,
        presented: &str,
        store: &dyn Store,
    ) -> Result<Option<Caller>, Stale> {
        let arrived = Instant::now();
        if let found @ (Ok(Some(_)) | Err(_)) = self.find(presented) {
            return found;
        }
        let _rereading = self.rereading.lock().await;
        let started = self.table.read().expect("API key table lock poisoned").loaded;
        if started.is_none_or(|started| started < arrived) {
            if let Some(started) = started {
                tokio::time::sleep_until((started + REREAD_ON_MISS_SPACING).into()).await;
            }
            if let Err(err) = self.read_table(store).await {
                tracing::warn!(error = %err, "rereading the API keys for an unknown key failed");
            }
        }
        self.find(presented)
    }

    /// Writes when keys were last used (where the stored time is a minute old or more), then
    /// rereads the table.
    pub(crate) async fn reload(&self, store: &dyn Store) -> StoreResult<()> {
        self.write_last_used(store).await?;
        self.read_table(store).await
    }

    async fn read_table(&self, store: &dyn Store) -> StoreResult<()> {
        let started = Instant::now();
        let entries = store.api_keys().await?.into_iter().filter_map(Entry::from_record).collect();
        *self.table.write().expect("API key table lock poisoned") = Table { entries, loaded: Some(started) };
        Ok(())
    }

    async fn write_last_used(&self, store: &dyn Store) -> StoreResult<()> {
        let used = std::mem::take(&mut *self.used.lock().expect("API key use lock poisoned"));
        let due: Vec<(Arc<str>, i64)> = {
            let table = self.table.read().expect("API key table lock poisoned");
            used.into_iter()
                .filter(|(name, at)| {
                    let stored = table.entries.iter().find(|e| e.caller.name == *name);
                    stored.is_some_and(|e| e.last_used.is_none_or(|last| at - last >= TOUCH_EVERY_SECS))
                })
                .collect()
        };
        for (name, at) in due {
            store.touch_api_key(&name, at).await?;
        }
        Ok(())
    }

    /// Reads the table now (failing if the store does not answer), then every [`RELOAD_EVERY`]
    /// until `shutdown`.
    pub(crate) async fn follow(
        self: Arc<Self>,
        store: DynStore,
        shutdown: CancellationToken,
    ) -> StoreResult<()> {
        self.reload(store.as_ref()).await?;
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(RELOAD_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tick.tick() => {}
                }
                if let Err(err) = self.reload(store.as_ref()).await {
                    tracing::warn!(error = %err, "rereading the API keys failed");
                }
            }
        });
        Ok(())
    }
}

/// The index of the entry whose digest is `digest`. Every entry is compared, in constant time,
/// whatever matches: the time taken says how many keys there are, never which one matched or how
/// close a wrong key came.
fn position(entries: &[Entry], digest: &[u8; 32]) -> Option<usize> {
    let mut found = u64::MAX;
    for (index, entry) in entries.iter().enumerate() {
        found.conditional_assign(&(index as u64), entry.digest.ct_eq(digest));
    }
    (found != u64::MAX).then_some(found as usize)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::api_keys::{digest_hex, generate, Scope};

    fn record(name: &str, key: &str, scopes: &[&str]) -> ApiKeyRecord {
        ApiKeyRecord {
            name: name.to_owned(),
            key_hash: digest_hex(key),
            scopes: scopes.iter().map(|s| s.to_string()).collect(),
            created_at: 0,
            last_used_at: None,
        }
    }

    fn loaded(records: Vec<ApiKeyRecord>) -> ApiKeys {
        let keys = ApiKeys::default();
        *keys.table.write().unwrap() = Table {
            entries: records.into_iter().filter_map(Entry::from_record).collect(),
            loaded: Some(Instant::now()),
        };
        keys
    }

    #[test]
    fn a_key_is_found_by_its_digest_only() {
        let (a, b) = (generate(), generate());
        let keys = loaded(vec![record("a", &a, &["read"]), record("b", &b, &["publish", "read"])]);
        let found = keys.find(&b).unwrap().unwrap();
        assert_eq!(&*found.name, "b");
        assert!(found.scopes.contains(Scope::Publish));
        assert_eq!(&*keys.find(&a).unwrap().unwrap().name, "a");
        assert_eq!(keys.find(&generate()).unwrap(), None);
        assert_eq!(keys.find("").unwrap(), None);
        assert_eq!(keys.find(&digest_hex(&a)).unwrap(), None, "the stored hash is not a key");
        assert!(keys.used.lock().unwrap().contains_key("a"));
    }

    #[test]
    fn a_table_never_read_or_gone_stale_trusts_no_key() {
        let key = generate();
        assert!(ApiKeys::default().find(&key).is_err());
        let keys = loaded(vec![record("a", &key, &["read"])]);
        keys.table.write().unwrap().loaded = Instant::now().checked_sub(STALE_AFTER);
        assert!(keys.find(&key).is_err());
    }

    #[test]
    fn a_malformed_stored_hash_is_skipped() {
        let key = generate();
        let mut bad = record("bad", &key, &["read"]);
        bad.key_hash = "zz".to_owned();
        let keys = loaded(vec![bad, record("good", &generate(), &["read"])]);
        assert_eq!(keys.find(&key).unwrap(), None);
    }
}
