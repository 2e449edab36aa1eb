//! Files only the server's own user may read: the data directory (`0700`), the SQLite
//! database with its `-wal` and `-shm` files, the JWT secret (`0600`). They hold password
//! hashes, every message and the signing key, so other local users must not read them.

use std::path::Path;

/// Create `path` for the server's user only (`0600`), failing if it exists: secrets and
/// backups are never written over, nor through a file someone else made first.
pub fn create_new(path: &Path) -> std::io::Result<std::fs::File> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)
}

/// Write `bytes` to a new private file ([`create_new`]) and sync it to disk.
pub fn write_new(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut file = create_new(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

/// Take group and other permissions away from `path` if it has any, saying so in the log
/// (an install that left it open is fixed, not refused). `what` names it in the warning.
/// Nothing to do for a path that does not exist, or on a system without Unix modes.
pub fn tighten(path: &Path, what: &str) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let Ok(meta) = std::fs::metadata(path) else {
            return Ok(());
        };
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode & 0o700))?;
            tracing::warn!(
                path = %path.display(),
                was = format!("{mode:o}"),
                "{what} was open to other users; made it private"
            );
        }
    }
    #[cfg(not(unix))]
    let _ = (path, what);
    Ok(())
}
