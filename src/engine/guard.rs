//! A watchdog beside the engine host. The engine host tells it every
//! shell it starts and every temporary file it is writing; if the engine
//! host dies, even by SIGKILL, the pipe between them closes and the guard
//! removes those temporary files, then kills those shells' sessions: the
//! commands they were running included. Nothing outlives its engine host,
//! not even half a file.
//!
//! The protocol is one line per message: `pid N` (watch the session of
//! shell N), `tmp PATH` (remove the file or scratch directory PATH
//! unless it is done), `done PATH` (PATH
//! was renamed into place or removed). PATH is the path's bytes with `\`
//! written as `\\` and a newline as `\n`, so any path fits on a line.

use std::collections::HashSet;
use std::ffi::OsString;
use std::io::{BufRead, Write};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::Mutex;

use super::procs::kill_sessions;

pub struct Guard {
    // Held for the pipe: the guard acts when its last writer is gone.
    _child: Child,
    pipe: Mutex<ChildStdin>,
}

impl Guard {
    pub fn spawn() -> std::io::Result<Guard> {
        let mut child = Command::new(std::env::current_exe()?)
            .args(["engine", "--guard"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()?;
        let pipe = child.stdin.take().expect("piped stdin");
        Ok(Guard {
            _child: child,
            pipe: Mutex::new(pipe),
        })
    }

    /// Watch the session led by shell `pid`.
    pub fn watch(&self, pid: i32) {
        self.send(format!("pid {pid}\n").as_bytes());
    }

    /// Remove `path` if the engine host dies before `done(path)`. Call it
    /// before creating the file, so that no moment is left unguarded.
    pub fn temp(&self, path: &Path) {
        self.send(&message(b"tmp ", path));
    }

    /// `path` is no longer temporary: renamed into place, or removed.
    pub fn done(&self, path: &Path) {
        self.send(&message(b"done ", path));
    }

    fn send(&self, line: &[u8]) {
        let mut pipe = self.pipe.lock().expect("guard pipe lock");
        // A guard that is gone cannot help; the engine host goes on.
        let _ = pipe.write_all(line);
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

fn unescape(text: &[u8]) -> PathBuf {
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
/// the temporary files still registered and kill every watched session.
pub fn run() {
    let mut sessions = Vec::new();
    let mut temps = HashSet::new();
    for line in std::io::stdin().lock().split(b'\n') {
        let Ok(line) = line else { break };
        if let Some(pid) = line.strip_prefix(b"pid ") {
            let pid = std::str::from_utf8(pid).ok().and_then(|p| p.parse().ok());
            sessions.extend(pid.filter(|&pid: &i32| pid > 1));
        } else if let Some(path) = line.strip_prefix(b"tmp ") {
            temps.insert(unescape(path));
        } else if let Some(path) = line.strip_prefix(b"done ") {
            temps.remove(&unescape(path));
        }
    }
    for path in temps {
        if std::fs::remove_file(&path).is_err() {
            let _ = std::fs::remove_dir_all(&path);
        }
    }
    kill_sessions(&sessions);
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
