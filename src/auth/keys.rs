//! Signing keys. There is no built-in secret: without a configured one, a 256-bit key is generated
//! on first start into the data folder (mode 0600) and reused afterwards, so tokens survive restarts.

use anyhow::Context;
use rand::RngCore;
use sha2::{Digest, Sha256};
use std::fs;
use std::io::Write;
use std::path::Path;

pub const SECRET_FILE: &str = "jwt-secret.key";
const MIN_SECRET_BYTES: usize = 32;

/// An HS256 secret and the `kid` naming it (a hash prefix: names the key, reveals nothing of it).
pub struct HmacKey {
    pub kid: String,
    pub secret: Vec<u8>,
}

impl HmacKey {
    fn new(secret: Vec<u8>) -> HmacKey {
        let digest = Sha256::digest(&secret);
        HmacKey { kid: format!("hs256-{}", hex::encode(&digest[..6])), secret }
    }

    /// Loads the configured secret file, or the generated one in `data_dir`, creating it if absent.
    pub fn load(configured: Option<&Path>, data_dir: &Path) -> anyhow::Result<HmacKey> {
        if let Some(path) = configured {
            let raw = fs::read(path).with_context(|| format!("reading {}", path.display()))?;
            let secret = raw.trim_ascii().to_vec();
            anyhow::ensure!(
                secret.len() >= MIN_SECRET_BYTES,
                "{}: a secret needs at least {MIN_SECRET_BYTES} bytes",
                path.display()
            );
            return Ok(HmacKey::new(secret));
        }
        let path = data_dir.join(SECRET_FILE);
        match fs::read_to_string(&path) {
            Ok(text) => {
                let secret =
                    hex::decode(text.trim()).with_context(|| format!("{}: not a hex key", path.display()))?;
                anyhow::ensure!(secret.len() >= MIN_SECRET_BYTES, "{}: key too short", path.display());
                Ok(HmacKey::new(secret))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut secret = vec![0u8; MIN_SECRET_BYTES];
                rand::rngs::OsRng.fill_bytes(&mut secret);
                write_private(&path, hex::encode(&secret).as_bytes())?;
                tracing::info!(path = %path.display(), "generated a new signing key");
                Ok(HmacKey::new(secret))
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

/// Creates the data folder, private to its owner when wsguard creates it.
pub fn ensure_data_dir(dir: &Path) -> anyhow::Result<()> {
    if dir.exists() {
        return Ok(());
    }
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir).with_context(|| format!("creating data folder {}", dir.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_key_is_private_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let first = HmacKey::load(None, dir.path()).unwrap();
        let second = HmacKey::load(None, dir.path()).unwrap();
        assert_eq!(first.secret, second.secret);
        assert_eq!(first.secret.len(), 32);
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
        assert!(HmacKey::load(Some(&file), dir.path()).is_err());
    }
}
