//! The data folder and the database are private to the user who runs updraft: they hold the
//! secret that signs download URLs.

/// Creates the data folder (and its parents) and makes it private to this user (0700): it
/// holds the database and the secret that signs download URLs.
pub fn private_dir(dir: &std::path::Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

/// Makes a file readable and writable by this user only (0600), creating it empty if needed,
/// before anything is written to it. SQLite gives its `-wal` and `-shm` files the same mode.
///
/// An existing file is only chmod-ed, never opened: closing any descriptor of the database
/// drops every POSIX lock this process holds on it, including the shared lock each WAL
/// connection keeps. Another process closing its last connection would then believe it was
/// the last one, delete the WAL index, and leave this process's readers on a stale snapshot.
pub fn private_file(path: &std::path::Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        if !path.exists() {
            let mut open = std::fs::OpenOptions::new();
            open.write(true).create(true).truncate(false).mode(0o600);
            drop(open.open(path)?);
        }
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    }
    #[cfg(not(unix))]
    if !path.exists() {
        drop(
            std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .open(path)?,
        );
    }
    Ok(())
}
