//! The certificate new TLS handshakes present, and its reload: [`Certificates`] holds the chain and
//! key in force and rereads both PEM files on demand (SIGHUP) or when they change. A handshake
//! takes the pair in force when it starts; a connection keeps it for its life, so a reload drops
//! nothing. A reload that fails keeps the pair in force.

use super::summary::Summary;
use anyhow::Context;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use sha2::{Digest, Sha256};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::SystemTime;

/// What made a reload happen, for its log lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Trigger {
    Signal,
    FileChange,
}

impl fmt::Display for Trigger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Trigger::Signal => "SIGHUP",
            Trigger::FileChange => "file change",
        })
    }
}

/// The certificate chain and key in force, read from `cert` and `key`.
pub(crate) struct Certificates {
    cert: PathBuf,
    key: PathBuf,
    provider: Arc<CryptoProvider>,
    in_force: RwLock<Arc<CertifiedKey>>,
    /// The files as they were just before they were last read, whether that read worked or not: a
    /// failed reload is retried once either file changes again.
    seen: Mutex<Stamps>,
}

impl fmt::Debug for Certificates {
    // Paths only: never key material.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Certificates").field("cert", &self.cert).field("key", &self.key).finish()
    }
}

impl ResolvesServerCert for Certificates {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.in_force.read().expect("certificate lock poisoned").clone())
    }
}

impl Certificates {
    /// Reads the chain and key at start; an error here stops the start.
    pub(crate) fn load(
        cert: &Path,
        key: &Path,
        provider: Arc<CryptoProvider>,
    ) -> anyhow::Result<Certificates> {
        let seen = stamps(cert, key);
        let pair = read(cert, key, &provider)?;
        log_in_force(&pair, "start");
        Ok(Certificates {
            cert: cert.to_owned(),
            key: key.to_owned(),
            provider,
            in_force: RwLock::new(Arc::new(pair)),
            seen: Mutex::new(seen),
        })
    }

    /// Whether either file changed (modification time, size, or replaced) since it was last read.
    pub(crate) fn changed(&self) -> bool {
        stamps(&self.cert, &self.key) != *self.seen.lock().expect("stamps lock poisoned")
    }

    /// Rereads both files (blocking: run it off the async runtime's threads). A pair that reads and
    /// matches is in force for every handshake from now on; anything else keeps the pair in force,
    /// with a warning naming the file.
    pub(crate) fn reload(&self, trigger: Trigger) {
        let before = stamps(&self.cert, &self.key);
        *self.seen.lock().expect("stamps lock poisoned") = before.clone();
        let pair = match read(&self.cert, &self.key, &self.provider) {
            Ok(pair) => pair,
            Err(err) if trigger == Trigger::FileChange && stamps(&self.cert, &self.key) != before => {
                // Still being written: the next poll sees the change and tries again.
                tracing::debug!(error = %format!("{err:#}"), "the TLS files changed while being read");
                return;
            }
            Err(err) => {
                tracing::warn!(
                    %trigger,
                    error = %format!("{err:#}"),
                    "reloading the TLS certificate failed; the one in force is kept, and the files \
                     are read again at their next change or SIGHUP"
                );
                return;
            }
        };
        let pair = Arc::new(pair);
        {
            let mut in_force = self.in_force.write().expect("certificate lock poisoned");
            if in_force.cert == pair.cert {
                drop(in_force);
                tracing::info!(%trigger, "TLS certificate reread: unchanged");
                return;
            }
            *in_force = pair.clone();
        }
        log_in_force(&pair, &trigger.to_string());
    }
}

/// The chain of `cert` and the key of `key`, checked to go together. Errors name the file, and
/// never hold the key's bytes (the PEM parser's own messages may quote a line: they are replaced).
fn read(cert: &Path, key: &Path, provider: &CryptoProvider) -> anyhow::Result<CertifiedKey> {
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|err| anyhow::anyhow!("reading the certificate {}: {}", cert.display(), pem_error(&err)))?;
    anyhow::ensure!(!chain.is_empty(), "{}: no certificate in it", cert.display());
    let private = PrivateKeyDer::from_pem_file(key)
        .map_err(|err| anyhow::anyhow!("reading the key {}: {}", key.display(), pem_error(&err)))?;
    CertifiedKey::from_der(chain, private, provider).with_context(|| {
        format!("the certificate {} and the key {} do not go together", cert.display(), key.display())
    })
}

