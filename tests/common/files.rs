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
