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

#![allow(dead_code)]

pub mod slurm;
pub mod users;

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
const PIPE_GRACE: Duration = Duration::from_secs(5);

const SSHD: &str = "/usr/sbin/sshd";

static COUNTER: AtomicUsize = AtomicUsize::new(0);

fn next_id() -> usize {
    COUNTER.fetch_add(1, Ordering::SeqCst)
}

/// The current test's name (the test harness names each test's thread after
/// it), last path segment only.
pub fn test_name() -> String {
    let name = thread::current().name().unwrap_or("test").to_string();
    name.rsplit("::").next().unwrap_or("test").to_string()
}

fn skip(reason: &str) {
    if std::env::var_os("PCL_TEST_REQUIRE").is_some_and(|v| v != "0" && !v.is_empty()) {
        panic!("PCL_TEST_REQUIRE is set but the test would be skipped: {reason}");
    }
    eprintln!("SKIPPED: {} ({reason})", test_name());
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

fn current_user() -> String {
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

fn find_program(name: &str, candidates: &[&str]) -> Option<PathBuf> {
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

fn temp_dir(prefix: &str) -> tempfile::TempDir {
    // Short paths: unix socket paths (the session socket lives under
    // XDG_RUNTIME_DIR) must stay below 108 bytes.
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir_in("/tmp")
        .expect("create temp dir")
}

fn sanitize(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect()
}

/// Run a helper command (ip, ssh-keygen, ...) and return its stdout, or an
/// error carrying its stderr.
fn sh(program: &str, args: &[&str]) -> Result<String, String> {
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

fn send_signal(pid: i32, sig: i32) {
    // SAFETY: kill(2) with a concrete pid (or -pgid) we own; errors ignored.
    unsafe {
        libc::kill(pid, sig);
    }
}

fn stop_child(child: &mut Child) {
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

fn tail(text: &str, max_lines: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let start = lines.len().saturating_sub(max_lines);
    lines[start..].join("\n")
}

fn clip(bytes: &[u8], max: usize) -> String {
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

// ---------------------------------------------------------------------------
// Cmd / Output
// ---------------------------------------------------------------------------

/// A command to run with a time limit. Built by [`Env::pcl`] / [`Env::cmd`]
/// (or [`Cmd::new`] for helpers), run with [`Cmd::run`].
#[must_use]
pub struct Cmd {
    program: OsString,
    args: Vec<OsString>,
    env: Vec<(OsString, Option<OsString>)>,
    clear_pcl_env: bool,
    cwd: Option<PathBuf>,
    stdin: Option<Vec<u8>>,
    stderr_on_a_terminal: bool,
    timeout: Duration,
    log_dirs: Vec<PathBuf>,
}

impl Cmd {
    pub fn new(program: impl AsRef<OsStr>) -> Cmd {
        Cmd {
            program: program.as_ref().to_owned(),
            args: Vec::new(),
            env: Vec::new(),
            clear_pcl_env: false,
            cwd: None,
            stdin: None,
            stderr_on_a_terminal: false,
            timeout: DEFAULT_TIMEOUT,
            log_dirs: Vec::new(),
        }
    }

    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Cmd {
        self.args.push(arg.as_ref().to_owned());
        self
    }

    pub fn args<I, S>(mut self, args: I) -> Cmd
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.args
            .extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        self
    }

    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Cmd {
        self.env
            .push((key.as_ref().to_owned(), Some(value.as_ref().to_owned())));
        self
    }

    pub fn env_remove(mut self, key: impl AsRef<OsStr>) -> Cmd {
        self.env.push((key.as_ref().to_owned(), None));
        self
    }

    pub fn current_dir(mut self, dir: impl AsRef<Path>) -> Cmd {
        self.cwd = Some(dir.as_ref().to_owned());
        self
    }

    /// Bytes fed to the command's stdin (default: /dev/null).
    pub fn stdin(mut self, bytes: impl Into<Vec<u8>>) -> Cmd {
        self.stdin = Some(bytes.into());
        self
    }

    /// Stderr on a pseudo-terminal, as in an interactive shell, so pcl
    /// draws its progress bars; [`Output::stderr`] is then what the
    /// terminal showed (newlines as CR LF). Stdout stays a pipe.
    pub fn stderr_on_a_terminal(mut self) -> Cmd {
        self.stderr_on_a_terminal = true;
        self
    }

    /// Time limit; when it passes the command's process group is killed.
    pub fn timeout(mut self, timeout: Duration) -> Cmd {
        self.timeout = timeout;
        self
    }

    pub fn timeout_secs(self, secs: u64) -> Cmd {
        self.timeout(Duration::from_secs(secs))
    }

    fn cmdline(&self) -> String {
        let mut s = Path::new(&self.program)
            .file_name()
            .unwrap_or(&self.program)
            .to_string_lossy()
            .into_owned();
        for a in &self.args {
            let a = a.to_string_lossy();
            s.push(' ');
            if a.is_empty()
                || a.contains(|c: char| c.is_whitespace() || "'\"$;&|()<>*?".contains(c))
            {
                s.push('\'');
                s.push_str(&a.replace('\'', r"'\''"));
                s.push('\'');
            } else {
                s.push_str(&a);
            }
        }
        s
    }

    /// Run to completion. Panics if the command cannot be started, exceeds
    /// its timeout, or leaves its stdout/stderr open after exiting (e.g. a
    /// daemon that did not detach its stdio: `out=$(pcl up)` would hang).
    pub fn run(self) -> Output {
        let out = self.execute().unwrap_or_else(|e| panic!("{e}"));
        if out.timed_out {
            panic!(
                "command timed out after {:?} and was killed\n{}",
                out.elapsed,
                out.describe()
            );
        }
        if out.pipes_left_open {
            panic!(
                "command exited but its stdout/stderr stayed open for {PIPE_GRACE:?} \
                 (a child process kept the pipe: `x=$(pcl ...)` would hang)\n{}",
                out.describe()
            );
        }
        out
    }

    /// Like [`Cmd::run`] but never panics: timeouts are reported in
    /// [`Output::timed_out`], start failures as `Err`.
    pub fn execute(self) -> Result<Output, String> {
        let cmdline = self.cmdline();
        let mut cmd = Command::new(&self.program);
        cmd.args(&self.args);
        if self.clear_pcl_env {
            for (k, _) in std::env::vars_os() {
                if k.to_string_lossy().starts_with("PCL_") {
                    cmd.env_remove(&k);
                }
            }
        }
        for (k, v) in &self.env {
            match v {
                Some(v) => cmd.env(k, v),
                None => cmd.env_remove(k),
            };
        }
        if let Some(dir) = &self.cwd {
            cmd.current_dir(dir);
        }
        cmd.stdin(if self.stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        });
        let terminal = if self.stderr_on_a_terminal {
            let (terminal, stderr) = open_terminal()?;
            cmd.stderr(stderr);
            Some(terminal)
        } else {
            cmd.stderr(Stdio::piped());
            None
        };
        cmd.stdout(Stdio::piped());
        // Own process group, so that a timeout can kill the whole tree.
        cmd.process_group(0);

        let start = Instant::now();
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("cannot start `{cmdline}`: {e}"))?;
        // Only the child may hold the terminal's other end: the reader
        // sees its end once every process of the command has closed it.
        drop(cmd);
        let pid = child.id() as i32;

        if let Some(bytes) = self.stdin.clone() {
            let mut stdin = child.stdin.take().expect("piped stdin");
            thread::spawn(move || {
                let _ = stdin.write_all(&bytes);
            });
        }
        let (tx, rx) = mpsc::channel::<(bool, Vec<u8>)>();
        let mut stdout = child.stdout.take().expect("piped stdout");
        let mut stderr: Box<dyn Read + Send> = match terminal {
            Some(terminal) => Box::new(File::from(terminal)),
            None => Box::new(child.stderr.take().expect("piped stderr")),
        };
        let tx2 = tx.clone();
        thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = stdout.read_to_end(&mut buf);
            let _ = tx.send((true, buf));
        });
        thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = stderr.read_to_end(&mut buf);
            let _ = tx2.send((false, buf));
        });

        let deadline = start + self.timeout;
        let mut timed_out = false;
        let status: ExitStatus = loop {
            match child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) => {}
                Err(e) => return Err(format!("waiting for `{cmdline}`: {e}")),
            }
            if Instant::now() >= deadline {
                timed_out = true;
                send_signal(-pid, libc::SIGKILL);
                let _ = child.kill();
                break child
                    .wait()
                    .map_err(|e| format!("waiting for `{cmdline}`: {e}"))?;
            }
            thread::sleep(Duration::from_millis(5));
        };
        let elapsed = start.elapsed();

        let mut out_bytes = None;
        let mut err_bytes = None;
        let pipe_deadline = Instant::now() + PIPE_GRACE;
        while out_bytes.is_none() || err_bytes.is_none() {
            let left = pipe_deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok((true, b)) => out_bytes = Some(b),
                Ok((false, b)) => err_bytes = Some(b),
                Err(_) => break,
            }
        }
        let pipes_left_open = out_bytes.is_none() || err_bytes.is_none();
        Ok(Output {
            cmdline,
            stdout: out_bytes.unwrap_or_default(),
            stderr: String::from_utf8_lossy(&err_bytes.unwrap_or_default()).into_owned(),
            code: status.code(),
            signal: status.signal(),
            elapsed,
            timed_out,
            pipes_left_open,
            log_dirs: self.log_dirs,
        })
    }
}