/// A PEM error without the bytes some variants carry (a malformed line may be key material).
fn pem_error(err: &pem::Error) -> String {
    match err {
        pem::Error::Io(err) => err.to_string(),
        pem::Error::NoItemsFound => "no PEM section of the expected kind".to_owned(),
        pem::Error::MissingSectionEnd { .. } => "a PEM section has no END line (cut short?)".to_owned(),
        pem::Error::IllegalSectionStart { .. } => "a malformed PEM BEGIN line".to_owned(),
        pem::Error::Base64Decode(_) => "a PEM section is not valid base64".to_owned(),
        _ => "not valid PEM".to_owned(),
    }
}

fn log_in_force(pair: &CertifiedKey, trigger: &str) {
    let Some(end_entity) = pair.cert.first() else { return };
    let sha256 = hex::encode(Sha256::digest(end_entity));
    let about = Summary::of(end_entity).unwrap_or_default();
    tracing::info!(
        %trigger,
        subject = %about.subject,
        serial = %about.serial,
        not_after = %about.not_after,
        %sha256,
        chain = pair.cert.len(),
        "TLS certificate in force"
    );
    let now = time::OffsetDateTime::now_utc().format(TIMESTAMP).unwrap_or_default();
    if !about.not_after.is_empty() && about.not_after < now {
        tracing::warn!(not_after = %about.not_after, "the TLS certificate in force has expired");
    }
}

/// What `wsguard doctor` says of a certificate pair.
pub(crate) struct Inspection {
    pub(crate) subject: String,
    /// `YYYY-MM-DDTHH:MM:SSZ`; empty when the certificate could not be read that far.
    pub(crate) not_after: String,
    pub(crate) expired: bool,
    /// Expires within `soon` of now.
    pub(crate) expires_soon: bool,
}

/// Reads `cert` and `key` as a start would, without putting them in force or logging them.
pub(crate) fn inspect(cert: &Path, key: &Path, soon: time::Duration) -> anyhow::Result<Inspection> {
    let pair = read(cert, key, &rustls::crypto::ring::default_provider())?;
    let about = pair.cert.first().and_then(|der| Summary::of(der)).unwrap_or_default();
    let at = |instant: time::OffsetDateTime| instant.format(TIMESTAMP).unwrap_or_default();
    let now = time::OffsetDateTime::now_utc();
    let known = !about.not_after.is_empty();
    Ok(Inspection {
        expired: known && about.not_after < at(now),
        expires_soon: known && about.not_after < at(now + soon),
        subject: about.subject,
        not_after: about.not_after,
    })
}

const TIMESTAMP: &[time::format_description::BorrowedFormatItem<'static>] =
    time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");

/// A file as seen by stat(2); `None` when it cannot be.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Stamp {
    len: u64,
    modified: Option<SystemTime>,
    /// Unix: the inode (replaced by a rename) and the change time (which `cp -p`, `rsync -t` and
    /// the like cannot set back, unlike the modification time).
    #[cfg(unix)]
    inode: (u64, u64),
    #[cfg(unix)]
    changed: (i64, i64),
}

type Stamps = (Option<Stamp>, Option<Stamp>);

fn stamps(cert: &Path, key: &Path) -> Stamps {
    (stamp(cert), stamp(key))
}

