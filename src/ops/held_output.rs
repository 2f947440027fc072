//! One engine's output on one stream, held until its turn to print (px
//! answers in engine order): in memory up to a limit, past it in a file
//! with no name in the session's private directory. So a px whose outputs
//! outgrow the daemon's memory still arrives whole, and nothing is left on
//! disk however the daemon ends.

use std::fs::OpenOptions;
use std::io::{self, SeekFrom};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::fs::File;
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};

pub(super) struct HeldOutput {
    memory: Vec<u8>,
    limit: usize,
    dir: PathBuf,
    file: Option<File>,
    /// The file was rewound for reading.
    rewound: bool,
}

impl HeldOutput {
    /// Up to `limit` bytes in memory, the rest in a file in `dir`.
    pub(super) fn new(dir: PathBuf, limit: usize) -> HeldOutput {
        HeldOutput {
            memory: Vec::new(),
            limit,
            dir,
            file: None,
            rewound: false,
        }
    }

    pub(super) async fn push(&mut self, data: &[u8]) -> io::Result<()> {
        if self.file.is_none() && self.memory.len() + data.len() <= self.limit {
            self.memory.extend_from_slice(data);
            return Ok(());
        }
        let file = match &mut self.file {
            Some(file) => file,
            None => {
                let mut file = File::from_std(unnamed_file(&self.dir)?);
                file.write_all(&self.memory).await?;
                self.memory = Vec::new();
                self.file.insert(file)
            }
        };
        file.write_all(data).await
    }

    /// Everything held, from the start, in pieces of at most `max` bytes;
    /// `None` once all was read.
    pub(super) async fn next_piece(&mut self, max: usize) -> io::Result<Option<Vec<u8>>> {
        match &mut self.file {
            None if self.memory.is_empty() => Ok(None),
            None => {
                let rest = self.memory.split_off(max.min(self.memory.len()));
                Ok(Some(std::mem::replace(&mut self.memory, rest)))
            }
            Some(file) => {
                if !self.rewound {
                    file.flush().await?;
                    file.seek(SeekFrom::Start(0)).await?;
                    self.rewound = true;
                }
                let mut piece = Vec::with_capacity(max);
                (&mut *file)
                    .take(max as u64)
                    .read_to_end(&mut piece)
                    .await?;
                Ok((!piece.is_empty()).then_some(piece))
            }
        }
    }
}

/// A file only this process can reach: unnamed where the file system
/// allows (`O_TMPFILE`), else named and unlinked at once.
fn unnamed_file(dir: &Path) -> io::Result<std::fs::File> {
    std::fs::create_dir_all(dir)?;
    let mut options = OpenOptions::new();
    options.read(true).write(true).mode(0o600);
    if let Ok(file) = options.clone().custom_flags(libc::O_TMPFILE).open(dir) {
        return Ok(file);
    }
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let path = dir.join(format!("held-{}-{n}", std::process::id()));
    let file = options.create_new(true).open(&path)?;
    std::fs::remove_file(&path)?;
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::HeldOutput;

    async fn read_all(held: &mut HeldOutput, max: usize) -> Vec<u8> {
        let mut all = Vec::new();
        while let Some(piece) = held.next_piece(max).await.unwrap() {
            assert!(!piece.is_empty() && piece.len() <= max);
            all.extend(piece);
        }
        all
    }

    #[tokio::test]
    async fn gives_back_what_it_held_in_memory_or_past_the_limit() {
        let dir = tempfile::tempdir().unwrap();
        let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        for limit in [0, 1_000, 1 << 20] {
            let mut held = HeldOutput::new(dir.path().to_path_buf(), limit);
            for part in data.chunks(7_000) {
                held.push(part).await.unwrap();
            }
            assert_eq!(held.file.is_some(), limit < data.len(), "limit {limit}");
            assert_eq!(read_all(&mut held, 4_096).await, data, "limit {limit}");
        }
        // No file is left with a name.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