/// A pseudo-terminal of 80 by 24: the controlling side, and the side a
/// command writes to.
fn open_terminal() -> Result<(OwnedFd, OwnedFd), String> {
    let (mut controller, mut user) = (-1, -1);
    let size = libc::winsize {
        ws_row: 24,
        ws_col: 80,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: openpty writes two descriptors into the given ints and reads
    // the size; no name buffer or termios is passed.
    let rc = unsafe {
        libc::openpty(
            &mut controller,
            &mut user,
            std::ptr::null_mut(),
            std::ptr::null(),
            &size,
        )
    };
    if rc != 0 {
        return Err(format!("openpty: {}", std::io::Error::last_os_error()));
    }
    // Close-on-exec, so that only the command's stderr holds the terminal:
    // a daemon it starts must not keep a stray copy open.
    for fd in [controller, user] {
        // SAFETY: fcntl on a descriptor just opened above.
        unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
    }
    // SAFETY: both descriptors were just opened and are owned by nothing else.
    Ok(unsafe { (OwnedFd::from_raw_fd(controller), OwnedFd::from_raw_fd(user)) })
}

/// What a finished command produced.
#[derive(Clone)]
pub struct Output {
    pub cmdline: String,
    pub stdout: Vec<u8>,
    pub stderr: String,
    /// Exit code, `None` when killed by a signal.
    pub code: Option<i32>,
    pub signal: Option<i32>,
    pub elapsed: Duration,
    pub timed_out: bool,
    pub pipes_left_open: bool,
    log_dirs: Vec<PathBuf>,
}

impl Output {
    /// stdout as text (lossy for non-UTF-8).
    pub fn stdout_str(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    pub fn stdout_lines(&self) -> Vec<String> {
        self.stdout_str().lines().map(str::to_string).collect()
    }

    pub fn stderr_lines(&self) -> Vec<String> {
        self.stderr.lines().map(str::to_string).collect()
    }

    pub fn status(&self) -> Option<i32> {
        self.code
    }

    /// Everything useful for a failure message, including the session's
    /// daemon logs when there are any.
    pub fn describe(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "command: {}", self.cmdline);
        let _ = writeln!(
            s,
            "exit: {:?}{} after {:.2?}{}",
            self.code,
            self.signal
                .map(|sig| format!(" (signal {sig})"))
                .unwrap_or_default(),
            self.elapsed,
            if self.timed_out { " (TIMED OUT)" } else { "" }
        );
        let _ = writeln!(
            s,
            "--- stdout ({} bytes) ---\n{}",
            self.stdout.len(),
            clip(&self.stdout, 4000)
        );
        let _ = writeln!(s, "--- stderr ---\n{}", clip(self.stderr.as_bytes(), 4000));
        let logs = collect_logs(&self.log_dirs);
        if !logs.is_empty() {
            let _ = writeln!(s, "{logs}");
        }
        s
    }

    /// Assert exit status 0.
    #[track_caller]
    pub fn success(self) -> Self {
        if self.code != Some(0) {
            panic!("expected success (exit 0)\n{}", self.describe());
        }
        self
    }

    /// Assert a specific exit status.
    #[track_caller]
    pub fn assert_exit(self, code: i32) -> Self {
        if self.code != Some(code) {
            panic!("expected exit status {code}\n{}", self.describe());
        }
        self
    }

    /// Assert a non-zero exit status (not killed by a signal).
    #[track_caller]
    pub fn failure(self) -> Self {
        if matches!(self.code, Some(0) | None) {
            panic!("expected a non-zero exit status\n{}", self.describe());
        }
        self
    }

    /// Assert stdout is exactly `expected`.
    #[track_caller]
    pub fn assert_stdout(self, expected: &str) -> Self {
        if self.stdout != expected.as_bytes() {
            panic!(
                "stdout differs\n--- expected ---\n{expected}\n--- got ---\n{}",
                self.describe()
            );
        }
        self
    }

    #[track_caller]
    pub fn assert_stdout_contains(self, needle: &str) -> Self {
        if !self.stdout_str().contains(needle) {
            panic!("stdout does not contain {needle:?}\n{}", self.describe());
        }
        self
    }

    #[track_caller]
    pub fn assert_stderr_contains(self, needle: &str) -> Self {
        if !self.stderr.contains(needle) {
            panic!("stderr does not contain {needle:?}\n{}", self.describe());
        }
        self
    }

    /// Panic with `msg` and the full description of this output.
    #[track_caller]
    pub fn fail(&self, msg: &str) -> ! {
        panic!("{msg}\n{}", self.describe())
    }
}

fn collect_logs(dirs: &[PathBuf]) -> String {
    let mut files = Vec::new();
    for d in dirs {
        find_log_files(d, &mut files, 0);
    }
    let mut s = String::new();
    for f in files {
        if let Ok(text) = fs::read(&f) {
            let text = String::from_utf8_lossy(&text);
            let _ = writeln!(
                s,
                "--- log {} (last 60 lines) ---\n{}",
                f.display(),
                tail(&text, 60)
            );
        }
    }
    s
}

fn find_log_files(dir: &Path, out: &mut Vec<PathBuf>, depth: usize) {
    if depth > 4 {
        return;
    }
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        let Ok(ft) = e.file_type() else { continue };
        if ft.is_dir() {
            find_log_files(&p, out, depth + 1);
        } else if ft.is_file() {
            let name = e.file_name().to_string_lossy().to_lowercase();
            if name.ends_with(".log") || name == "log" || name.starts_with("log.") {
                out.push(p);
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Env
// ---------------------------------------------------------------------------

/// An isolated world for one test: its own HOME, XDG_RUNTIME_DIR and
/// session name. Dropping it stops the session.
pub struct Env {
    dir: tempfile::TempDir,
    /// The session name all `pcl` calls of this env use (`PCL_SESSION`).
    pub session: String,
    other_sessions: std::sync::Mutex<Vec<String>>,
}

impl Default for Env {
    fn default() -> Self {
        Self::new()
    }
}

impl Env {
    /// A new world whose session name is derived from the test name.
    pub fn new() -> Env {
        Self::named(&test_name())
    }

    /// A new world with a session name derived from `label`.
    pub fn named(label: &str) -> Env {
        let dir = temp_dir("pclt");
        let mut label = sanitize(label);
        label.truncate(24);
        let label = label.trim_matches('-').to_string();
        let session = format!("{label}-{}-{}", std::process::id(), next_id());
        let env = Env {
            dir,
            session,
            other_sessions: Default::default(),
        };
        for d in [env.home(), env.runtime_dir()] {
            fs::create_dir_all(&d).expect("create dir");
            fs::set_permissions(&d, fs::Permissions::from_mode(0o700)).expect("chmod");
        }
        env
    }

    /// The temp dir that holds everything of this env.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// `HOME` for pcl and for local engines.
    pub fn home(&self) -> PathBuf {
        self.path().join("home")
    }

    /// `XDG_RUNTIME_DIR` for pcl (the session socket lives below it).
    pub fn runtime_dir(&self) -> PathBuf {
        self.path().join("run")
    }

    /// Run any program with this env's environment (HOME, XDG_RUNTIME_DIR,
    /// PCL_SESSION; other PCL_* variables removed).
    pub fn cmd(&self, program: impl AsRef<OsStr>) -> Cmd {
        let mut cmd = Cmd::new(program)
            .env("HOME", self.home())
            .env("XDG_RUNTIME_DIR", self.runtime_dir())
            .env("PCL_SESSION", &self.session)
            .env_remove("XDG_CONFIG_HOME")
            .env_remove("XDG_STATE_HOME")
            .env_remove("XDG_CACHE_HOME")
            .env_remove("XDG_DATA_HOME")
            .env_remove("SSH_AUTH_SOCK")
            .current_dir(self.path());
        cmd.clear_pcl_env = true;
        cmd.log_dirs = vec![self.runtime_dir(), self.home().join(".local/state")];
        cmd
    }

    /// The real pcl binary with `args`, e.g. `env.pcl(["px", "hostname"]).run()`.
    pub fn pcl<I, S>(&self, args: I) -> Cmd
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.cmd(PCL).args(args)
    }

    /// `pcl px ARGS...` (shortcut).
    pub fn px<I, S>(&self, args: I) -> Output
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.pcl(
            std::iter::once(OsString::from("px"))
                .chain(args.into_iter().map(|a| a.as_ref().to_owned())),
        )
        .run()
    }

    /// `pcl up ARGS...`, asserting success; returns the printed engine
    /// table as (id, host) pairs.
    #[track_caller]
    pub fn up<I, S>(&self, args: I) -> Vec<(u32, String)>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let out = self
            .pcl(
                std::iter::once(OsString::from("up"))
                    .chain(args.into_iter().map(|a| a.as_ref().to_owned())),
            )
            .run()
            .success();
        parse_engine_table(&out)
    }

    /// `pcl down`, asserting success.
    #[track_caller]
    /// A pcl command of this env running in the background, for tests
    /// that act while it runs (Ctrl-C, kills); see `finish`.
    pub fn spawn(&self, args: &[&str]) -> Child {
        self.spawn_with_stdin(args, Stdio::null())
    }

    /// As `spawn`, with stdin from `stdin` (`Stdio::piped()` to feed it).
    pub fn spawn_with_stdin(&self, args: &[&str], stdin: Stdio) -> Child {
        Command::new(PCL)
            .args(args)
            .env("HOME", self.home())
            .env("XDG_RUNTIME_DIR", self.runtime_dir())
            .env("PCL_SESSION", &self.session)
            .current_dir(self.path())
            .stdin(stdin)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start pcl")
    }

    /// `pcl down`, then nothing of the session may be left anywhere, and
    /// only sshd in each namespace host.
    pub fn down_leaving_nothing(&self, hosts: &NetnsHosts) {
        self.down();
        assert_nothing_left(&self.session);
        hosts.assert_only_sshd_left();
    }

    pub fn down(&self) -> Output {
        self.pcl(["down"]).run().success()
    }

    /// Write `contents` to `name` inside the env's dir.
    pub fn write(&self, name: &str, contents: impl AsRef<[u8]>) -> PathBuf {
        let p = self.path().join(name);
        if let Some(parent) = p.parent() {
            fs::create_dir_all(parent).expect("create dir");
        }
        fs::write(&p, contents).expect("write file");
        p
    }

    /// Write a cluster file with these hosts; returns its path.
    pub fn write_cluster(&self, hosts: &[Host]) -> PathBuf {
        self.write("cluster.toml", cluster_toml(hosts))
    }

    /// (a) `engines` local engines on host "localhost".
    pub fn cluster_local(&self, engines: usize) -> PathBuf {
        self.write_cluster(&[Host::local(engines)])
    }

    /// (b) `engines` engines on the loopback sshd (host `127.0.0.1`).
    /// `engine_path`: run `CARGO_BIN_EXE_pcl` there; `false` exercises
    /// the zero-install bootstrap.
    pub fn cluster_sshd(&self, sshd: &Sshd, engines: usize, engine_path: bool) -> PathBuf {
        let mut h = sshd.host().engines(engines);
        if !engine_path {
            h = h.no_engine_path();
        }
        self.write_cluster(&[h])
    }

    /// (c) `engines` engines on each namespace host.
    pub fn cluster_netns(&self, hosts: &NetnsHosts, engines: usize) -> PathBuf {
        let hs: Vec<Host> = (0..hosts.len())
            .map(|i| hosts.host(i).engines(engines))
            .collect();
        self.write_cluster(&hs)
    }

    /// Another session name for this env (`<session>-<suffix>`), for tests
    /// that run several sessions; it is stopped and cleaned up on drop too.
    pub fn other_session(&self, suffix: &str) -> String {
        let name = format!("{}-{suffix}", self.session);
        self.other_sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(name.clone());
        name
    }

    fn cleanup_session(&self, name: &str) {
        // Best effort: stop the session, then kill whatever is left.
        let _ = self
            .pcl(["down", "--session", name])
            .timeout_secs(30)
            .execute();
        let deadline = Instant::now() + Duration::from_secs(3);
        loop {
            let left = session_processes(name);
            if left.is_empty() {
                break;
            }
            if Instant::now() >= deadline {
                eprintln!(
                    "harness: killing processes of session {name} left after `pcl down`:\n{}",
                    format_procs(&left)
                );
                for p in &left {
                    send_signal(p.pid, libc::SIGKILL);
                }
                break;
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// The session's daemon log(s), if any.
    pub fn logs(&self) -> String {
        collect_logs(&[self.runtime_dir(), self.home().join(".local/state")])
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        if thread::panicking() {
            let logs = self.logs();
            if !logs.is_empty() {
                eprintln!("session {} logs:\n{logs}", self.session);
            }
        }
        let others = std::mem::take(
            &mut *self
                .other_sessions
                .lock()
                .unwrap_or_else(|e| e.into_inner()),
        );
        for name in others.iter().chain(std::iter::once(&self.session)) {
            self.cleanup_session(name);
        }
    }
}

/// The ids in `up`'s table of the engines on `host`.
pub fn engines_on(table: &[(u32, String)], host: &str) -> Vec<u32> {
    table
        .iter()
        .filter(|(_, h)| h == host)
        .map(|(id, _)| *id)
        .collect()
}

/// The ids in `up`'s table of the engines on every other host.
pub fn engines_off(table: &[(u32, String)], host: &str) -> Vec<u32> {
    table
        .iter()
        .filter(|(_, h)| h != host)
        .map(|(id, _)| *id)
        .collect()
}

/// Parse `pcl up`'s table: one `<id> <host>` line per engine.
#[track_caller]
pub fn parse_engine_table(out: &Output) -> Vec<(u32, String)> {
    let mut table = Vec::new();
    for line in out.stdout_str().lines() {
        if line.trim().is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split_whitespace().collect();
        let id = fields.first().and_then(|f| f.parse::<u32>().ok());
        match (id, fields.len()) {
            (Some(id), 2) => table.push((id, fields[1].to_string())),
            _ => out.fail(&format!("not an `<id> <host>` line: {line:?}")),
        }
    }
    table
}

// ---------------------------------------------------------------------------
// px output helpers
// ---------------------------------------------------------------------------

/// Assert `pcl px` output in prefixed mode. `expected` is the transcript as
/// one stream (`[stdout:0] a\n[stderr:0] b\n[stdout:1] ...`). pcl may print
/// the `[stderr:N]` lines either on its stdout (one merged stream, which
/// must then equal `expected` exactly) or on its stderr (then its stdout
/// must equal the `[stdout:N]` lines and its stderr must contain the
/// `[stderr:N]` lines in order, besides possible other messages).
#[track_caller]
pub fn assert_px_output(out: &Output, expected: &str) {
    let got = out.stdout_str();
    if got.contains("[stderr:") || !expected.contains("[stderr:") {
        if got != expected {
            out.fail(&format!(
                "px output differs\n--- expected ---\n{expected}--- end expected ---"
            ));
        }
        return;
    }
    let exp_out: String = expected
        .lines()
        .filter(|l| !l.starts_with("[stderr:"))
        .map(|l| format!("{l}\n"))
        .collect();
    let exp_err: Vec<&str> = expected
        .lines()
        .filter(|l| l.starts_with("[stderr:"))
        .collect();
    let got_err: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| l.starts_with("[stderr:"))
        .collect();
    if got != exp_out || got_err != exp_err {
        out.fail(&format!(
            "px output differs (stderr lines expected on pcl's stderr)\n--- expected ---\n{expected}--- end expected ---"
        ));
    }
}

/// The `[stdout:ID] ` lines of a px output as (id, text) pairs.
#[track_caller]
pub fn px_stdout_lines(out: &Output) -> Vec<(u32, String)> {
    let mut v = Vec::new();
    for line in out.stdout_str().lines() {
        if let Some(rest) = line.strip_prefix("[stdout:") {
            let Some((id, text)) = rest.split_once("] ").or_else(|| rest.split_once(']')) else {
                out.fail(&format!("malformed prefix in {line:?}"));
            };
            let Ok(id) = id.parse() else {
                out.fail(&format!("malformed engine id in {line:?}"));
            };
            v.push((id, text.to_string()));
        }
    }
    v
}

/// SHA-256 of `data`, lowercase hex (as `sha256sum` prints it).
pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(ring::digest::digest(&ring::digest::SHA256, data))
}

// ---------------------------------------------------------------------------
// Cluster files
// ---------------------------------------------------------------------------

/// One `[[hosts]]` entry of a cluster file.
#[derive(Clone, Debug)]
pub struct Host {
    pub host: String,
    pub launcher: Option<String>,
    pub engines: Option<usize>,
    pub port: Option<u16>,
    pub user: Option<String>,
    pub ssh_options: Vec<String>,
    pub engine_path: Option<PathBuf>,
    pub workdir: Option<String>,
    /// Extra raw TOML lines (`key = value`) for this entry.
    pub extra: Vec<String>,
}

impl Host {
    fn bare(host: &str) -> Host {
        Host {
            host: host.to_string(),
            launcher: None,
            engines: None,
            port: None,
            user: None,
            ssh_options: Vec::new(),
            engine_path: None,
            workdir: None,
            extra: Vec::new(),
        }
    }

    /// `engines` local engines: `host = "localhost"`, `launcher = "local"`.
    pub fn local(engines: usize) -> Host {
        let mut h = Host::bare("localhost");
        h.launcher = Some("local".into());
        h.engines = Some(engines);
        h
    }

    /// A host reached over ssh with these ssh options; `engine_path` is set
    /// to the binary under test (see [`Host::no_engine_path`]).
    pub fn ssh(host: &str, ssh_options: Vec<String>) -> Host {
        let mut h = Host::bare(host);
        h.ssh_options = ssh_options;
        h.engine_path = Some(PathBuf::from(PCL));
        h
    }

    pub fn engines(mut self, n: usize) -> Host {
        self.engines = Some(n);
        self
    }

    pub fn port(mut self, port: u16) -> Host {
        self.port = Some(port);
        self
    }

    pub fn user(mut self, user: &str) -> Host {
        self.user = Some(user.into());
        self
    }

    pub fn workdir(mut self, dir: &str) -> Host {
        self.workdir = Some(dir.into());
        self
    }

    /// Leave `engine_path` unset: pcl must bootstrap itself on the host.
    pub fn no_engine_path(mut self) -> Host {
        self.engine_path = None;
        self
    }

    pub fn raw(mut self, line: &str) -> Host {
        self.extra.push(line.into());
        self
    }
}

fn toml_str(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

/// The cluster file text for these hosts.
pub fn cluster_toml(hosts: &[Host]) -> String {
    let mut s = String::new();
    for h in hosts {
        s.push_str("[[hosts]]\n");
        let _ = writeln!(s, "host = {}", toml_str(&h.host));
        if let Some(l) = &h.launcher {
            let _ = writeln!(s, "launcher = {}", toml_str(l));
        }
        if let Some(n) = h.engines {
            let _ = writeln!(s, "engines = {n}");
        }
        if let Some(p) = h.port {
            let _ = writeln!(s, "port = {p}");
        }
        if let Some(u) = &h.user {
            let _ = writeln!(s, "user = {}", toml_str(u));
        }
        if !h.ssh_options.is_empty() {
            let opts: Vec<String> = h.ssh_options.iter().map(|o| toml_str(o)).collect();
            let _ = writeln!(s, "ssh_options = [{}]", opts.join(", "));
        }
        if let Some(p) = &h.engine_path {
            let _ = writeln!(s, "engine_path = {}", toml_str(&p.to_string_lossy()));
        }
        if let Some(w) = &h.workdir {
            let _ = writeln!(s, "workdir = {}", toml_str(w));
        }
        for line in &h.extra {
            let _ = writeln!(s, "{line}");
        }
        s.push('\n');
    }
    s
}

// ---------------------------------------------------------------------------
// Processes of a session
// ---------------------------------------------------------------------------

/// A process found in /proc.
#[derive(Clone, Debug)]
pub struct Proc {
    pub pid: i32,
    pub ppid: i32,
    pub state: char,
    pub argv: Vec<String>,
    /// Why it belongs to the session.
    pub reason: &'static str,
}

fn read_argv(pid: i32) -> Vec<String> {
    fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| {
            b.split(|&c| c == 0)
                .filter(|a| !a.is_empty())
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect()
        })
        .unwrap_or_default()
}

fn read_stat(pid: i32) -> Option<(char, i32)> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // comm may contain spaces and parens: fields start after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let mut f = rest.split_whitespace();
    let state = f.next()?.chars().next()?;
    let ppid = f.next()?.parse().ok()?;
    Some((state, ppid))
}

fn all_pids() -> Vec<i32> {
    let mut v: Vec<i32> = fs::read_dir("/proc")
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| e.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    v.sort_unstable();
    v
}

/// Whether argv carries `--session NAME` (also inside a single shell
/// command string, as in `ssh host 'exec pcl engine --session NAME'`).
fn argv_names_session(argv: &[String], session: &str) -> bool {
    let tokens: Vec<&str> = argv
        .iter()
        .flat_map(|a| a.split_whitespace())
        .map(|t| t.trim_matches(|c| c == '\'' || c == '"'))
        .collect();
    let eq = format!("--session={session}");
    tokens
        .windows(2)
        .any(|w| w[0] == "--session" && w[1] == session)
        || tokens.iter().any(|t| *t == eq)
}

fn argv_exact_session(argv: &[String], session: &str) -> bool {
    let eq = format!("--session={session}");
    argv.windows(2)
        .any(|w| w[0] == "--session" && w[1] == session)
        || argv.contains(&eq)
}

fn environ_has_session(pid: i32, session: &str) -> bool {
    let want = format!("PCL_SESSION={session}");
    fs::read(format!("/proc/{pid}/environ"))
        .map(|b| b.split(|&c| c == 0).any(|e| e == want.as_bytes()))
        .unwrap_or(false)
}

/// Every live process on the machine that belongs to `session`: argv names
/// `--session NAME` (daemon, engine hosts, ssh tethers) or the environment
/// has `PCL_SESSION=NAME` (shells and their children). Zombies and this
/// test process are ignored.
pub fn session_processes(session: &str) -> Vec<Proc> {
    let me = std::process::id() as i32;
    let mut found = Vec::new();
    for pid in all_pids() {
        if pid == me {
            continue;
        }
        let Some((state, ppid)) = read_stat(pid) else {
            continue;
        };
        if state == 'Z' || state == 'X' {
            continue;
        }
        let argv = read_argv(pid);
        let reason = if argv_names_session(&argv, session) {
            "argv has --session"
        } else if environ_has_session(pid, session) {
            "environ has PCL_SESSION"
        } else {
            continue;
        };
        found.push(Proc {
            pid,
            ppid,
            state,
            argv,
            reason,
        });
    }
    found
}

pub fn format_procs(procs: &[Proc]) -> String {
    procs
        .iter()
        .map(|p| {
            format!(
                "  pid {} ppid {} state {} [{}]: {}",
                p.pid,
                p.ppid,
                p.state,
                p.reason,
                p.argv.join(" ")
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Fail unless every process of `session` is gone (after a grace period of
/// [`LEFTOVER_GRACE`]).
#[track_caller]
pub fn assert_nothing_left(session: &str) {
    let deadline = Instant::now() + LEFTOVER_GRACE;
    loop {
        let left = session_processes(session);
        if left.is_empty() {
            return;
        }
        if Instant::now() >= deadline {
            panic!(
                "processes of session {session} still running {LEFTOVER_GRACE:?} after it \
                 should have stopped:\n{}",
                format_procs(&left)
            );
        }
        thread::sleep(Duration::from_millis(50));
    }
}

/// Pids of the session's engine host processes (`pcl engine ... --session NAME`).
pub fn engine_pids(session: &str) -> Vec<i32> {
    all_pids()
        .into_iter()
        .filter(|&pid| {
            let argv = read_argv(pid);
            argv.iter().skip(1).any(|a| a == "engine") && argv_exact_session(&argv, session)
        })
        .collect()
}

/// A `/proc/PID/status` field in KiB (`VmHWM`, `VmPeak`).
pub fn status_kib(pid: i32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("a status field")
}

/// Pid of the session daemon (`pcl session serve --session NAME`).
pub fn daemon_pids(session: &str) -> Vec<i32> {
    all_pids()
        .into_iter()
        .filter(|&pid| {
            let argv = read_argv(pid);
            argv.iter().skip(1).any(|a| a == "session")
                && !argv.iter().skip(1).any(|a| a == "engine")
                && argv_exact_session(&argv, session)
        })
        .collect()
}

/// The executable of a process (`/proc/PID/exe`).
pub fn proc_exe(pid: i32) -> Option<PathBuf> {
    fs::read_link(format!("/proc/{pid}/exe")).ok()
}

/// Parent pids of `pid`, nearest first, up to init.
pub fn ancestors(pid: i32) -> Vec<i32> {
    let mut v = Vec::new();
    let mut cur = pid;
    while let Some((_, ppid)) = read_stat(cur) {
        if ppid <= 0 || v.contains(&ppid) {
            break;
        }
        v.push(ppid);
        cur = ppid;
    }
    v
}

/// Name of the network namespace `pid` is in (`ip netns identify`), empty
/// for the root namespace.
pub fn netns_of(pid: i32) -> String {
    sh("ip", &["netns", "identify", &pid.to_string()])
        .unwrap_or_default()
        .trim()
        .to_string()
}

/// Direct children of `pid`.
pub fn children_of(pid: i32) -> Vec<i32> {
    all_pids()
        .into_iter()
        .filter(|&p| read_stat(p).is_some_and(|(s, ppid)| ppid == pid && s != 'Z'))
        .collect()
}

/// Poll `cond` every 50 ms until it holds or `timeout` passes.
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(50));
    }
}

// ---------------------------------------------------------------------------
// ssh keys and configs
// ---------------------------------------------------------------------------

struct SshKeys {
    host_key: PathBuf,
    user_key: PathBuf,
    authorized_keys: PathBuf,
}

fn ssh_tools_present() -> Result<(), String> {
    if !Path::new(SSHD).is_file() {
        return Err(format!(
            "{SSHD} not installed (apt-get install openssh-server)"
        ));
    }
    for tool in ["ssh", "ssh-keygen"] {
        if find_program(tool, &[]).is_none() {
            return Err(format!(
                "{tool} not installed (apt-get install openssh-client)"
            ));
        }
    }
    Ok(())
}

fn make_keys(dir: &Path) -> Result<SshKeys, String> {
    let host_key = dir.join("host_ed25519");
    let user_key = dir.join("id_ed25519");
    for k in [&host_key, &user_key] {
        sh(
            "ssh-keygen",
            &[
                "-q",
                "-t",
                "ed25519",
                "-N",
                "",
                "-C",
                "pcl-test",
                "-f",
                &k.to_string_lossy(),
            ],
        )?;
    }
    let authorized_keys = dir.join("authorized_keys");
    let pubkey = fs::read(user_key.with_extension("pub")).map_err(|e| e.to_string())?;
    fs::write(&authorized_keys, pubkey).map_err(|e| e.to_string())?;
    if is_root() {
        // sshd's privilege separation directory.
        fs::create_dir_all("/run/sshd").map_err(|e| format!("/run/sshd: {e}"))?;
    }
    Ok(SshKeys {
        host_key,
        user_key,
        authorized_keys,
    })
}

fn write_sshd_config(
    path: &Path,
    port: u16,
    listen: Option<&str>,
    keys: &SshKeys,
    home: &Path,
    first: &str,
) -> Result<(), String> {
    // `first` overrides the settings below: they are left out where it
    // names the same keyword (for some keywords sshd keeps the first
    // value it reads, for others the last).
    let mut s = String::from(first);
    let overridden: Vec<String> = first
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_ascii_lowercase)
        .collect();
    let _ = writeln!(s, "Port {port}");
    if let Some(addr) = listen {
        let _ = writeln!(s, "ListenAddress {addr}");
    }
    let _ = writeln!(s, "HostKey {}", keys.host_key.display());
    let _ = writeln!(s, "AuthorizedKeysFile {}", keys.authorized_keys.display());
    let defaults = "StrictModes no\n\
         UsePAM no\n\
         PidFile none\n\
         PubkeyAuthentication yes\n\
         PasswordAuthentication no\n\
         KbdInteractiveAuthentication no\n\
         X11Forwarding no\n\
         PrintMotd no\n\
         PrintLastLog no\n\
         UseDNS no\n\
         MaxStartups 200\n\
         MaxSessions 200\n\
         LogLevel VERBOSE\n\
         Subsystem sftp internal-sftp\n";
    for line in defaults.lines() {
        let keyword = line.split_whitespace().next().unwrap_or("");
        if !overridden.contains(&keyword.to_ascii_lowercase()) {
            s.push_str(line);
            s.push('\n');
        }
    }
    if is_root() {
        s.push_str("PermitRootLogin prohibit-password\n");
    }
    // The remote side gets its own HOME inside the temp dir, so that the
    // bootstrap cache (~/.cache/pcl) and default workdirs never touch the
    // real home directory.
    let _ = writeln!(s, "SetEnv HOME={}", home.display());
    fs::write(path, s).map_err(|e| e.to_string())
}

fn write_ssh_client_config(path: &Path, port: u16, keys: &SshKeys) -> Result<(), String> {
    let s = format!(
        "Host *\n\
         \x20 IdentityFile {}\n\
         \x20 Port {port}\n\
         \x20 User {}\n\
         \x20 UserKnownHostsFile /dev/null\n\
         \x20 GlobalKnownHostsFile /dev/null\n\
         \x20 StrictHostKeyChecking no\n\
         \x20 LogLevel ERROR\n\
         \x20 BatchMode yes\n\
         \x20 IdentitiesOnly yes\n\
         \x20 ConnectTimeout 10\n",
        keys.user_key.display(),
        current_user(),
    );
    fs::write(path, s).map_err(|e| e.to_string())
}

/// Wait until `addr` accepts TCP connections and greets with an SSH banner.
fn wait_for_ssh_banner(
    addr: SocketAddr,
    child: &mut Child,
    timeout: Duration,
) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("sshd exited early ({status})"));
        }
        if let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_millis(500)) {
            let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
            let mut buf = [0u8; 4];
            if s.read_exact(&mut buf).is_ok() && &buf == b"SSH-" {
                return Ok(());
            }
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "sshd did not accept connections on {addr} within {timeout:?}"
            ));
        }
        thread::sleep(Duration::from_millis(30));
    }
}

