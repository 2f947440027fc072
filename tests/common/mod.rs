//! Shared integration-test harness for pcl.
//!
//! Every test file does `mod common;` and uses the pieces it needs:
//!
//! - [`Env`]: an isolated "world" for one test: a temp dir holding `HOME`
//!   and `XDG_RUNTIME_DIR` for pcl, a unique session name (`PCL_SESSION`),
//!   and a builder ([`Env::pcl`] -> [`Cmd`]) that runs the real binary with
//!   a timeout and returns an [`Output`]. Dropping the env runs `pcl down`
//!   and kills whatever of its session is still running.
//! - [`Sshd`]: a real OpenSSH server on a free loopback port with its own
//!   keys and a client config (`ssh_options()` -> `["-F", ".../ssh_config"]`).
//! - [`NetnsHosts`]: n network namespaces behind a bridge, one sshd each, so
//!   one machine looks like n hosts (needs root and iproute2).
//! - [`Bastion`]: namespace hosts behind a bastion, reachable only
//!   through ssh's ProxyJump or ProxyCommand.
//! - [`Host`] + [`Env::write_cluster`]: cluster files for the local
//!   launcher, the loopback sshd and the namespace hosts.
//! - [`assert_nothing_left`] / [`session_processes`]: scan `/proc` for any
//!   process that still belongs to a session.
//!
//! Everything is real (processes, sockets, namespaces) and everything the
//! harness creates is removed on `Drop`, also when the test panics.
//!
//! Declare hosts before the env (`let sshd = ...; let env = Env::new();`) so
//! that the env (and with it `pcl down`) is dropped while the hosts still
//! exist.
//!
//! Set `PCL_TEST_REQUIRE=1` to turn "SKIPPED" (no sshd, no root, no
//! iproute2) into test failures, e.g. in CI where these must run.

#![allow(dead_code, unused_imports)]

mod bastion;
mod cluster;
mod cmd;
mod env;
mod files;
mod netns;
mod procs;
mod px_output;
pub mod slurm;
mod sshd;
pub mod users;

pub use bastion::*;
pub use cluster::*;
pub use cmd::*;
pub use env::*;
pub use files::*;
pub use netns::*;
pub use procs::*;
pub use px_output::*;
pub use sshd::*;

use std::collections::BTreeSet;
use std::ffi::{OsStr, OsString};
use std::fmt::Write as _;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

/// The binary under test.
pub const PCL: &str = env!("CARGO_BIN_EXE_pcl");

/// Default time limit for one command run through [`Cmd`].
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// How long processes of a session get to disappear before
/// [`assert_nothing_left`] fails.
pub const LEFTOVER_GRACE: Duration = Duration::from_secs(5);

/// How long we wait for stdout/stderr to reach EOF after the process exited.
pub(crate) const PIPE_GRACE: Duration = Duration::from_secs(5);

pub(crate) const SSHD: &str = "/usr/sbin/sshd";

pub(crate) static COUNTER: AtomicUsize = AtomicUsize::new(0);

pub(crate) fn next_id() -> usize {
    COUNTER.fetch_add(1, Ordering::SeqCst)
}

/// The current test's name (the test harness names each test's thread after
/// it), last path segment only.
pub fn test_name() -> String {
    let name = thread::current().name().unwrap_or("test").to_string();
    name.rsplit("::").next().unwrap_or("test").to_string()
}

pub(crate) fn skip(reason: &str) {
    if std::env::var_os("PCL_TEST_REQUIRE").is_some_and(|v| v != "0" && !v.is_empty()) {
        panic!("PCL_TEST_REQUIRE is set but the test would be skipped: {reason}");
    }
    eprintln!("SKIPPED: {} ({reason})", test_name());
}

/// A peer tool that comparison tests run (ClusterShell's `nodeset`, pdsh's
/// `dshbak`, GNU `parallel`), from `PATH`; `None`, after printing
/// `SKIPPED: ...`, when it is not installed (`scripts/test.sh` installs
/// `package`).
pub fn peer_tool(name: &str, package: &str) -> Option<PathBuf> {
    let found = find_program(name, &[]);
    if found.is_none() {
        skip(&format!(
            "{name} is not installed (Debian package {package})"
        ));
    }
    found
}

pub(crate) fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

pub(crate) fn current_user() -> String {
    if let Ok(out) = Command::new("id").arg("-un").output() {
        if out.status.success() {
            let name = String::from_utf8_lossy(&out.stdout).trim().to_string();
            if !name.is_empty() {
                return name;
            }
        }
    }
    std::env::var("USER").unwrap_or_else(|_| "root".into())
}

pub(crate) fn find_program(name: &str, candidates: &[&str]) -> Option<PathBuf> {
    for c in candidates {
        let p = Path::new(c);
        if p.is_file() {
            return Some(p.to_path_buf());
        }
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

pub(crate) fn temp_dir(prefix: &str) -> tempfile::TempDir {
    // Short paths: unix socket paths (the session socket lives under
    // XDG_RUNTIME_DIR) must stay below 108 bytes.
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir_in("/tmp")
        .expect("create temp dir")
}

pub(crate) fn sanitize(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect()
}

/// Run a helper command (ip, ssh-keygen, ...) and return its stdout, or an
/// error carrying its stderr.
pub(crate) fn sh(program: &str, args: &[&str]) -> Result<String, String> {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{program}: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "`{program} {}` failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

pub(crate) fn send_signal(pid: i32, sig: i32) {
    // SAFETY: kill(2) with a concrete pid (or -pgid) we own; errors ignored.
    unsafe {
        libc::kill(pid, sig);
    }
}

pub(crate) fn stop_child(child: &mut Child) {
    if let Ok(Some(_)) = child.try_wait() {
        return;
    }
    send_signal(child.id() as i32, libc::SIGTERM);
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

pub(crate) fn tail(text: &str, max_lines: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let start = lines.len().saturating_sub(max_lines);
    lines[start..].join("\n")
}

pub(crate) fn clip(bytes: &[u8], max: usize) -> String {
    if bytes.len() <= max {
        String::from_utf8_lossy(bytes).into_owned()
    } else {
        format!(
            "{}\n... [{} more bytes]",
            String::from_utf8_lossy(&bytes[..max]),
            bytes.len() - max
        )
    }
}
