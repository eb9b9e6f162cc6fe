//! Asymmetric signing keys (RS256, ES256, EdDSA) and their rotation. Each key is one private
//! PKCS#8 PEM file `<kid>.pem` in the keys folder (0700, files 0600); the `kid` names its algorithm
//! and creation time, so the folder alone is the whole state and nodes sharing it agree on it.
//! The newest key of the configured algorithm signs; an older one still verifies until every token
//! it signed has expired (`refresh_ttl` after a newer key replaced it), then it is ignored.

mod files;

use crate::private_files::OpenToOthers;
use anyhow::Context;
use files::ensure_private_dir;
pub(crate) use files::{generate, is_asymmetric, load, scan, states, KeyState, LoadedKey};
use jsonwebtoken::Algorithm;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

/// How often a server rereads the folder: the bound on how late it starts signing with a rotated key.
pub(crate) const RELOAD_INTERVAL: Duration = Duration::from_secs(10);
/// Rereads for an unknown `kid` happen at most this often, so made-up `kid`s cost nothing.
const MISS_RELOAD_INTERVAL: Duration = Duration::from_secs(1);
/// Kept beyond `refresh_ttl`: a node may sign with a replaced key until its next reload, and
/// verification allows some clock skew.
const RETENTION_MARGIN: Duration = Duration::from_secs(60);

/// The asymmetric algorithms wsguard signs with.
/// The keys in force at one reading of the folder.
struct Snapshot {
    current: Arc<LoadedKey>,
    verifying: HashMap<String, Arc<LoadedKey>>,
    jwks: Arc<Value>,
}

/// The keys of one algorithm in one folder, reread on demand.
pub struct KeyRing {
    dir: PathBuf,
    alg: Algorithm,
    refresh_ttl: Duration,
    snapshot: RwLock<Arc<Snapshot>>,
    last_miss_reload: Mutex<Instant>,
}

impl KeyRing {
    /// Loads the keys of `alg` in `dir`, generating the first one when there is none.
    pub fn open(dir: &Path, alg: Algorithm, refresh_ttl: Duration) -> anyhow::Result<KeyRing> {
        anyhow::ensure!(is_asymmetric(alg), "{alg:?} is not an asymmetric algorithm");
        ensure_private_dir(dir)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(dir)?.permissions().mode();
            if mode & 0o077 != 0 {
                tracing::warn!(dir = %dir.display(), mode = format!("{:o}", mode & 0o777), "the keys folder is open to others; 0700 keeps private keys private");
            }
        }
        if !scan(dir)?.iter().any(|k| k.alg == alg) {
            generate(dir, alg)?;
        }
        let snapshot = read(dir, alg, refresh_ttl, None)?;
        Ok(KeyRing {
            dir: dir.to_owned(),
            alg,
            refresh_ttl,
            snapshot: RwLock::new(Arc::new(snapshot)),
            // The first unknown kid rereads at once.
            last_miss_reload: Mutex::new(
                Instant::now().checked_sub(MISS_RELOAD_INTERVAL).unwrap_or_else(Instant::now),
            ),
        })
    }

    pub fn alg(&self) -> Algorithm {
        self.alg
    }

    fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot.read().expect("key ring lock").clone()
    }

    /// The key that signs.
    pub fn current(&self) -> Arc<LoadedKey> {
        self.snapshot().current.clone()
    }

    /// The key named `kid`, rereading the folder (at most once a second) when it is unknown.
    pub fn find(&self, kid: &str) -> Option<Arc<LoadedKey>> {
        if let Some(key) = self.snapshot().verifying.get(kid) {
            return Some(key.clone());
        }
        {
            let mut last = self.last_miss_reload.lock().expect("key ring lock");
            if last.elapsed() < MISS_RELOAD_INTERVAL {
                return None;
            }
            *last = Instant::now();
        }
        self.reload();
        self.snapshot().verifying.get(kid).cloned()
    }

    /// The public keys, as `GET /.well-known/jwks.json` serves them.
    pub fn jwks(&self) -> Arc<Value> {
        self.snapshot().jwks.clone()
    }

    /// Rereads the folder; keys already loaded are reused. A failure keeps the keys in force.
    pub fn reload(&self) {
        let previous = self.snapshot();
        match read(&self.dir, self.alg, self.refresh_ttl, Some(&previous)) {
            Ok(snapshot) => {
                if snapshot.current.kid != previous.current.kid {
                    tracing::info!(kid = %snapshot.current.kid, "signing with a new key");
                }
                *self.snapshot.write().expect("key ring lock") = Arc::new(snapshot);
            }
            Err(err) => tracing::warn!(error = %format!("{err:#}"), "rereading the signing keys failed"),
        }
    }
}