fn free_loopback_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind a free loopback port")
}

/// A port on 127.0.0.1 where nothing listens (connections are refused).
pub fn closed_port() -> u16 {
    free_loopback_port()
}

fn ssh_cmd(config: &Path, host: &str, command: &str) -> Cmd {
    Cmd::new("ssh")
        .arg("-F")
        .arg(config)
        .arg(host)
        .arg(command)
        .timeout_secs(30)
}

// ---------------------------------------------------------------------------
// Sshd
// ---------------------------------------------------------------------------

/// A real sshd on a free loopback port (`127.0.0.1`), with its own host key,
/// a user key pair and a client config.
pub struct Sshd {
    dir: tempfile::TempDir,
    child: Child,
    port: u16,
    ssh_config: PathBuf,
    log: PathBuf,
    remote_home: PathBuf,
}

impl Sshd {
    /// Start it; `None` (after printing `SKIPPED: ...`) when sshd is not
    /// installed.
    pub fn start() -> Option<Sshd> {
        Self::start_with("")
    }

    /// Like [`Sshd::start`], with `config_first` (sshd_config lines) read
    /// before the harness's own settings, so it overrides them: e.g.
    /// `"MaxStartups 10:30:100\n"` for sshd's default connection limit.
    pub fn start_with(config_first: &str) -> Option<Sshd> {
        if let Err(why) = ssh_tools_present() {
            skip(&why);
            return None;
        }
        let dir = temp_dir("pcls");
        let keys = make_keys(dir.path()).unwrap_or_else(|e| panic!("ssh keys: {e}"));
        let remote_home = dir.path().join("home");
        fs::create_dir_all(&remote_home).expect("create remote home");
        let sshd_config = dir.path().join("sshd_config");
        let ssh_config = dir.path().join("ssh_config");
        let log = dir.path().join("sshd.log");
        let mut last_err = String::new();
        for _attempt in 0..5 {
            let port = free_loopback_port();
            write_sshd_config(
                &sshd_config,
                port,
                Some("127.0.0.1"),
                &keys,
                &remote_home,
                config_first,
            )
            .expect("write sshd_config");
            write_ssh_client_config(&ssh_config, port, &keys).expect("write ssh_config");
            let logf = fs::File::create(&log).expect("create sshd log");
            let mut child = Command::new(SSHD)
                .arg("-D")
                .arg("-e")
                .arg("-f")
                .arg(&sshd_config)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(logf)
                .spawn()
                .unwrap_or_else(|e| panic!("start {SSHD}: {e}"));
            let addr: SocketAddr = ([127, 0, 0, 1], port).into();
            match wait_for_ssh_banner(addr, &mut child, Duration::from_secs(10)) {
                Ok(()) => {
                    return Some(Sshd {
                        dir,
                        child,
                        port,
                        ssh_config,
                        log,
                        remote_home,
                    });
                }
                Err(e) => {
                    stop_child(&mut child);
                    last_err = format!(
                        "{e}\n--- sshd log ---\n{}",
                        fs::read_to_string(&log).unwrap_or_default()
                    );
                }
            }
        }
        panic!("could not start sshd: {last_err}");
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// The client config (`ssh -F` it).
    pub fn ssh_config(&self) -> &Path {
        &self.ssh_config
    }

    /// `["-F", "<tmp>/ssh_config"]`, for `ssh_options` in a cluster file.
    pub fn ssh_options(&self) -> Vec<String> {
        vec!["-F".into(), self.ssh_config.to_string_lossy().into_owned()]
    }

    /// `HOME` of sessions on this server (a dir in the temp dir).
    pub fn remote_home(&self) -> &Path {
        &self.remote_home
    }

    /// A cluster-file host entry for this server (`127.0.0.1`).
    pub fn host(&self) -> Host {
        Host::ssh("127.0.0.1", self.ssh_options())
    }

    /// `ssh -F <config> 127.0.0.1 COMMAND`.
    pub fn ssh(&self, command: &str) -> Cmd {
        ssh_cmd(&self.ssh_config, "127.0.0.1", command)
    }

    /// sshd's own log (stderr, `-e`).
    pub fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Live per-connection sshd processes (children of the listener).
    pub fn connections(&self) -> Vec<i32> {
        children_of(self.pid())
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        if thread::panicking() {
            eprintln!(
                "sshd log ({}):\n{}",
                self.log.display(),
                tail(&self.log(), 40)
            );
        }
        let conns = self.connections();
        stop_child(&mut self.child);
        for pid in conns {
            send_signal(pid, libc::SIGKILL);
        }
    }
}

// ---------------------------------------------------------------------------
// NetnsHosts
// ---------------------------------------------------------------------------

/// One namespace host of [`NetnsHosts`].
pub struct NsHost {
    /// Network namespace name (`ip netns exec NAME ...`).
    pub netns: String,
    /// Root-namespace end of the veth pair (attached to the bridge).
    pub veth: String,
    /// The host's IPv4 address.
    pub addr: String,
    /// HOME of ssh sessions on this host.
    pub home: PathBuf,
    sshd: Option<Child>,
    log: PathBuf,
}

/// n network namespaces behind one bridge, each with its own address and
/// sshd on port 22: n "hosts" on one machine.
pub struct NetnsHosts {
    dir: tempfile::TempDir,
    bridge: String,
    bridge_created: bool,
    subnet: String,
    hosts: Vec<NsHost>,
    ssh_config: PathBuf,
}

/// Subnets are 10.X.Y.0/24 with X in 200..=254.
const SUBNETS: usize = 55 * 256;

fn subnet_prefix(index: usize) -> String {
    format!("10.{}.{}", 200 + index / 256, index % 256)
}

struct FileLock(fs::File);

impl FileLock {
    fn acquire(path: &str) -> io::Result<FileLock> {
        let f = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)?;
        use std::os::fd::AsRawFd;
        // SAFETY: flock on a file descriptor we own.
        if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(FileLock(f))
    }
}

