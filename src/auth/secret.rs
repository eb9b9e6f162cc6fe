//! The HS256 secret. There is no built-in one: without a configured file, a 256-bit secret is
//! generated on first start into the data folder (mode 0600) and reused afterwards, so tokens
//! survive restarts. The asymmetric keys are the key ring's (`keyring.rs`).

use anyhow::Context;
use jsonwebtoken::{DecodingKey, EncodingKey};
use rand::RngCore;
use sha2::{Digest, Sha256};
use std::fs;
use std::io::Write;
use std::path::Path;

const SECRET_FILE: &str = "jwt-secret.key";
const MIN_SECRET_BYTES: usize = 32;

/// An HS256 secret, ready to sign and verify, and the `kid` naming it (a hash prefix: names the
/// secret, reveals nothing of it).
pub struct HmacSecret {
    pub(crate) kid: String,
    pub(crate) encoding: EncodingKey,
    pub(crate) decoding: DecodingKey,
}

impl HmacSecret {
    fn new(secret: Vec<u8>) -> HmacSecret {
        let digest = Sha256::digest(&secret);
        HmacSecret {
            kid: format!("hs256-{}", hex::encode(&digest[..6])),
            encoding: EncodingKey::from_secret(&secret),
            decoding: DecodingKey::from_secret(&secret),
        }
    }

    /// Loads the configured secret file, or the generated one in `data_dir`, creating it if absent.
    pub fn load(configured: Option<&Path>, data_dir: &Path) -> anyhow::Result<HmacSecret> {
        if let Some(path) = configured {
            let raw = fs::read(path).with_context(|| format!("reading {}", path.display()))?;
            let secret = raw.trim_ascii().to_vec();
            anyhow::ensure!(
                secret.len() >= MIN_SECRET_BYTES,
                "{}: a secret needs at least {MIN_SECRET_BYTES} bytes",
                path.display()
            );
            return Ok(HmacSecret::new(secret));
        }
        let path = data_dir.join(SECRET_FILE);
        match fs::read_to_string(&path) {
            Ok(text) => {
                let secret =
                    hex::decode(text.trim()).with_context(|| format!("{}: not a hex key", path.display()))?;
                anyhow::ensure!(secret.len() >= MIN_SECRET_BYTES, "{}: key too short", path.display());
                Ok(HmacSecret::new(secret))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut secret = vec![0u8; MIN_SECRET_BYTES];
                rand::rngs::OsRng.fill_bytes(&mut secret);
                write_private(&path, hex::encode(&secret).as_bytes())?;
                tracing::info!(path = %path.display(), "generated a new signing key");
                Ok(HmacSecret::new(secret))
            }
            Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }
}

/// Creates `path` readable by its owner only. Fails rather than overwrite an existing file.
fn write_private(path: &Path, contents: &[u8]) -> anyhow::Result<()> {
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path).with_context(|| format!("creating {}", path.display()))?;
    file.write_all(contents)?;
    file.sync_all()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_key_is_private_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let first = HmacSecret::load(None, dir.path()).unwrap();
        let second = HmacSecret::load(None, dir.path()).unwrap();
        assert_eq!(first.kid, second.kid);
        let stored = fs::read_to_string(dir.path().join(SECRET_FILE)).unwrap();
        assert_eq!(hex::decode(stored.trim()).unwrap().len(), 32);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(dir.path().join(SECRET_FILE)).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn short_configured_secret_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("short");
        fs::write(&file, "too-short").unwrap();
        let err = HmacSecret::load(Some(&file), dir.path()).err().expect("a short secret is refused");
        assert!(err.to_string().contains("at least 32 bytes"), "{err:#}");
    }
}
