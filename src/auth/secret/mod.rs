//! The HS256 secret. There is no built-in one: without a configured file, a 256-bit secret is
//! generated on first start into the data folder (mode 0600) and reused afterwards, so tokens
//! survive restarts. The asymmetric keys are the key ring's (`keyring/`).
//!
//! Loading a secret, generated or configured, refuses it when the file is open to group or others
//! (`private_files`), when it is shorter than 32 bytes, or when it is a secret published in
//! documentation or tutorials ([`PUBLISHED`]); it warns at start when the secret looks weak
//! ([`weakness`]). Neither the error nor the warning ever shows the secret.

use crate::private_files::read_private;
use anyhow::Context;
use jsonwebtoken::{DecodingKey, EncodingKey};
use rand::RngCore;
use sha2::{Digest, Sha256};
use std::fs;
use std::io::Write;
use std::path::Path;

const SECRET_FILE: &str = "jwt-secret.key";
const MIN_SECRET_BYTES: usize = 32;

/// Secrets published in documentation, tutorials and default configurations, with where: anyone
/// can sign tokens with them. Compared with the secret trimmed of surrounding whitespace and of
/// one pair of surrounding quotes, ignoring ASCII case (hex keys get copied in either case).
///
/// Only values of 32 bytes or more are listed: shorter ones are refused for their length anyway,
/// such as fastapi-jwt-auth's documented `secret` and `secretkey` (`authjwt_secret_key`,
/// `AUTHJWT_SECRET_KEY`), jwt.io's former example `secret`, the widely copied placeholder
/// `your-256-bit-secret`, or the FastAPI full-stack template's `changethis`. Placeholders with
/// countless variants (`your-256-bit-secret-key-here-…`) are left to the weakness warning and to
/// whoever reviews the deployment: a list cannot hold them.
pub(crate) const PUBLISHED: &[(&str, &str)] = &[
    // FastAPI's documentation, "OAuth2 with Password (and hashing), Bearer with JWT tokens":
    // `SECRET_KEY` in docs_src/security/tutorial004.py and its variants (tutorial005 too).
    (
        "09d25e094faa6ca2556c818166b7a9563b93f7099f6f0f4caa6cf63b88e8d3e7",
        "the FastAPI tutorial's SECRET_KEY (OAuth2 with Password, Bearer with JWT tokens)",
    ),
    // jwt.io's debugger: the secrets of its HS256, HS384 and HS512 example tokens
    // (jsonwebtoken/jsonwebtoken.github.io, src/features/common/values/default-tokens.values.ts).
    ("a-string-secret-at-least-256-bits-long", "jwt.io's example HS256 secret"),
    ("a-valid-string-secret-that-is-at-least-384-bits-long", "jwt.io's example HS384 secret"),
    (
        "a-valid-string-secret-that-is-at-least-512-bits-long-which-is-very-long",
        "jwt.io's example HS512 secret",
    ),
    // Supabase: `JWT_SECRET` in docker/.env.example (self-hosting), and the JWT secret of every
    // local stack the Supabase CLI starts (printed by `supabase start` and `supabase status`).
    (
        "your-super-secret-jwt-token-with-at-least-32-characters-long",
        "Supabase's self-hosting .env.example JWT_SECRET",
    ),
    ("super-secret-jwt-token-with-at-least-32-characters-long", "the Supabase CLI's local JWT secret"),
    // The Spring Boot 3 JWT tutorial (ali-bouali/spring-boot-3-jwt-security, application.yml
    // `application.security.jwt.secret-key`), copied into a great many projects.
    (
        "404E635266556A586E3272357538782F413F4428472B4B6250645367566B5970",
        "the Spring Boot 3 JWT tutorial's secret-key",
    ),
];

/// Where `secret` was published, if it is one of [`PUBLISHED`].
pub(crate) fn published_as(secret: &[u8]) -> Option<&'static str> {
    let mut value = secret.trim_ascii();
    for quote in [b'"', b'\''] {
        if let [first, inner @ .., last] = value {
            if *first == quote && *last == quote {
                value = inner.trim_ascii();
                break;
            }
        }
    }
    PUBLISHED
        .iter()
        .find(|(known, _)| known.as_bytes().eq_ignore_ascii_case(value))
        .map(|(_, source)| *source)
}

/// Below this estimate a secret is called weak (see [`weakness`]).
const MIN_ESTIMATED_BITS: f64 = 64.0;