impl Drop for FileLock {
    fn drop(&mut self) {
        use std::os::fd::AsRawFd;
        // SAFETY: unlocking our own descriptor.
        unsafe {
            libc::flock(self.0.as_raw_fd(), libc::LOCK_UN);
        }
    }
}

impl NetnsHosts {
    /// Create `n` namespace hosts. `None` (after printing
    /// `SKIPPED: needs root and iproute2`) when not root, iproute2 is
    /// missing, sshd is missing, or namespaces cannot be created here.
    pub fn new(n: usize) -> Option<NetnsHosts> {
        assert!((1..=200).contains(&n), "1..=200 namespace hosts");
        if !is_root() || find_program("ip", &["/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip"]).is_none()
        {
            skip("needs root and iproute2");
            return None;
        }
        if let Err(why) = ssh_tools_present() {
            skip(&format!("needs root and iproute2 and sshd: {why}"));
            return None;
        }

        let pid = std::process::id();
        let tag = format!("p{pid:x}{:02x}", next_id() % 256);
        let dir = temp_dir("pcln");
        let mut me = NetnsHosts {
            dir,
            bridge: format!("{tag}br"),
            bridge_created: false,
            subnet: String::new(),
            hosts: Vec::new(),
            ssh_config: PathBuf::new(),
        };
        // Names embed our pid: anything with them is a leftover of a dead
        // process that had the same pid. Remove it.
        let _ = sh("ip", &["link", "del", &me.bridge]);
        for i in 0..n {
            let _ = sh("ip", &["netns", "del", &format!("pcl-{tag}-{i}")]);
            let _ = sh("ip", &["link", "del", &format!("{tag}h{i:x}")]);
        }

        if let Err(e) = me.setup(&tag, n) {
            if me.bridge_created || !me.hosts.is_empty() {
                // We could create things, so this is a real failure.
                drop(me);
                panic!("setting up network namespaces failed: {e}");
            }
            skip(&format!("cannot create network namespaces here: {e}"));
            return None;
        }
        Some(me)
    }

