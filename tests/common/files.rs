//! Files a transfer leaves, and small file systems to fill up.

use super::*;

/// Names in `dir` holding `.pcl`: a transfer's temporary files.
pub fn pcl_temp_files(dir: &Path) -> Vec<String> {
    fs::read_dir(dir)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.contains(".pcl"))
                .collect()
        })
        .unwrap_or_default()
}

/// A small tmpfs, unmounted on drop.
pub struct Tmpfs(PathBuf);

impl Tmpfs {
    /// Mounted at `dir` (created if missing), or `None` (skipped) without root.
    pub fn mount(dir: PathBuf, size: &str) -> Option<Tmpfs> {
        std::fs::create_dir_all(&dir).unwrap();
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&dir)
            .status()
            .is_ok_and(|s| s.success());
        if ok {
            Some(Tmpfs(dir))
        } else {
            skip("cannot mount a tmpfs: needs root");
            None
        }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

/// A tiny seeded generator, so failures reproduce.
pub struct XorShift(pub u64);

impl XorShift {
    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// `len` bytes, none of them NUL (no shell string holds one).
    pub fn value(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| (self.below(255) + 1) as u8).collect()
    }

    /// `len` random bytes, 8 at a time.
    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(len + 8);
        while out.len() < len {
            out.extend_from_slice(&self.next().to_le_bytes());
        }
        out.truncate(len);
        out
    }
}