/// Why `secret` looks weak, if it does: a warning, not a refusal, since a heuristic cannot tell a
/// strong secret from a weak one, only catch the obviously weak. Three checks:
///
/// - **one pattern repeated**: the secret is a shorter unit repeated (`abab…`, `passwordpassword…`);
///   found in linear time from the smallest period (KMP prefix function);
/// - **a run**: at least half of the steps between adjacent bytes are the same step
///   (`abcdef…`, `123456…`, `aaaa…`, `zyxw…`);
/// - **low estimated entropy**: length × the Shannon entropy of the byte frequencies is under 64
///   bits (few distinct bytes, or one of them dominating, in no simple order: `z05z50z0…`).
///
/// A random secret of 32 bytes or more never trips them in practice, hex (`openssl rand -hex 16`
/// or `-hex 32`) and base64 alike: over 100,000 samples each, the lowest estimate for 32 hex
/// characters was 88 bits and the largest share of one step 0.32; the odds of a 32-character hex
/// secret reaching 16 equal steps out of 31 are about 10⁻¹⁰. English-like passphrases pass:
/// without a dictionary there is no telling them from random text.
pub(crate) fn weakness(secret: &[u8]) -> Option<&'static str> {
    let n = secret.len();
    if n < 2 {
        return Some("it is too short");
    }
    // Smallest period p = n - π(n-1): the secret is s[..p] repeated (the last time partly).
    let mut prefix = vec![0usize; n];
    for i in 1..n {
        let mut k = prefix[i - 1];
        while k > 0 && secret[i] != secret[k] {
            k = prefix[k - 1];
        }
        if secret[i] == secret[k] {
            k += 1;
        }
        prefix[i] = k;
    }
    if n - prefix[n - 1] <= n / 2 {
        return Some("it is one short pattern repeated");
    }
    let mut steps = [0usize; 256];
    for pair in secret.windows(2) {
        steps[pair[1].wrapping_sub(pair[0]) as usize] += 1;
    }
    if steps.iter().max().is_some_and(|&most| most * 2 >= n - 1) {
        return Some(
            "half or more of its bytes follow the previous one by the same step (like abcd…, 1234… or aaaa…)",
        );
    }
    let mut counts = [0usize; 256];
    for &byte in secret {
        counts[byte as usize] += 1;
    }
    let bits_per_byte: f64 = counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = c as f64 / n as f64;
            -p * p.log2()
        })
        .sum();
    if bits_per_byte * (n as f64) < MIN_ESTIMATED_BITS {
        return Some("its estimated entropy is under 64 bits (few distinct bytes)");
    }
    None
}

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
            return Ok(HmacSecret::new(load_shared(path, "HS256 secret")?));
        }
        let path = generated_path(data_dir);
        match read_generated(&path)? {
            Some((secret, weak)) => {
                warn_if_weak(&path, weak, "HS256 secret");
                Ok(HmacSecret::new(secret))
            }
            None => {
                let mut secret = vec![0u8; MIN_SECRET_BYTES];
                rand::rngs::OsRng.fill_bytes(&mut secret);
                write_private(&path, hex::encode(&secret).as_bytes())?;
                tracing::info!(path = %path.display(), "generated a new signing key");
                Ok(HmacSecret::new(secret))
            }
        }
    }
}

/// Where the generated HS256 secret lives in the data folder.
pub(crate) fn generated_path(data_dir: &Path) -> std::path::PathBuf {
    data_dir.join(SECRET_FILE)
}

/// The generated secret at `path`, checked (private, hex, long enough, not published), and why
/// it looks weak if it does; `None` when there is no such file yet.
pub(crate) fn read_generated(path: &Path) -> anyhow::Result<Option<(Vec<u8>, Option<&'static str>)>> {
    let Some(text) = read_private(path)? else { return Ok(None) };
    refuse_published(path, &text)?;
    let secret = std::str::from_utf8(&text)
        .ok()
        .and_then(|text| hex::decode(text.trim()).ok())
        .with_context(|| format!("{}: not a hex key", path.display()))?;
    anyhow::ensure!(secret.len() >= MIN_SECRET_BYTES, "{}: key too short", path.display());
    let weak = weakness(&secret);
    Ok(Some((secret, weak)))
}

/// A secret shared with another party, from its file (`what` names it in a warning): private to
/// wsguard's user, at least 32 bytes once trimmed, no published example secret; a weak-looking
/// one is warned about.
pub(crate) fn load_shared(path: &Path, what: &str) -> anyhow::Result<Vec<u8>> {
    let (secret, weak) = read_shared(path)?;
    warn_if_weak(path, weak, what);
    Ok(secret)
}

/// The checks of [`load_shared`], without its warning: the secret, and why it looks weak if it
/// does.
pub(crate) fn read_shared(path: &Path) -> anyhow::Result<(Vec<u8>, Option<&'static str>)> {
    let raw = read_private(path)?.with_context(|| format!("reading {}: no such file", path.display()))?;
    let secret = raw.trim_ascii().to_vec();
    anyhow::ensure!(
        secret.len() >= MIN_SECRET_BYTES,
        "{}: a secret needs at least {MIN_SECRET_BYTES} bytes",
        path.display()
    );
    refuse_published(path, &secret)?;
    let weak = weakness(&secret);
    Ok((secret, weak))
}

fn refuse_published(path: &Path, secret: &[u8]) -> anyhow::Result<()> {
    match published_as(secret) {
        Some(source) => anyhow::bail!(
            "{} is a publicly known example secret; generate one with e.g. `openssl rand -hex 32` \
             (this one is {source}: anyone can sign tokens with it)",
            path.display()
        ),
        None => Ok(()),
    }
}

fn warn_if_weak(path: &Path, weak: Option<&'static str>, what: &str) {
    if let Some(reason) = weak {
        tracing::warn!(
            path = %path.display(),
            reason,
            "the {what} looks weak; generate one with e.g. `openssl rand -hex 32`"
        );
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
mod tests;