    fn setup(&mut self, tag: &str, n: usize) -> Result<(), String> {
        // Pick a free /24 and claim it (bridge + address) under a lock, so
        // that concurrently running test processes never share a subnet.
        {
            let _lock = FileLock::acquire("/tmp/pcl-test-netns.lock").map_err(|e| e.to_string())?;
            let used = sh("ip", &["-o", "-4", "addr", "show"])?
                + &sh("ip", &["-4", "route", "show", "table", "all"]).unwrap_or_default();
            let start = (std::process::id() as usize * 16 + next_id()) % SUBNETS;
            let prefix = (0..SUBNETS)
                .map(|k| subnet_prefix((start + k) % SUBNETS))
                .find(|p| !used.contains(&format!("{p}.")))
                .ok_or("no free 10.2xx.y.0/24 subnet")?;
            sh("ip", &["link", "add", &self.bridge, "type", "bridge"])?;
            self.bridge_created = true;
            sh(
                "ip",
                &[
                    "addr",
                    "add",
                    &format!("{prefix}.254/24"),
                    "dev",
                    &self.bridge,
                ],
            )?;
            sh("ip", &["link", "set", &self.bridge, "up"])?;
            self.subnet = prefix;
        }

        let keys = make_keys(self.dir.path())?;
        self.ssh_config = self.dir.path().join("ssh_config");
        write_ssh_client_config(&self.ssh_config, 22, &keys)?;

        for i in 0..n {
            let netns = format!("pcl-{tag}-{i}");
            let veth = format!("{tag}h{i:x}");
            let peer = format!("{tag}n{i:x}");
            let addr = format!("{}.{}", self.subnet, i + 1);
            let home = self.dir.path().join(format!("home{i}"));
            fs::create_dir_all(&home).map_err(|e| e.to_string())?;
            sh("ip", &["netns", "add", &netns])?;
            self.hosts.push(NsHost {
                netns: netns.clone(),
                veth: veth.clone(),
                addr: addr.clone(),
                home: home.clone(),
                sshd: None,
                log: self.dir.path().join(format!("sshd{i}.log")),
            });
            sh(
                "ip",
                &["link", "add", &veth, "type", "veth", "peer", "name", &peer],
            )?;
            sh("ip", &["link", "set", &peer, "netns", &netns])?;
            sh("ip", &["link", "set", &veth, "master", &self.bridge])?;
            sh("ip", &["link", "set", &veth, "up"])?;
            sh("ip", &["-n", &netns, "link", "set", &peer, "name", "eth0"])?;
            sh(
                "ip",
                &[
                    "-n",
                    &netns,
                    "addr",
                    "add",
                    &format!("{addr}/24"),
                    "dev",
                    "eth0",
                ],
            )?;
            sh("ip", &["-n", &netns, "link", "set", "eth0", "up"])?;
            sh("ip", &["-n", &netns, "link", "set", "lo", "up"])?;

            let cfg = self.dir.path().join(format!("sshd_config{i}"));
            write_sshd_config(&cfg, 22, None, &keys, &home, "")?;
            let logf = fs::File::create(&self.hosts[i].log).map_err(|e| e.to_string())?;
            let child = Command::new("ip")
                .args(["netns", "exec", &netns, SSHD, "-D", "-e", "-f"])
                .arg(&cfg)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(logf)
                .spawn()
                .map_err(|e| format!("start sshd in {netns}: {e}"))?;
            self.hosts[i].sshd = Some(child);
        }
        for h in &mut self.hosts {
            let addr: SocketAddr = format!("{}:22", h.addr).parse().expect("socket addr");
            let child = h.sshd.as_mut().expect("sshd started");
            wait_for_ssh_banner(addr, child, Duration::from_secs(15)).map_err(|e| {
                format!(
                    "{} ({}): {e}\n--- sshd log ---\n{}",
                    h.netns,
                    h.addr,
                    fs::read_to_string(&h.log).unwrap_or_default()
                )
            })?;
        }
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.hosts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.hosts.is_empty()
    }

