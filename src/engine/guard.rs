//! A watchdog beside the engine host. The engine host tells it every
//! shell it starts; if the engine host dies, even by SIGKILL, the pipe
//! between them closes and the guard kills those shells' sessions: the
//! commands they were running included. Nothing outlives its engine host.

use std::io::{BufRead, Write};
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
        let mut pipe = self.pipe.lock().expect("guard pipe lock");
        // A guard that is gone cannot help; the engine host goes on.
        let _ = writeln!(pipe, "{pid}");
    }
}

/// `pcl engine --guard`: read session ids until end of input, then kill
/// every one of those sessions.
pub fn run() {
    let mut sessions = Vec::new();
    for line in std::io::stdin().lock().lines() {
        match line {
            Ok(line) => sessions.extend(line.trim().parse::<i32>().ok().filter(|&pid| pid > 1)),
            Err(_) => break,
        }
    }
    kill_sessions(&sessions);
}
