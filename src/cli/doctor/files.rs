//! The doctor's file checks: the configuration file, the data folder and the SQLite file, the
//! signing keys, the TLS pair, and the secret files of trusted issuers and webhooks. Each is read
//! with the same code `serve` loads it with, so that what passes here loads there.

use super::Report;
use crate::auth::{keyring, secret};
use crate::config::Config;
use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

/// A TLS certificate expiring sooner than this is a warning.
const CERTIFICATE_WARNING_DAYS: i64 = 14;

pub(super) fn check(report: &mut Report, config: &Config, file: &Path) {
    configuration(report, config, file);
    data_folder(report, config);
    sqlite_file(report, config);
    signing(report, config);
    tls(report, config);
    for issuer in &config.sections.trusted_issuers {
        if let Some(path) = &issuer.secret_file {
            secret_file(report, &format!("trusted issuer {} secret", issuer.name()), path);
        }
    }
    if let Some(webhooks) = &config.sections.webhooks {
        secret_file(report, "webhooks secret", &webhooks.secret_file);
    }
}

/// Group and others' permission bits of `path`; `None` where there are none (not unix).
fn mode(path: &Path) -> Option<u32> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::metadata(path).ok().map(|m| m.permissions().mode() & 0o777)
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        None
    }
}

/// Whether this user may create files in the folder `path` (or write the file `path`).
fn writable(path: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::ffi::OsStrExt;
        let Ok(path) = std::ffi::CString::new(path.as_os_str().as_bytes()) else { return false };
        // SAFETY: a valid NUL-terminated string, read by access(2) only.
        unsafe { libc::access(path.as_ptr(), libc::W_OK) == 0 }
    }
    #[cfg(not(unix))]
    {
        fs::metadata(path).is_ok_and(|m| !m.permissions().readonly())
    }
}

fn configuration(report: &mut Report, config: &Config, file: &Path) {
    let subject = format!("configuration {}", file.display());
    match mode(file) {
        None if !file.exists() => report.ok(subject, "no such file: flags, WSGUARD_* variables and defaults"),
        // Whoever can write it chooses the issuers trusted and where secrets are read from.
        Some(mode) if mode & 0o002 != 0 => report.problem(
            subject,
            format!("anyone may write it (mode {mode:03o}); `chmod 644 {}`", file.display()),
        ),
        Some(mode) if mode & 0o020 != 0 => report.warning(
            subject,
            format!("its group may write it (mode {mode:03o}); `chmod 644 {}` unless meant", file.display()),
        ),
        _ => report.ok(subject, "read"),
    }
    if let Err(err) = config.validate() {
        report.problem("settings", format!("{err:#}"));
    }
}

fn data_folder(report: &mut Report, config: &Config) {
    let dir = &config.store.data_dir;
    let subject = format!("data folder {}", dir.display());
    match fs::metadata(dir) {
        Err(err) if err.kind() == ErrorKind::NotFound => {
            let parent = existing_ancestor(dir);
            if writable(&parent) {
                report.ok(subject, "not there yet; serve creates it (mode 0700)");
            } else {
                report.problem(
                    subject,
                    format!(
                        "not there, and {} is not writable by this user: `mkdir -m 700 {}` and give it \
                         to wsguard's user",
                        parent.display(),
                        dir.display()
                    ),
                );
            }
        }
        Err(err) => report.problem(subject, format!("cannot be read: {err}")),
        Ok(meta) if !meta.is_dir() => report.problem(subject, "not a folder"),
        Ok(_) if !writable(dir) => {
            report.problem(subject, "not writable by this user: give it to wsguard's user (chown)")
        }
        Ok(_) => match mode(dir) {
            Some(mode) if mode & 0o077 != 0 => report.warning(
                subject,
                format!(
                    "open to others (mode {mode:03o}); its files are private, `chmod 700 {}` hides their names too",
                    dir.display()
                ),
            ),
            _ => report.ok(subject, "writable, private"),
        },
    }
}

/// The nearest folder of `path`'s ancestors that exists (the working folder for a relative one).
fn existing_ancestor(path: &Path) -> PathBuf {
    let found = path.ancestors().skip(1).find(|a| a.as_os_str().is_empty() || a.exists());
    match found {
        Some(a) if !a.as_os_str().is_empty() => a.to_owned(),
        _ => PathBuf::from("."),
    }
}

/// The SQLite file, when there is one already: writable, and private (serve tightens it).
fn sqlite_file(report: &mut Report, config: &Config) {
    let url = config.store.database_url();
    let Some(file) = url.strip_prefix("sqlite:").and_then(|_| sqlite_path(&url)) else { return };
    if !file.exists() {
        return;
    }
    let subject = format!("database file {}", file.display());
    if !writable(&file) {
        report.problem(subject, "not writable by this user: give it to wsguard's user (chown)");
    } else if let Some(mode) = mode(&file).filter(|mode| mode & 0o077 != 0) {
        report.warning(
            subject,
            format!(
                "open to others (mode {mode:03o}); serve makes it 0600 at start, or `chmod 600 {}`",
                file.display()
            ),
        );
    }
}

