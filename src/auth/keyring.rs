//! Asymmetric signing keys (RS256, ES256, EdDSA) and their rotation. Each key is one private
//! PKCS#8 PEM file `<kid>.pem` in the keys folder (0700, files 0600); the `kid` names its algorithm
//! and creation time, so the folder alone is the whole state and nodes sharing it agree on it.
//! The newest key of the configured algorithm signs; an older one still verifies until every token
//! it signed has expired (`refresh_ttl` after a newer key replaced it), then it is ignored.

use anyhow::Context;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

/// The keys folder inside the data folder, unless configured elsewhere.
pub const KEYS_DIR: &str = "keys";
/// How often a server rereads the folder: the bound on how late it starts signing with a rotated key.
pub const RELOAD_INTERVAL: Duration = Duration::from_secs(10);
/// Rereads for an unknown `kid` happen at most this often, so made-up `kid`s cost nothing.
const MISS_RELOAD_INTERVAL: Duration = Duration::from_secs(1);
/// Kept beyond `refresh_ttl`: a node may sign with a replaced key until its next reload, and
/// verification allows some clock skew.
const RETENTION_MARGIN: Duration = Duration::from_secs(60);

/// The asymmetric algorithms wsguard signs with.
pub fn is_asymmetric(alg: Algorithm) -> bool {
    matches!(alg, Algorithm::RS256 | Algorithm::ES256 | Algorithm::EdDSA)
}

fn alg_tag(alg: Algorithm) -> Option<&'static str> {
    match alg {
        Algorithm::RS256 => Some("rs256"),
        Algorithm::ES256 => Some("es256"),
        Algorithm::EdDSA => Some("eddsa"),
        _ => None,
    }
}

fn alg_of_tag(tag: &str) -> Option<Algorithm> {
    match tag {
        "rs256" => Some(Algorithm::RS256),
        "es256" => Some(Algorithm::ES256),
        "eddsa" => Some(Algorithm::EdDSA),
        _ => None,
    }
}

/// A key file, as its name describes it: `<alg>-<created unix seconds>-<random hex>.pem`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyFile {
    pub kid: String,
    pub alg: Algorithm,
    pub created: i64,
    pub path: PathBuf,
}

/// What a key is doing now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyState {
    Signing,
    /// Verifies until this instant (unix seconds), then is ignored.
    Verifying(i64),
    Expired,
}

fn parse_name(path: &Path) -> Option<KeyFile> {
    let kid = path.file_name()?.to_str()?.strip_suffix(".pem")?;
    let mut parts = kid.split('-');
    let (tag, created, random) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some()
        || created.is_empty()
        || !created.bytes().all(|b| b.is_ascii_digit())
        || random.is_empty()
        || !random.bytes().all(|b| b.is_ascii_hexdigit())
    {
        return None;
    }
    Some(KeyFile {
        kid: kid.to_owned(),
        alg: alg_of_tag(tag)?,
        created: created.parse().ok()?,
        path: path.into(),
    })
}

/// Every key file in `dir`, oldest first (by creation, then `kid`). Other files are skipped.
pub fn scan(dir: &Path) -> anyhow::Result<Vec<KeyFile>> {
    let mut keys = Vec::new();
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(keys),
        Err(e) => return Err(e).with_context(|| format!("reading {}", dir.display())),
    };
    for entry in entries {
        if let Some(key) = parse_name(&entry?.path()) {
            keys.push(key);
        }
    }
    keys.sort_by(|a, b| (a.created, &a.kid).cmp(&(b.created, &b.kid)));
    Ok(keys)
}

/// The state of each key of `alg` among `keys` (oldest first) at `now`, given the refresh TTL.
pub fn states(keys: &[KeyFile], alg: Algorithm, refresh_ttl: Duration, now: i64) -> Vec<(KeyFile, KeyState)> {
    let retention = (refresh_ttl + RETENTION_MARGIN).as_secs() as i64;
    let same: Vec<&KeyFile> = keys.iter().filter(|k| k.alg == alg).collect();
    same.iter()
        .enumerate()
        .map(|(i, key)| {
            let state = match same.get(i + 1) {
                None => KeyState::Signing,
                Some(next) if now < next.created + retention => KeyState::Verifying(next.created + retention),
                Some(_) => KeyState::Expired,
            };
            ((*key).clone(), state)
        })
        .collect()
}

