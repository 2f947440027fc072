//! Commands run with a time limit, and what they produced.

use super::*;

/// A command to run with a time limit. Built by [`Env::pcl`] / [`Env::cmd`]
/// (or [`Cmd::new`] for helpers), run with [`Cmd::run`].
#[must_use]
pub struct Cmd {
    program: OsString,
    args: Vec<OsString>,
    env: Vec<(OsString, Option<OsString>)>,
    pub(crate) clear_pcl_env: bool,
    cwd: Option<PathBuf>,
    stdin: Option<Vec<u8>>,
    stderr_on_a_terminal: bool,
    timeout: Duration,
    pub(crate) log_dirs: Vec<PathBuf>,
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
pub(crate) fn open_terminal() -> Result<(OwnedFd, OwnedFd), String> {
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

pub(crate) fn collect_logs(dirs: &[PathBuf]) -> String {
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

pub(crate) fn find_log_files(dir: &Path, out: &mut Vec<PathBuf>, depth: usize) {
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
