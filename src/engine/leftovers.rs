//! What an engine host leaves when it and its guard are both killed with
//! SIGKILL: temporary files half written, its scratch directory. Each
//! engine host keeps a journal of them (the guard's own messages) in a
//! private directory of the user's; the next engine host of the same user
//! on the same machine removes what a journal lists once it can prove the
//! journal's writer is gone. A live engine host's files, of this session
//! or another, are never touched: its journal names a process that still
//! runs.

use std::collections::HashSet;
use std::fs::File;
use std::io::{self, BufRead, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};

use super::guard::unescape;
use super::scratch::{SCRATCH_PREFIX, create_exclusive, is_private_dir};

/// This engine host's journal, opened for appending.
pub(super) struct Journal {
    pub(super) path: PathBuf,
    file: File,
}

impl Journal {
    /// A fresh journal named after this process, on this boot of this
    /// machine.
    pub(super) fn create() -> io::Result<Journal> {
        let me = Writer::this_process()?;
        let path = journal_dir()?.join(me.file_name());
        let file = create_exclusive(&path)?;
        Ok(Journal { path, file })
    }

    /// One guard message, as the guard gets it.
    pub(super) fn record(&mut self, line: &[u8]) {
        // A journal that cannot be written only weakens a later clean-up.
        let _ = self.file.write_all(line);
    }
}

/// `~/.cache/pcl/journal`, private to this user (refused otherwise).
fn journal_dir() -> io::Result<PathBuf> {
    let home = std::env::var_os("HOME").ok_or_else(|| io::Error::other("HOME is not set"))?;
    let dir = PathBuf::from(home).join(".cache/pcl/journal");
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)?;
    if !is_private_dir(&dir) {
        return Err(io::Error::other(format!(
            "{} is not a private directory of this user",
            dir.display()
        )));
    }
    Ok(dir)
}

/// Who wrote a journal: a process on one boot of one machine. A pid alone
/// could have been reused; with its start time it names one process.
#[derive(Debug, PartialEq, Eq)]
struct Writer {
    host: String,
    boot: String,
    pid: i32,
    start: u64,
}

impl Writer {
    fn this_process() -> io::Result<Writer> {
        let pid = std::process::id() as i32;
        Ok(Writer {
            host: hostname()?,
            boot: boot_id()?,
            pid,
            start: start_time(pid).ok_or_else(|| io::Error::other("no start time in /proc"))?,
        })
    }

    fn file_name(&self) -> String {
        format!("{}.{}.{}.{}", self.host, self.boot, self.pid, self.start)
    }

    /// The host name may hold dots; the last three fields cannot.
    fn parse(name: &str) -> Option<Writer> {
        let mut fields = name.rsplitn(4, '.');
        let start = fields.next()?.parse().ok()?;
        let pid = fields.next()?.parse().ok()?;
        let boot = fields.next()?.to_string();
        let host = fields.next()?.to_string();
        Some(Writer {
            host,
            boot,
            pid,
            start,
        })
    }

    /// Gone for sure: another boot, or no process with that pid and start
    /// time. A journal of another machine (a home shared over NFS) is
    /// never judged here.
    fn is_gone(&self, here: &Writer) -> bool {
        self.host == here.host
            && (self.boot != here.boot || start_time(self.pid) != Some(self.start))
    }
}

fn hostname() -> io::Result<String> {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length.
    if unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    Ok(String::from_utf8_lossy(&buf[..end]).replace('/', "_"))
}

fn boot_id() -> io::Result<String> {
    Ok(std::fs::read_to_string("/proc/sys/kernel/random/boot_id")?
        .trim()
        .replace('.', "_"))
}

/// Field 22 of /proc/PID/stat: when the process started, in clock ticks
/// since boot; none for a process that has exited, though its parent has
/// not reaped it yet (a zombie runs nothing and holds no file).
fn start_time(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let mut fields = stat[stat.rfind(')')? + 2..].split(' ');
    if matches!(fields.next(), Some("Z" | "X")) {
        return None;
    }
    fields.nth(18)?.parse().ok()
}

/// The paths a journal (or the guard) holds as still temporary: every
/// `tmp PATH` not followed by `done PATH`.
#[derive(Default)]
pub(super) struct Pending(pub(super) HashSet<PathBuf>);

impl Pending {
    pub(super) fn apply(&mut self, line: &[u8]) {
        if let Some(path) = line.strip_prefix(b"tmp ") {
            self.0.insert(unescape(path));
        } else if let Some(path) = line.strip_prefix(b"done ") {
            self.0.remove(&unescape(path));
        }
    }