    pub fn hosts(&self) -> &[NsHost] {
        &self.hosts
    }

    /// The hosts' IPv4 addresses, in order.
    pub fn addrs(&self) -> Vec<String> {
        self.hosts.iter().map(|h| h.addr.clone()).collect()
    }

    pub fn addr(&self, i: usize) -> &str {
        &self.hosts[i].addr
    }

    /// The bridge's address (the root namespace, where the daemon runs).
    pub fn gateway(&self) -> String {
        format!("{}.254", self.subnet)
    }

    pub fn ssh_config(&self) -> &Path {
        &self.ssh_config
    }

    /// `["-F", "<tmp>/ssh_config"]` (port 22, the harness's key).
    pub fn ssh_options(&self) -> Vec<String> {
        vec!["-F".into(), self.ssh_config.to_string_lossy().into_owned()]
    }

    /// A cluster-file host entry for host `i` (its IP).
    pub fn host(&self, i: usize) -> Host {
        Host::ssh(&self.hosts[i].addr, self.ssh_options())
    }

    /// `ssh -F <config> <addr of i> COMMAND`.
    pub fn ssh(&self, i: usize, command: &str) -> Cmd {
        ssh_cmd(&self.ssh_config, &self.hosts[i].addr, command)
    }

    /// `ip netns exec <ns of i> ARGV...`.
    pub fn exec<I, S>(&self, i: usize, argv: I) -> Cmd
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        Cmd::new("ip")
            .args(["netns", "exec", &self.hosts[i].netns])
            .args(argv)
            .timeout_secs(30)
    }

    /// Take host `i`'s link down (its veth end on the bridge).
    pub fn link_down(&self, i: usize) {
        sh("ip", &["link", "set", &self.hosts[i].veth, "down"]).unwrap_or_else(|e| panic!("{e}"));
    }

    /// Bring host `i`'s link back up.
    pub fn link_up(&self, i: usize) {
        sh("ip", &["link", "set", &self.hosts[i].veth, "up"]).unwrap_or_else(|e| panic!("{e}"));
    }

    /// Pid of host `i`'s sshd listener.
    pub fn sshd_pid(&self, i: usize) -> i32 {
        self.hosts[i]
            .sshd
            .as_ref()
            .map(|c| c.id() as i32)
            .unwrap_or(-1)
    }

    /// Pids of all processes in host `i`'s namespace (`ip netns pids`).
    pub fn pids_in(&self, i: usize) -> Vec<i32> {
        sh("ip", &["netns", "pids", &self.hosts[i].netns])
            .unwrap_or_default()
            .split_whitespace()
            .filter_map(|p| p.parse().ok())
            .filter(|&p| read_stat(p).is_some_and(|(s, _)| s != 'Z'))
            .collect()
    }

    /// Fail unless, in every namespace, only the sshd listener is left
    /// (after a grace period): no engine, shell, or ssh session.
    #[track_caller]
    pub fn assert_only_sshd_left(&self) {
        let deadline = Instant::now() + LEFTOVER_GRACE;
        loop {
            let mut extra = Vec::new();
            for i in 0..self.len() {
                let sshd = self.sshd_pid(i);
                for pid in self.pids_in(i) {
                    if pid != sshd {
                        extra.push(format!(
                            "  {} pid {pid}: {}",
                            self.hosts[i].netns,
                            read_argv(pid).join(" ")
                        ));
                    }
                }
            }
            if extra.is_empty() {
                return;
            }
            if Instant::now() >= deadline {
                panic!(
                    "processes left in the namespaces after {LEFTOVER_GRACE:?}:\n{}",
                    extra.join("\n")
                );
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// sshd log of host `i`.
    pub fn log(&self, i: usize) -> String {
        fs::read_to_string(&self.hosts[i].log).unwrap_or_default()
    }

    /// Names of the interfaces and namespaces this instance owns (for the
    /// harness self-test).
    pub fn resource_names(&self) -> (String, Vec<String>, Vec<String>) {
        (
            self.bridge.clone(),
            self.hosts.iter().map(|h| h.netns.clone()).collect(),
            self.hosts.iter().map(|h| h.veth.clone()).collect(),
        )
    }
}

impl Drop for NetnsHosts {
    fn drop(&mut self) {
        let panicking = thread::panicking();
        for i in 0..self.hosts.len() {
            if panicking {
                eprintln!(
                    "sshd log of {} ({}):\n{}",
                    self.hosts[i].netns,
                    self.hosts[i].addr,
                    tail(&self.log(i), 30)
                );
            }
            // Everything in the namespace, the sshd included, must go:
            // a process keeps its namespace alive.
            let pids = self.pids_in(i);
            if let Some(child) = self.hosts[i].sshd.as_mut() {
                stop_child(child);
            }
            for pid in pids {
                send_signal(pid, libc::SIGKILL);
            }
        }
        for h in &self.hosts {
            let _ = sh("ip", &["netns", "del", &h.netns]);
            let _ = sh("ip", &["link", "del", &h.veth]);
        }
        if self.bridge_created {
            let _ = sh("ip", &["link", "del", &self.bridge]);
        }
    }
}

/// All namespace names currently present (`ip netns list`).
pub fn netns_list() -> BTreeSet<String> {
    sh("ip", &["netns", "list"])
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .collect()
}

/// Whether a network interface with this name exists in the root namespace.
pub fn link_exists(name: &str) -> bool {
    Path::new("/sys/class/net").join(name).exists()
}

/// Wait for a spawned pcl with a deadline: exit code, stdout, stderr and
/// how long it took.
pub fn finish(mut child: Child, limit: Duration) -> (i32, Vec<u8>, String, Duration) {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let out = child.wait_with_output().unwrap();
            return (
                status.code().unwrap_or(-1),
                out.stdout,
                String::from_utf8_lossy(&out.stderr).into_owned(),
                start.elapsed(),
            );
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            panic!("pcl did not finish within {limit:?}");
        }
        thread::sleep(Duration::from_millis(10));
    }
}

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