/// Creates a new key of `alg` in `dir`, newer than every key there; returns its file.
pub fn generate(dir: &Path, alg: Algorithm) -> anyhow::Result<KeyFile> {
    use p256::pkcs8::EncodePrivateKey;
    let tag = alg_tag(alg).context("only RS256, ES256 and EdDSA keys are generated")?;
    ensure_private_dir(dir)?;
    let newest = scan(dir)?.last().map_or(0, |k| k.created);
    let created = super::tokens::now().max(newest + 1);
    let kid = format!("{tag}-{created}-{}", hex::encode(rand::random::<[u8; 4]>()));
    let mut rng = rand::rngs::OsRng;
    let pem = match alg {
        Algorithm::RS256 => rsa::RsaPrivateKey::new(&mut rng, 2048)?.to_pkcs8_pem(Default::default())?,
        Algorithm::ES256 => p256::SecretKey::random(&mut rng).to_pkcs8_pem(Default::default())?,
        _ => {
            let mut seed = p256::elliptic_curve::zeroize::Zeroizing::new([0u8; 32]);
            rand::RngCore::fill_bytes(&mut rng, seed.as_mut());
            ed25519_dalek::SigningKey::from_bytes(&seed).to_pkcs8_pem(Default::default())?
        }
    };
    // Written aside then renamed: a node reading the folder meanwhile never sees half a key.
    let path = dir.join(format!("{kid}.pem"));
    let partial = dir.join(format!(".{kid}.pem.partial"));
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(&partial).with_context(|| format!("creating {}", partial.display()))?;
    file.write_all(pem.as_bytes())?;
    file.sync_all()?;
    fs::rename(&partial, &path).with_context(|| format!("creating {}", path.display()))?;
    tracing::info!(%kid, "generated a new signing key");
    Ok(KeyFile { kid, alg, created, path })
}

fn ensure_private_dir(dir: &Path) -> anyhow::Result<()> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir).with_context(|| format!("creating {}", dir.display()))
}

/// A loaded key: what signs, what verifies, and its public JWK.
pub struct LoadedKey {
    pub kid: String,
    pub encoding: EncodingKey,
    pub decoding: DecodingKey,
    pub jwk: Value,
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn load(file: &KeyFile) -> anyhow::Result<LoadedKey> {
    use p256::pkcs8::DecodePrivateKey;
    let pem = p256::elliptic_curve::zeroize::Zeroizing::new(
        fs::read_to_string(&file.path).with_context(|| format!("reading {}", file.path.display()))?,
    );
    let (kid, bytes) = (&file.kid, pem.as_bytes());
    let (encoding, decoding, jwk) = match file.alg {
        Algorithm::RS256 => {
            use rsa::traits::PublicKeyParts;
            let key = rsa::RsaPrivateKey::from_pkcs8_pem(&pem)?;
            let (n, e) = (b64(&key.n().to_bytes_be()), b64(&key.e().to_bytes_be()));
            (
                EncodingKey::from_rsa_pem(bytes)?,
                DecodingKey::from_rsa_components(&n, &e)?,
                json!({"kty": "RSA", "kid": kid, "alg": "RS256", "use": "sig", "n": n, "e": e}),
            )
        }
        Algorithm::ES256 => {
            use p256::elliptic_curve::sec1::ToEncodedPoint;
            let point = p256::SecretKey::from_pkcs8_pem(&pem)?.public_key().to_encoded_point(false);
            let (x, y) = (b64(point.x().context("no x")?), b64(point.y().context("no y")?));
            (
                EncodingKey::from_ec_pem(bytes)?,
                DecodingKey::from_ec_components(&x, &y)?,
                json!({"kty": "EC", "crv": "P-256", "kid": kid, "alg": "ES256", "use": "sig", "x": x, "y": y}),
            )
        }
        _ => {
            let x = b64(ed25519_dalek::SigningKey::from_pkcs8_pem(&pem)?.verifying_key().as_bytes());
            (
                EncodingKey::from_ed_pem(bytes)?,
                DecodingKey::from_ed_components(&x)?,
                json!({"kty": "OKP", "crv": "Ed25519", "kid": kid, "alg": "EdDSA", "use": "sig", "x": x}),
            )
        }
    };
    // A file that does not sign what its public half verifies must fail here, not at a login.
    let mut validation = jsonwebtoken::Validation::new(file.alg);
    validation.required_spec_claims.clear();
    validation.validate_exp = false;
    let probe = jsonwebtoken::encode(&jsonwebtoken::Header::new(file.alg), &json!({}), &encoding)?;
    jsonwebtoken::decode::<Value>(&probe, &decoding, &validation)
        .context("the key does not verify itself")?;
    Ok(LoadedKey { kid: kid.clone(), encoding, decoding, jwk })
}

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
    for (file, state) in states(&scan(dir)?, alg, refresh_ttl, super::tokens::now()) {
        if state == KeyState::Expired {
            continue;
        }
        let key = match previous.and_then(|p| p.verifying.get(&file.kid)) {
            Some(key) => key.clone(),
            None => match load(&file) {
                Ok(key) => Arc::new(key),
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

    #[test]
    fn names_that_are_not_keys_are_skipped() {
        for name in ["x.pem", "rs256-12-zz.pem", "hs256-12-ab.pem", "rs256-12-ab.txt", "rs256--ab.pem"] {
            assert_eq!(parse_name(Path::new(name)), None, "{name}");
        }
        assert!(parse_name(Path::new("eddsa-12-ab.pem")).is_some());
    }
}
