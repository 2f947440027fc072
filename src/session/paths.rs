use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::SessionError;

/// Where a session lives: a 0700 directory holding its socket and log.
#[derive(Debug, Clone)]
pub(crate) struct SessionPaths {
    pub name: String,
    pub dir: PathBuf,
    pub socket: PathBuf,
    pub log: PathBuf,
}

impl SessionPaths {
    pub(crate) fn new(name: &str) -> Result<Self, SessionError> {
        let valid = !name.is_empty()
            && !name.starts_with('.')
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b));
        if !valid {
            return Err(SessionError::BadName(name.to_string()));
        }
        let dir = root().join(name);
        Ok(Self {
            name: name.to_string(),
            socket: dir.join("sock"),
            log: dir.join("log"),
            dir,
        })
    }

    /// Whether a daemon answers on the socket now.
    pub(crate) fn is_running(&self) -> bool {
        std::os::unix::net::UnixStream::connect(&self.socket).is_ok()
    }

    /// Remove the session's directory (log, socket, kept job records),
    /// once its daemon has stopped cleanly.
    pub(crate) fn remove_dir(&self) -> Result<(), SessionError> {
        match std::fs::remove_dir_all(&self.dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.into()),
            _ => Ok(()),
        }
    }

    /// Create (or check) the private directories, refusing ones another
    /// user could read or own.
    pub(crate) fn create_dir(&self) -> Result<(), SessionError> {
        for dir in [
            self.dir.parent().expect("session dir has a parent"),
            &self.dir,
        ] {
            match std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
            {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(e.into()),
            }
            check_private(dir)?;
        }
        Ok(())
    }
}

/// Held by the one `pcl up` that is starting a session; released when
/// dropped (or when that process ends, however it ends).
#[derive(Debug)]
pub(crate) struct StartLock {
    _held: std::fs::File,
}

impl SessionPaths {
    /// Take the session's start lock, or fail at once if another `pcl up`
    /// holds it: the lock, not a check of the socket, decides who starts.
    pub(crate) fn lock_start(&self) -> Result<StartLock, SessionError> {
        use std::os::fd::AsRawFd;
        use std::os::unix::fs::OpenOptionsExt;
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(self.dir.join("start.lock"))?;
        // SAFETY: flock on a descriptor we own.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            let e = std::io::Error::last_os_error();
            return Err(if e.kind() == std::io::ErrorKind::WouldBlock {
                SessionError::AlreadyStarting(self.name.clone())
            } else {
                e.into()
            });
        }
        Ok(StartLock { _held: file })
    }
}

fn check_private(dir: &Path) -> Result<(), SessionError> {
    let meta = std::fs::metadata(dir)?;
    // SAFETY: geteuid cannot fail.
    let me = unsafe { libc::geteuid() };
    if meta.uid() != me || meta.permissions().mode() & 0o077 != 0 {
        return Err(SessionError::NotPrivate {
            path: dir.display().to_string(),
        });
    }
    Ok(())
}

/// `$XDG_RUNTIME_DIR/pcl`, else `~/.local/state/pcl`.
pub(super) fn root() -> PathBuf {
    match std::env::var_os("XDG_RUNTIME_DIR").filter(|d| !d.is_empty()) {
        Some(dir) => PathBuf::from(dir).join("pcl"),
        None => {
            let home = std::env::var_os("HOME")
                .map(PathBuf::from)
                .unwrap_or_else(|| "/tmp".into());
            home.join(".local/state/pcl")
        }
    }
}