fn read(
    dir: &Path,
    alg: Algorithm,
    refresh_ttl: Duration,
    previous: Option<&Snapshot>,
) -> anyhow::Result<Snapshot> {
    let mut verifying = HashMap::new();
    let mut current = None;
    let mut jwks = Vec::new();
    for (file, state) in states(&scan(dir)?, alg, refresh_ttl, crate::clock::now_secs()) {
        if state == KeyState::Expired {
            continue;
        }
        let key = match previous.and_then(|p| p.verifying.get(&file.kid)) {
            Some(key) => key.clone(),
            None => match load(&file) {
                Ok(key) => Arc::new(key),
                // A key open to others stops the start, whatever its state: fix it before serving.
                // A running server keeps its keys in force (and says why) instead.
                Err(err) if previous.is_none() && err.is::<OpenToOthers>() => return Err(err),
                // A broken old key must not stop the others; a broken signing key must.
                Err(err) if state != KeyState::Signing => {
                    tracing::warn!(kid = %file.kid, error = %format!("{err:#}"), "skipping an unreadable key");
                    continue;
                }
                Err(err) => return Err(err.context(format!("loading {}", file.path.display()))),
            },
        };
        jwks.push(key.jwk.clone());
        if state == KeyState::Signing {
            current = Some(key.clone());
        }
        verifying.insert(file.kid, key);
    }
    let current = current.with_context(|| format!("no {alg:?} key in {}", dir.display()))?;
    Ok(Snapshot { current, verifying, jwks: Arc::new(json!({ "keys": jwks })) })
}

#[cfg(test)]
mod tests {
    use super::files::parse_name;
    use super::*;

    #[test]
    fn rotation_keeps_old_keys_until_their_tokens_expire() {
        let dir = tempfile::tempdir().unwrap();
        let ring = KeyRing::open(dir.path(), Algorithm::ES256, Duration::from_secs(600)).unwrap();
        let first = ring.current().kid.clone();
        let second = generate(dir.path(), Algorithm::ES256).unwrap();
        ring.reload();
        assert_eq!(ring.current().kid, second.kid);
        assert!(ring.find(&first).is_some());
        assert_eq!(ring.jwks()["keys"].as_array().unwrap().len(), 2);

        let keys = scan(dir.path()).unwrap();
        let later = second.created + 600 + 61;
        let states = states(&keys, Algorithm::ES256, Duration::from_secs(600), later);
        assert_eq!(states[0].1, KeyState::Expired);
        assert_eq!(states[1].1, KeyState::Signing);
    }

    #[test]
    fn an_unknown_kid_rereads_the_folder_at_most_once_a_second() {
        let dir = tempfile::tempdir().unwrap();
        let ring = KeyRing::open(dir.path(), Algorithm::EdDSA, Duration::from_secs(600)).unwrap();
        assert!(ring.find("eddsa-1-00000000").is_none());
        // Another node (or the CLI) rotates: this ring has not seen the new key yet.
        let newer = generate(dir.path(), Algorithm::EdDSA).unwrap();
        assert!(ring.find(&newer.kid).is_none(), "no reread within a second of the last");
        std::thread::sleep(MISS_RELOAD_INTERVAL);
        assert!(ring.find(&newer.kid).is_some(), "an unknown kid rereads the folder");
        assert_eq!(ring.current().kid, newer.kid);
        let newest = generate(dir.path(), Algorithm::EdDSA).unwrap();
        assert!(ring.find(&newest.kid).is_none(), "made-up kids cannot make it reread more often");
    }

    #[test]
    fn key_files_are_private() {
        let dir = tempfile::tempdir().unwrap();
        let keys = dir.path().join("keys");
        let ring = KeyRing::open(&keys, Algorithm::EdDSA, Duration::from_secs(600)).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(fs::metadata(&keys).unwrap().permissions().mode() & 0o777, 0o700);
            let file = keys.join(format!("{}.pem", ring.current().kid));
            assert_eq!(fs::metadata(file).unwrap().permissions().mode() & 0o777, 0o600);
        }
        assert!(!ring.jwks().to_string().contains("\"d\""), "no private part in the JWKS");
    }

    #[cfg(unix)]
    #[test]
    fn key_files_open_to_others_stop_the_start_and_are_not_taken_up_later() {
        use crate::private_files::set_mode;
        let dir = tempfile::tempdir().unwrap();
        let ttl = Duration::from_secs(600);
        let old = KeyRing::open(dir.path(), Algorithm::EdDSA, ttl).unwrap().current().kid.clone();
        let newer = generate(dir.path(), Algorithm::EdDSA).unwrap();
        let old_path = dir.path().join(format!("{old}.pem"));
        for lax in [&old_path, &newer.path] {
            set_mode(lax, 0o644);
            let err = KeyRing::open(dir.path(), Algorithm::EdDSA, ttl).err().expect("refused");
            let text = format!("{err:#}");
            assert!(text.contains(&format!("chmod 600 {}", lax.display())), "{text}");
            set_mode(lax, 0o600);
        }
        // A running ring does not sign with a key others can read; it keeps the key in force.
        let ring = KeyRing::open(dir.path(), Algorithm::EdDSA, ttl).unwrap();
        assert_eq!(ring.current().kid, newer.kid);
        let lax = generate(dir.path(), Algorithm::EdDSA).unwrap();
        set_mode(&lax.path, 0o640);
        ring.reload();
        assert_eq!(ring.current().kid, newer.kid);
        set_mode(&lax.path, 0o600);
        ring.reload();
        assert_eq!(ring.current().kid, lax.kid);
    }

    #[test]
    fn names_that_are_not_keys_are_skipped() {
        for name in ["x.pem", "rs256-12-zz.pem", "hs256-12-ab.pem", "rs256-12-ab.txt", "rs256--ab.pem"] {
            assert_eq!(parse_name(Path::new(name)), None, "{name}");
        }
        assert!(parse_name(Path::new("eddsa-12-ab.pem")).is_some());
    }
}
