use super::*;
use base64::Engine;
use rand::{Rng, SeedableRng};

/// A secret file as an operator makes it: private to its owner.
fn secret_file(dir: &Path, name: &str, contents: &[u8]) -> std::path::PathBuf {
    let path = dir.join(name);
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(&path).unwrap().write_all(contents).unwrap();
    path
}

#[test]
fn generated_key_is_private_and_reused() {
    let dir = tempfile::tempdir().unwrap();
    let first = HmacSecret::load(None, dir.path()).unwrap();
    let second = HmacSecret::load(None, dir.path()).unwrap();
    assert_eq!(first.kid, second.kid);
    let stored = fs::read_to_string(dir.path().join(SECRET_FILE)).unwrap();
    assert_eq!(hex::decode(stored.trim()).unwrap().len(), 32);
    #[cfg(unix)]
    assert_eq!(crate::private_files::mode(&dir.path().join(SECRET_FILE)), 0o600);
}

#[test]
fn short_configured_secret_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let file = secret_file(dir.path(), "short", b"too-short");
    let err = HmacSecret::load(Some(&file), dir.path()).err().expect("a short secret is refused");
    assert!(err.to_string().contains("at least 32 bytes"), "{err:#}");
}

#[test]
fn published_secrets_are_refused_without_being_shown() {
    let dir = tempfile::tempdir().unwrap();
    for (i, (known, _)) in PUBLISHED.iter().enumerate() {
        let variants = [
            known.to_string(),
            format!("{known}\n"),
            format!("  \t{known} \r\n"),
            format!("\"{known}\"\n"),
            format!("'{known}'"),
            known.to_ascii_uppercase(),
            known.to_ascii_lowercase(),
        ];
        for (j, variant) in variants.iter().enumerate() {
            let file = secret_file(dir.path(), &format!("published-{i}-{j}"), variant.as_bytes());
            let err = HmacSecret::load(Some(&file), dir.path()).err().expect("a published secret is refused");
            let text = format!("{err:#}");
            assert!(
                text.contains(
                    "is a publicly known example secret; generate one with e.g. `openssl rand -hex 32`"
                ),
                "{text}"
            );
            assert!(text.contains(&file.display().to_string()), "names the file: {text}");
            assert!(
                !text.to_ascii_lowercase().contains(&known.to_ascii_lowercase()),
                "shows the secret: {text}"
            );
        }
        // One byte off is another secret.
        let mut other = known.as_bytes().to_vec();
        other[0] = if other[0] == b'x' { b'y' } else { b'x' };
        let file = secret_file(dir.path(), &format!("other-{i}"), &other);
        HmacSecret::load(Some(&file), dir.path()).unwrap();
    }
}

#[test]
fn a_published_secret_in_the_data_folder_is_refused_too() {
    let dir = tempfile::tempdir().unwrap();
    secret_file(dir.path(), SECRET_FILE, format!("{}\n", PUBLISHED[0].0).as_bytes());
    let err = HmacSecret::load(None, dir.path()).err().expect("refused");
    assert!(err.to_string().contains("is a publicly known example secret"), "{err:#}");
}

#[cfg(unix)]
#[test]
fn secret_files_open_to_others_are_refused() {
    use crate::private_files::{set_mode, OpenToOthers};
    let dir = tempfile::tempdir().unwrap();
    let configured = secret_file(dir.path(), "configured", hex::encode([7u8; 32]).as_bytes());
    set_mode(&configured, 0o644);
    let err = HmacSecret::load(Some(&configured), dir.path()).err().expect("refused");
    assert!(err.downcast_ref::<OpenToOthers>().is_some(), "{err:#}");
    assert!(err.to_string().contains(&format!("chmod 600 {}", configured.display())), "{err:#}");

    HmacSecret::load(None, dir.path()).unwrap();
    let generated = dir.path().join(SECRET_FILE);
    set_mode(&generated, 0o640);
    let err = HmacSecret::load(None, dir.path()).err().expect("refused");
    assert!(err.to_string().contains(&format!("chmod 600 {}", generated.display())), "{err:#}");
    set_mode(&generated, 0o600);
    HmacSecret::load(None, dir.path()).unwrap();
}

#[test]
fn obviously_weak_secrets_are_called_weak() {
    let pattern = Some("it is one short pattern repeated");
    let run = Some(
        "half or more of its bytes follow the previous one by the same step (like abcd…, 1234… or aaaa…)",
    );
    let entropy = Some("its estimated entropy is under 64 bits (few distinct bytes)");
    let cases: &[(&[u8], Option<&str>)] = &[
        (b"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", pattern),
        (b"abababababababababababababababababababab", pattern),
        (b"passwordpasswordpasswordpassword", pattern),
        (b"secretsecretsecretsecretsecretsecretsec", pattern),
        (b"0123456789012345678901234567890123456789", pattern),
        (b"abcdefghijklmnopqrstuvwxyz012345", run),
        (b"zyxwvutsrqponmlkjihgfedcba9876543210", run),
        (b"0000000000000000000000000000000000000000000000000000000000000001", run),
        (b"11111111111111112222222222222222", run),
        (b"z05z50z0z5505zz0z0505z5z00zz5z0550z5z0z0", entropy),
    ];
    for (secret, reason) in cases {
        assert_eq!(weakness(secret), *reason, "{}", String::from_utf8_lossy(secret));
    }
    for strong in [
        &b"correct horse battery staple, but longer and with 7 digits 4402913"[..],
        PUBLISHED[0].0.as_bytes(),
    ] {
        assert_eq!(weakness(strong), None, "{}", String::from_utf8_lossy(strong));
    }
}

#[test]
fn random_hex_and_base64_secrets_are_never_called_weak() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x5eed);
    let b64 = base64::engine::general_purpose::STANDARD;
    let b64url = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    for _ in 0..20_000 {
        let mut bytes = [0u8; 64];
        rng.fill(&mut bytes[..]);
        let secrets = [
            hex::encode(&bytes[..16]).into_bytes(), // openssl rand -hex 16: 32 characters
            hex::encode(&bytes[..32]).into_bytes(), // openssl rand -hex 32
            b64.encode(&bytes[..24]).into_bytes(),  // 32 characters
            b64.encode(&bytes[..32]).into_bytes(),  // openssl rand -base64 32
            b64url.encode(&bytes[..32]).into_bytes(),
            bytes[..32].to_vec(),
            bytes.to_vec(),
        ];
        for secret in &secrets {
            assert!(secret.len() >= MIN_SECRET_BYTES);
            assert_eq!(weakness(secret), None, "{}", String::from_utf8_lossy(secret));
        }
    }
}
