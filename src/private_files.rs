//! Files only wsguard's own user may touch: the HS256 secret, the private keys, the SQLite
//! database and its companions. Their mode is checked or set on the file itself, never inherited
//! from the folder or the umask. On other systems than unix these are no-ops.
//!
//! A secret or key file that group or others can read or write is refused when it is loaded:
//! someone else may have read it, or may replace it. Database files are created 0600 and an
//! existing one is tightened to 0600 (with a warning): the data can stay, only its mode was wrong.

use std::fs;
use std::io;
use std::path::Path;

/// A secret or key file that group or others can read or write.
#[derive(Debug, thiserror::Error)]
#[error(
    "{path} can be read or written by group or others (mode {mode:03o}); make it private with \
     `chmod 600 {path}`, and replace the secret if someone else may have read it",
    path = .path.display()
)]
pub(crate) struct OpenToOthers {
    pub(crate) path: std::path::PathBuf,
    pub(crate) mode: u32,
}

/// Group and others' permission bits.
#[cfg(unix)]
const OTHERS: u32 = 0o077;

/// Fails with [`OpenToOthers`] when the opened `file` (at `path`) is open to group or others.
/// Checked on the open handle, so the file checked is the file read.
pub(crate) fn ensure_owner_only(file: &fs::File, path: &Path) -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = file.metadata()?.permissions().mode() & 0o777;
        if mode & OTHERS != 0 {
            return Err(OpenToOthers { path: path.to_owned(), mode }.into());
        }
    }
    #[cfg(not(unix))]
    let _ = (file, path);
    Ok(())
}

/// Reads the file at `path` after checking it is private ([`ensure_owner_only`]). `None` when
/// there is no such file.
pub(crate) fn read_private(path: &Path) -> anyhow::Result<Option<Vec<u8>>> {
    use anyhow::Context;
    use std::io::Read;
    let mut file = match fs::File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    ensure_owner_only(&file, path)?;
    let mut contents = Vec::new();
    file.read_to_end(&mut contents).with_context(|| format!("reading {}", path.display()))?;
    Ok(Some(contents))
}

/// Creates `path` empty with mode 0600, whatever the umask, unless it exists. True when created.
pub(crate) fn create_owner_only(path: &Path) -> io::Result<bool> {
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    match options.open(path) {
        Ok(file) => {
            // The umask may have taken bits away (0400 would be unwritable): set the mode itself.
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                file.set_permissions(fs::Permissions::from_mode(0o600))?;
            }
            #[cfg(not(unix))]
            drop(file);
            Ok(true)
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(e),
    }
}

/// Sets `path` to mode 0600 when group or others have any permission on it; returns the mode it
/// had then. `None` when it was private already or does not exist.
pub(crate) fn tighten(path: &Path) -> io::Result<Option<u32>> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = match fs::metadata(path) {
            Ok(metadata) => metadata.permissions().mode() & 0o777,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        if mode & OTHERS != 0 {
            fs::set_permissions(path, fs::Permissions::from_mode(0o600))?;
            return Ok(Some(mode));
        }
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(None)
}

/// The permission bits of `path` (tests).
#[cfg(all(test, unix))]
pub(crate) fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// Sets the permission bits of `path` (tests).
#[cfg(all(test, unix))]
pub(crate) fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    #[test]
    fn a_file_open_to_others_is_refused_with_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        fs::write(&path, "x").unwrap();
        for lax in [0o644, 0o640, 0o604, 0o620, 0o602, 0o660] {
            set_mode(&path, lax);
            let err = read_private(&path).expect_err("refused");
            let open = err.downcast_ref::<OpenToOthers>().expect("typed");
            assert_eq!(open.mode, lax);
            let text = err.to_string();
            assert!(text.contains(&format!("chmod 600 {}", path.display())), "{text}");
            assert!(text.contains(&format!("mode {lax:03o}")), "{text}");
        }
        for private in [0o600, 0o400, 0o700] {
            set_mode(&path, private);
            assert_eq!(read_private(&path).unwrap().unwrap(), b"x");
        }
        assert!(read_private(&dir.path().join("absent")).unwrap().is_none());
    }

    #[test]
    fn created_files_are_0600_and_lax_ones_are_tightened() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        // The umask is not changed here (other tests of this binary create files meanwhile):
        // tests/api/secrets.rs runs the binary under a lax umask.
        assert!(create_owner_only(&path).unwrap());
        assert_eq!(mode(&path), 0o600);
        assert!(!create_owner_only(&path).unwrap(), "an existing file is left alone");

        assert_eq!(tighten(&path).unwrap(), None);
        set_mode(&path, 0o644);
        assert_eq!(tighten(&path).unwrap(), Some(0o644));
        assert_eq!(mode(&path), 0o600);
        assert_eq!(tighten(&dir.path().join("absent")).unwrap(), None);
    }
}