fn stamp(path: &Path) -> Option<Stamp> {
    // Follows symbolic links: what a Kubernetes secret mount swaps is the link's target.
    let meta = std::fs::metadata(path).ok()?;
    #[cfg(unix)]
    use std::os::unix::fs::MetadataExt;
    Some(Stamp {
        len: meta.len(),
        modified: meta.modified().ok(),
        #[cfg(unix)]
        inode: (meta.dev(), meta.ino()),
        #[cfg(unix)]
        changed: (meta.ctime(), meta.ctime_nsec()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn provider() -> Arc<CryptoProvider> {
        Arc::new(rustls::crypto::ring::default_provider())
    }

    fn self_signed(name: &str, serial: u64) -> (String, String) {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params.distinguished_name.push(rcgen::DnType::CommonName, name);
        params.distinguished_name.push(rcgen::DnType::OrganizationName, "wsguard, tests\n");
        params.serial_number = Some(rcgen::SerialNumber::from(serial));
        params.not_after = rcgen::date_time_ymd(2049, 12, 31);
        (params.self_signed(&key).unwrap().pem(), key.serialize_pem())
    }

    fn write(dir: &Path, (cert, key): &(String, String)) -> (PathBuf, PathBuf) {
        let paths = (dir.join("cert.pem"), dir.join("key.pem"));
        std::fs::write(&paths.0, cert).unwrap();
        std::fs::write(&paths.1, key).unwrap();
        paths
    }

    fn end_entity(certificates: &Certificates) -> Vec<u8> {
        certificates.in_force.read().unwrap().cert[0].to_vec()
    }

    #[test]
    fn the_summary_names_subject_serial_and_expiry() {
        let (cert, _) = self_signed("first.example", 0x1234);
        let der = CertificateDer::from_pem_slice(cert.as_bytes()).unwrap();
        let summary = Summary::of(&der).unwrap();
        assert_eq!(summary.subject, "CN=first.example, O=wsguard\\, tests");
        assert_eq!(summary.serial, "1234");
        assert_eq!(summary.not_after, "2049-12-31T00:00:00Z");
        assert_eq!(Summary::of(&der[..der.len() / 2]), None, "cut short");
        assert_eq!(Summary::of(b"\x30\x85\xff\xff\xff\xff\xff"), None);
        assert_eq!(Summary::of(b""), None);
    }

    #[test]
    fn a_reload_takes_a_new_pair_and_keeps_the_old_one_when_the_new_is_broken() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = write(dir.path(), &self_signed("first", 1));
        let certificates = Certificates::load(&cert, &key, provider()).unwrap();
        let first = end_entity(&certificates);
        assert!(!certificates.changed());

        let second = self_signed("second", 2);
        std::fs::write(&cert, &second.0).unwrap();
        assert!(certificates.changed());
        // The certificate without its key: a mismatch, kept out.
        certificates.reload(Trigger::Signal);
        assert_eq!(end_entity(&certificates), first);
        assert!(!certificates.changed(), "not retried until a file changes again");
        std::fs::write(&key, &second.1).unwrap();
        assert!(certificates.changed());
        certificates.reload(Trigger::FileChange);
        assert_ne!(end_entity(&certificates), first);
        assert_eq!(Summary::of(&end_entity(&certificates)).unwrap().subject, "CN=second, O=wsguard\\, tests");

        // Both in one file, as --tls-cert and --tls-key.
        let third = self_signed("third", 3);
        let both = dir.path().join("both.pem");
        std::fs::write(&both, format!("{}{}", third.1, third.0)).unwrap();
        let certificates = Certificates::load(&both, &both, provider()).unwrap();
        assert_eq!(Summary::of(&end_entity(&certificates)).unwrap().serial, "03");
    }

    #[test]
    fn errors_name_the_file_and_never_quote_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = write(dir.path(), &self_signed("first", 1));
        let secret =
            "-----BEGIN PRIVATE KEY-----TOPSECRETKEYMATERIAL\nTOPSECRET\n-----END PRIVATE KEY-----\n";
        for (contents, why) in [
            (secret, "malformed PEM BEGIN line"),
            ("-----BEGIN PRIVATE KEY-----\nTOPSECRETKEYMATERIAL\n", "no END line"),
            ("-----BEGIN PRIVATE KEY-----\nTOPSECRET!!\n-----END PRIVATE KEY-----\n", "not valid base64"),
            ("TOPSECRET\n", "no PEM section"),
        ] {
            std::fs::write(&key, contents).unwrap();
            let err = format!("{:#}", read(&cert, &key, &provider()).unwrap_err());
            assert!(err.contains(&key.display().to_string()) && err.contains(why), "{err}");
            let bytes = format!("{:?}", b"TOPSECRET");
            assert!(!err.contains("TOPSECRET") && !err.contains(&bytes[1..bytes.len() - 1]), "{err}");
        }
        std::fs::remove_file(&key).unwrap();
        let err = format!("{:#}", read(&cert, &key, &provider()).unwrap_err());
        assert!(err.contains(&key.display().to_string()), "{err}");
    }
}