    /// Remove what is pending, each path only if it is one of the names
    /// pcl gives temporary things and is ours: a journal is our own file,
    /// but nothing is removed on its word alone.
    pub(super) fn remove(&self) {
        for path in &self.0 {
            if is_ours_to_remove(path) && std::fs::remove_file(path).is_err() {
                let _ = std::fs::remove_dir_all(path);
            }
        }
    }
}

fn is_ours_to_remove(path: &Path) -> bool {
    let Some(name) = path.file_name().map(|n| n.as_bytes()) else {
        return false;
    };
    let temp_file = name.starts_with(b".") && name.ends_with(b".tmp") && contains(name, b".pcl-");
    let scratch = name.starts_with(SCRATCH_PREFIX.as_bytes());
    // SAFETY: geteuid cannot fail.
    let me = unsafe { libc::geteuid() };
    std::fs::symlink_metadata(path)
        .is_ok_and(|m| m.uid() == me && ((temp_file && m.is_file()) || (scratch && m.is_dir())))
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Remove what engine hosts of this user on this machine left when they
/// were killed outright, and their journals.
pub(super) fn clean_stale() {
    let (Ok(dir), Ok(here)) = (journal_dir(), Writer::this_process()) else {
        return;
    };
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(writer) = name.to_str().and_then(Writer::parse) else {
            continue;
        };
        if writer == here || !writer.is_gone(&here) {
            continue;
        }
        let path = entry.path();
        let Ok(file) = File::open(&path) else {
            continue;
        };
        let mut pending = Pending::default();
        for line in io::BufReader::new(file).split(b'\n').map_while(Result::ok) {
            pending.apply(&line);
        }
        pending.remove();
        let _ = std::fs::remove_file(&path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_journal_name_round_trips_whatever_dots_the_host_name_holds() {
        let w = Writer {
            host: "node01.cluster.example".into(),
            boot: "0b2c-11".into(),
            pid: 4242,
            start: 987654,
        };
        assert_eq!(Writer::parse(&w.file_name()), Some(w));
        assert_eq!(Writer::parse("garbage"), None);
    }

    #[test]
    fn only_a_gone_writer_of_this_machine_is_stale() {
        let here = Writer::this_process().unwrap();
        let me_again = Writer::this_process().unwrap();
        assert!(!me_again.is_gone(&here), "a live process is not gone");
        let reused_pid = Writer {
            start: here.start + 1,
            ..Writer::this_process().unwrap()
        };
        assert!(reused_pid.is_gone(&here), "same pid, other start: gone");
        let other_boot = Writer {
            boot: "another-boot".into(),
            ..Writer::this_process().unwrap()
        };
        assert!(other_boot.is_gone(&here));
        let other_host = Writer {
            host: "elsewhere".into(),
            start: 1,
            ..Writer::this_process().unwrap()
        };
        assert!(!other_host.is_gone(&here), "never judged from here");
    }

    #[test]
    fn an_exited_writer_not_yet_reaped_is_gone() {
        let here = Writer::this_process().unwrap();
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id() as i32;
        // Not waited for: once it has exited, it stays a zombie, its
        // start time still in /proc.
        let stat = || std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
        let fields = || {
            let stat = stat();
            let rest = stat.rsplit_once(") ").unwrap().1.to_string();
            rest.split(' ').map(str::to_string).collect::<Vec<_>>()
        };
        while fields()[0] != "Z" {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        let writer = Writer {
            pid,
            start: fields()[19].parse().unwrap(),
            ..Writer::this_process().unwrap()
        };
        assert!(writer.is_gone(&here), "a zombie's files are stale");
        child.wait().unwrap();
    }

    #[test]
    fn only_pcl_temporary_names_are_removed() {
        let dir = tempfile_dir();
        let temp = dir.join(".data.bin.pcl-00ff.tmp");
        // A workdir probe's marker is one of pcl's temporary names too.
        let marker = dir.join(crate::protocol::engine::marker_name(&"0f".repeat(16)));
        let other = dir.join("data.bin");
        std::fs::write(&temp, b"half").unwrap();
        std::fs::write(&marker, b"").unwrap();
        std::fs::write(&other, b"user data").unwrap();
        let mut pending = Pending::default();
        for p in [&temp, &marker, &other] {
            let mut line = b"tmp ".to_vec();
            line.extend_from_slice(p.as_os_str().as_bytes());
            pending.apply(&line);
        }
        pending.remove();
        assert!(!temp.exists());
        assert!(!marker.exists());
        assert!(
            other.exists(),
            "a journal cannot name a user's file for removal"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn tempfile_dir() -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "pcl-leftovers-test-{}",
            super::super::shell::random_hex()
        ));
        std::fs::create_dir(&dir).unwrap();
        dir
    }
}
