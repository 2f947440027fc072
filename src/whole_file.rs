//! Writing a file so that it appears whole or not at all: the bytes go to
//! a fresh temporary file beside it (a random name, created exclusively,
//! never through a link someone planted), which is renamed into place once
//! complete. Dropped before that, it is removed. A leaf: the daemon and the
//! CLI both write files this way.

use std::fs::{File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};

/// A file being written in place of `target`.
pub(crate) struct WholeFile {
    temp: PathBuf,
    target: PathBuf,
    kept: bool,
}

impl WholeFile {
    /// Create the temporary file (and `target`'s directory if missing).
    pub(crate) fn create(target: &Path) -> io::Result<(WholeFile, File)> {
        let dir = match target.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir,
            _ => Path::new("."),
        };
        std::fs::create_dir_all(dir)?;
        let name = target
            .file_name()
            .ok_or_else(|| io::Error::other(format!("{} names no file", target.display())))?;
        for _ in 0..16 {
            let temp = dir.join(format!(
                ".{}.pcl-{}.tmp",
                name.to_string_lossy(),
                random_hex()
            ));
            match OpenOptions::new().write(true).create_new(true).open(&temp) {
                Ok(file) => {
                    let whole = WholeFile {
                        temp,
                        target: target.to_path_buf(),
                        kept: false,
                    };
                    return Ok((whole, file));
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e),
            }
        }
        Err(io::Error::other(format!(
            "cannot create a temporary file in {}",
            dir.display()
        )))
    }

    /// The bytes are all there: put the file in place.
    pub(crate) fn commit(mut self) -> io::Result<()> {
        std::fs::rename(&self.temp, &self.target)?;
        self.kept = true;
        Ok(())
    }
}

impl Drop for WholeFile {
    fn drop(&mut self) {
        if !self.kept {
            let _ = std::fs::remove_file(&self.temp);
        }
    }
}

fn random_hex() -> String {
    use ring::rand::{SecureRandom, SystemRandom};
    let mut bytes = [0u8; 8];
    SystemRandom::new()
        .fill(&mut bytes)
        .expect("the system random source works");
    hex::encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn dir() -> PathBuf {
        let dir = std::env::temp_dir().join(format!("pcl-whole-file-test-{}", random_hex()));
        std::fs::create_dir(&dir).unwrap();
        dir
    }

    #[test]
    fn the_file_appears_whole_or_not_at_all() {
        let dir = dir();
        let target = dir.join("sub/out.bin");
        let (whole, mut file) = WholeFile::create(&target).unwrap();
        file.write_all(b"half").unwrap();
        assert!(!target.exists());
        drop((whole, file));
        assert!(!target.exists());
        assert_eq!(
            std::fs::read_dir(dir.join("sub")).unwrap().count(),
            0,
            "temp left"
        );

        let (whole, mut file) = WholeFile::create(&target).unwrap();
        file.write_all(b"whole").unwrap();
        drop(file);
        whole.commit().unwrap();
        assert_eq!(std::fs::read(&target).unwrap(), b"whole");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