fn sqlite_path(url: &str) -> Option<PathBuf> {
    use std::str::FromStr;
    let options = sqlx::sqlite::SqliteConnectOptions::from_str(url).ok()?;
    (!url.contains(":memory:")).then(|| options.get_filename().to_owned())
}

fn signing(report: &mut Report, config: &Config) {
    let alg = config.signing.alg();
    let data_dir = &config.store.data_dir;
    // Nodes sharing a PostgreSQL database must sign with one key; each generating its own breaks that.
    let shared = !config.store.database_url().starts_with("sqlite:");
    if keyring::is_asymmetric(alg) {
        return keys(report, &config.signing.keys_dir(data_dir), alg, config.tokens.refresh_ttl, shared);
    }
    if let Some(path) = &config.signing.jwt_secret_file {
        return secret_file(report, "HS256 secret", path);
    }
    let path = secret::generated_path(data_dir);
    let subject = format!("HS256 secret {}", path.display());
    match secret::read_generated(&path) {
        Ok(Some((_, Some(weak)))) => report.warning(subject, format!("looks weak: {weak}")),
        Ok(Some(_)) => report.ok(subject, "private, generated"),
        Ok(None) if shared => report.warning(
            subject,
            "not there yet: each node would generate its own; nodes sharing a database need one --jwt-secret-file",
        ),
        Ok(None) => report.ok(subject, "not there yet; serve generates 256 random bits (mode 0600)"),
        Err(err) => report.problem(subject, format!("{err:#}")),
    }
}

fn keys(
    report: &mut Report,
    dir: &Path,
    alg: jsonwebtoken::Algorithm,
    refresh_ttl: std::time::Duration,
    shared: bool,
) {
    let subject = format!("{alg:?} keys {}", dir.display());
    let found = match keyring::scan(dir) {
        Ok(found) => found,
        Err(err) => return report.problem(subject, format!("{err:#}")),
    };
    let in_force: Vec<_> = keyring::states(&found, alg, refresh_ttl, crate::clock::now_secs())
        .into_iter()
        .filter(|(_, state)| *state != keyring::KeyState::Expired)
        .collect();
    if in_force.is_empty() {
        let text = if shared {
            "no key yet: serve generates one; nodes sharing a database need one keys folder \
             (--jwt-keys-dir on a shared volume)"
        } else {
            "no key yet: serve generates one"
        };
        return if shared { report.warning(subject, text) } else { report.ok(subject, text) };
    }
    let mut good = 0;
    for (key, _) in &in_force {
        match keyring::load(key) {
            Ok(_) => good += 1,
            Err(err) => report.problem(format!("key {}", key.path.display()), format!("{err:#}")),
        }
    }
    match mode(dir) {
        Some(mode) if mode & 0o077 != 0 => report
            .warning(subject, format!("open to others (mode {mode:03o}): `chmod 700 {}`", dir.display())),
        _ if good == in_force.len() => report.ok(subject, format!("{good} key(s) in force, private")),
        _ => {}
    }
}

fn tls(report: &mut Report, config: &Config) {
    let (Some(cert), Some(key)) = (&config.tls_cert, &config.tls_key) else { return };
    let subject = format!("TLS certificate {}", cert.display());
    let soon = time::Duration::days(CERTIFICATE_WARNING_DAYS);
    match crate::tls::inspect(cert, key, soon) {
        Ok(found) if found.expired => report.problem(
            subject,
            format!(
                "expired {}: renew it (serve rereads it on SIGHUP and when the file changes)",
                found.not_after
            ),
        ),
        Ok(found) if found.expires_soon => {
            report.warning(subject, format!("{}, expires {}: renew it soon", found.subject, found.not_after))
        }
        Ok(found) => {
            report.ok(subject, format!("{}, with its key, valid until {}", found.subject, found.not_after))
        }
        Err(err) => report.problem(subject, format!("{err:#}")),
    }
    let subject = format!("TLS key {}", key.display());
    match mode(key) {
        Some(mode) if mode & 0o007 != 0 => report.problem(
            subject,
            format!(
                "anyone may read it (mode {mode:03o}): `chmod 600 {}`, and replace the key",
                key.display()
            ),
        ),
        Some(mode) if mode & 0o070 != 0 => report.warning(
            subject,
            format!("its group may read it (mode {mode:03o}); `chmod 600 {}` unless meant", key.display()),
        ),
        _ => {}
    }
}

/// A secret file (`what`: whose), checked as `serve` loads it: there, private, long enough, not a
/// published example; a weak-looking one is a warning.
fn secret_file(report: &mut Report, what: &str, path: &Path) {
    let subject = format!("{what} {}", path.display());
    if fs::metadata(path).is_err_and(|err| err.kind() == ErrorKind::NotFound) {
        let fix = format!(
            "no such file: write the secret there, mode 0600 (a new one: \
             `(umask 077; openssl rand -hex 32 > {})`)",
            path.display()
        );
        return report.problem(subject, fix);
    }
    match secret::read_shared(path) {
        Ok((_, Some(weak))) => {
            report.warning(subject, format!("looks weak: {weak}; make one with `openssl rand -hex 32`"))
        }
        Ok(_) => report.ok(subject, "private, long enough"),
        Err(err) => report.problem(subject, format!("{err:#}")),
    }
}
