//! The engine host's scratch place: a directory made fresh for this engine
//! host alone. Its name is random and it is created exclusively, then its
//! owner and mode are checked, so no other user can have prepared it (a
//! predictable name in a shared `/tmp` would let them plant a directory or
//! links there and have our scripts read, written or run from it). Files
//! in it are created exclusively too, never through a link.

use std::fs::{DirBuilder, File, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use super::shell::random_hex;

/// The prefix of every scratch directory's name, which the clean-up of a
/// dead engine host's leftovers also checks before removing one.
pub(super) const SCRATCH_PREFIX: &str = "pcl-engine-";

/// This engine host's scratch directory, made on first use.
pub(super) fn scratch_dir() -> io::Result<&'static Path> {
    static DIR: OnceLock<io::Result<PathBuf>> = OnceLock::new();
    match DIR.get_or_init(make_private_dir) {
        Ok(dir) => Ok(dir),
        Err(e) => Err(io::Error::new(e.kind(), e.to_string())),
    }
}

/// Under `$XDG_RUNTIME_DIR` where it is ours and private (it is a tmpfs
/// no other user can write), else under the system's temporary directory.
fn base() -> PathBuf {
    std::env::var_os("XDG_RUNTIME_DIR")
        .map(PathBuf::from)
        .filter(|dir| dir.is_absolute() && is_private_dir(dir))
        .unwrap_or_else(std::env::temp_dir)
}

fn make_private_dir() -> io::Result<PathBuf> {
    let base = base();
    for _ in 0..16 {
        let dir = base.join(format!("{SCRATCH_PREFIX}{}", random_hex()));
        // Not recursive: a directory that is already there, whoever made
        // it, is an error, never accepted.
        match DirBuilder::new().mode(0o700).create(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
        if !is_private_dir(&dir) {
            return Err(io::Error::other(format!(
                "{} is not a private directory of this user right after creating it",
                dir.display()
            )));
        }
        return Ok(dir);
    }
    Err(io::Error::other(format!(
        "cannot create a fresh directory in {}",
        base.display()
    )))
}

/// A real directory (not a link to one), owned by us, that nobody else
/// may read, write or enter.
pub(super) fn is_private_dir(dir: &Path) -> bool {
    // SAFETY: geteuid cannot fail.
    let me = unsafe { libc::geteuid() };
    std::fs::symlink_metadata(dir)
        .is_ok_and(|m| m.is_dir() && m.uid() == me && m.mode() & 0o077 == 0)
}

/// Create `path` for writing: it must not exist yet (so never a link
/// someone planted), and only we may read it.
pub(super) fn create_exclusive(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scratch_dir_is_fresh_and_private_and_files_in_it_never_follow_links() {
        let dir = scratch_dir().expect("a scratch dir");
        assert!(is_private_dir(dir));
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        assert!(name.starts_with(SCRATCH_PREFIX) && name.len() > SCRATCH_PREFIX.len() + 16);

        let target = dir.join("target");
        std::fs::write(&target, b"keep").unwrap();
        let link = dir.join("link");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        assert!(create_exclusive(&link).is_err(), "followed a planted link");
        assert_eq!(std::fs::read(&target).unwrap(), b"keep");
        assert!(
            create_exclusive(&target).is_err(),
            "reused an existing file"
        );
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_directory_others_may_enter_is_not_private() {
        let dir = std::env::temp_dir().join(format!("pcl-scratch-test-{}", random_hex()));
        DirBuilder::new().mode(0o755).create(&dir).unwrap();
        assert!(!is_private_dir(&dir));
        let link = dir.with_extension("link");
        std::os::unix::fs::symlink(&dir, &link).unwrap();
        std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o700))
            .unwrap();
        assert!(is_private_dir(&dir));
        assert!(!is_private_dir(&link), "a link to a private dir is not one");
        std::fs::remove_file(&link).unwrap();
        std::fs::remove_dir(&dir).unwrap();
    }
}
