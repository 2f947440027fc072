//! A watchdog beside the engine host. The engine host tells it every
//! shell it starts and every temporary file it is writing; if the engine
//! host dies, even by SIGKILL, the pipe between them closes and the guard
//! removes those temporary files, then kills those shells' sessions: the
//! commands they were running included. Nothing outlives its engine host,
//! not even half a file.
//!
//! The protocol is one line per message: `pid N` (watch session N: a
//! shell's, or one an escaped command made), `tmp PATH` (remove the file
//! or scratch directory PATH unless it is done), `done PATH` (PATH was
//! renamed into place or removed), `journal PATH` (the engine host's
//! journal of these messages, removed last), `ended` (every session told
//! of so far has ended: the engine host stopped them all itself, so the
//! guard need not search the process table for them). PATH is the path's
//! bytes with `\` written as `\\` and a newline as `\n`, so any path fits
//! on a line.
//!
//! The same `tmp`/`done` lines go to the journal (`leftovers`), for the
//! case where the guard is killed too.

use std::ffi::OsString;
use std::io::{BufRead, Write};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::Mutex;

use super::leftovers::{Journal, Pending};
use super::procs::{kill_sessions, spawn_recorded};

pub(crate) struct Guard {
    // Held for the pipe: the guard acts when its last writer is gone.
    child: Child,
    channel: Mutex<Channel>,
}

struct Channel {
    pipe: ChildStdin,
    journal: Option<Journal>,
}

impl Guard {
    pub(crate) fn spawn() -> std::io::Result<Guard> {
        let exe = std::env::current_exe()?;
        let mut child = spawn_recorded(
            || {
                Command::new(&exe)
                    .args(["engine", "--guard"])
                    .stdin(Stdio::piped())
                    .stdout(Stdio::null())
                    .spawn()
            },
            |child| child.id() as i32,
        )?;
        let pipe = child.stdin.take().expect("piped stdin");
        let journal = match Journal::create() {
            Ok(journal) => Some(journal),
            Err(e) => {
                eprintln!(
                    "pcl engine: no journal of temporary files ({e}); if this engine host and its guard are both killed, the next one cannot clean up after them"
                );
                None
            }
        };
        let guard = Guard {
            child,
            channel: Mutex::new(Channel { pipe, journal }),
        };
        let journal_path = guard
            .channel
            .lock()
            .expect("guard lock")
            .journal
            .as_ref()
            .map(|j| j.path.clone());
        if let Some(path) = journal_path {
            guard.send(&message(b"journal ", &path));
        }
        Ok(guard)
    }

    /// The guard's pid, which is not one of the descendants to sweep.
    pub(crate) fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Watch session `pid` (led by a shell, or by a command that left its
    /// shell's session).
    pub(crate) fn watch(&self, pid: i32) {
        self.send(format!("pid {pid}\n").as_bytes());
    }

    /// Remove `path` if the engine host dies before `done(path)`. Call it
    /// before creating the file, so that no moment is left unguarded.
    pub(crate) fn temp(&self, path: &Path) {
        self.send(&message(b"tmp ", path));
    }

    /// Every session watched so far has ended.
    pub(crate) fn ended(&self) {
        self.send(b"ended\n");
    }

    /// `path` is no longer temporary: renamed into place, or removed.
    pub(crate) fn done(&self, path: &Path) {
        self.send(&message(b"done ", path));
    }

    fn send(&self, line: &[u8]) {
        let mut channel = self.channel.lock().expect("guard pipe lock");
        if line.starts_with(b"tmp ") || line.starts_with(b"done ") {
            if let Some(journal) = &mut channel.journal {
                journal.record(line);
            }
        }
        // A guard that is gone cannot help; the engine host goes on.
        let _ = channel.pipe.write_all(line);
    }
}

fn message(verb: &[u8], path: &Path) -> Vec<u8> {
    let mut line = verb.to_vec();
    for &b in path.as_os_str().as_bytes() {
        match b {
            b'\\' => line.extend_from_slice(b"\\\\"),
            b'\n' => line.extend_from_slice(b"\\n"),
            b => line.push(b),
        }
    }
    line.push(b'\n');
    line
}

pub(super) fn unescape(text: &[u8]) -> PathBuf {
    let mut out = Vec::with_capacity(text.len());
    let mut bytes = text.iter();
    while let Some(&b) = bytes.next() {
        out.push(match (b, bytes.as_slice().first()) {
            (b'\\', Some(b'n')) => {
                bytes.next();
                b'\n'
            }
            (b'\\', Some(b'\\')) => {
                bytes.next();
                b'\\'
            }
            (b, _) => b,
        });
    }
    PathBuf::from(OsString::from_vec(out))
}

/// `pcl engine --guard`: read messages until end of input, then remove
/// the temporary files still registered, kill every watched session, and
/// remove the journal, whose work is then done.
pub(crate) fn run() {
    let mut sessions = Vec::new();
    let mut pending = Pending::default();
    let mut journal = None;
    for line in std::io::stdin().lock().split(b'\n') {
        let Ok(line) = line else { break };
        if let Some(pid) = line.strip_prefix(b"pid ") {
            let pid = std::str::from_utf8(pid).ok().and_then(|p| p.parse().ok());
            sessions.extend(pid.filter(|&pid: &i32| pid > 1));
        } else if line == b"ended" {
            sessions.clear();
        } else if let Some(path) = line.strip_prefix(b"journal ") {
            journal = Some(unescape(path));
        } else {
            pending.apply(&line);
        }
    }
    pending.remove();
    sessions.sort_unstable();
    sessions.dedup();
    kill_sessions(&sessions);
    if let Some(journal) = journal {
        let _ = std::fs::remove_file(journal);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_path_fits_on_one_line() {
        for path in [
            &b"/w/.a.pcl-1.tmp"[..],
            b"/w/new\nline",
            b"/w/back\\slash\\n",
            b"\\",
            b"\n\n\\\n",
            b"/w/\xff\xfe",
        ] {
            let path = Path::new(std::ffi::OsStr::from_bytes(path));
            let line = message(b"tmp ", path);
            assert_eq!(line.iter().filter(|&&b| b == b'\n').count(), 1);
            assert_eq!(line.last(), Some(&b'\n'));
            let body = &line[4..line.len() - 1];
            assert_eq!(unescape(body), path, "{line:?}");
        }
    }
}
