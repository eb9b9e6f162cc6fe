//! The key files: their names (`<alg>-<created>-<random>.pem`), what each is doing now, and
//! generating and loading one.

use super::RETENTION_MARGIN;
use anyhow::Context;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey};
use serde_json::{json, Value};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub(crate) fn is_asymmetric(alg: Algorithm) -> bool {
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
pub(crate) struct KeyFile {
    pub kid: String,
    pub alg: Algorithm,
    pub created: i64,
    pub path: PathBuf,
}

/// What a key is doing now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KeyState {
    Signing,
    /// Verifies until this instant (unix seconds), then is ignored.
    Verifying(i64),
    Expired,
}

pub(super) fn parse_name(path: &Path) -> Option<KeyFile> {
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
pub(crate) fn scan(dir: &Path) -> anyhow::Result<Vec<KeyFile>> {
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
pub(crate) fn states(
    keys: &[KeyFile],
    alg: Algorithm,
    refresh_ttl: Duration,
    now: i64,
) -> Vec<(KeyFile, KeyState)> {
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
pub(crate) fn generate(dir: &Path, alg: Algorithm) -> anyhow::Result<KeyFile> {
    use p256::pkcs8::EncodePrivateKey;
    let tag = alg_tag(alg).context("only RS256, ES256 and EdDSA keys are generated")?;
    ensure_private_dir(dir)?;
    let newest = scan(dir)?.last().map_or(0, |k| k.created);
    let created = crate::clock::now_secs().max(newest + 1);
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

pub(super) fn ensure_private_dir(dir: &Path) -> anyhow::Result<()> {
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

/// Loads a key file; refuses one that group or others can read or write
/// ([`crate::private_files::OpenToOthers`]).
pub(crate) fn load(file: &KeyFile) -> anyhow::Result<LoadedKey> {
    use p256::pkcs8::DecodePrivateKey;
    let bytes = crate::private_files::read_private(&file.path)?
        .with_context(|| format!("reading {}: no such file", file.path.display()))?;
    let pem = p256::elliptic_curve::zeroize::Zeroizing::new(
        String::from_utf8(bytes).with_context(|| format!("reading {}: not UTF-8", file.path.display()))?,
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
