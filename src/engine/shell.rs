//! One engine: a persistent shell whose variables, functions, exports and
//! working directory carry over from one command to the next.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::Notify;
use tokio::time::Instant;

use super::EngineError;
use super::guard::Guard;
use super::marker::{CommandEnd, marker_token};
use super::pipe::{OutputPipe, PIPE_READ};
use super::procs::{forget_spawned, kill_session, signal_jobs, spawn_recorded};
use crate::protocol::engine::{ExecEnd, ExecOutcome};
use crate::protocol::status;
use crate::quoting::ansi_c_quote;

/// How long a timed-out command gets between SIGTERM and SIGKILL of its
/// process groups, and then before the shell itself is given up on; also
/// how long an interrupted command gets before a shell with no job left to
/// signal is given up on.
const KILL_GRACE: Duration = Duration::from_secs(1);

/// The engine's own copies of the shell's stdout and stderr pipes, where
/// the end-of-command markers go, and a /dev/null for commands' stdin.
/// Far above what bash hands out for `{var}>` redirections (10 and up).
const OUT_FD: i32 = 250;
const ERR_FD: i32 = 251;
const NULL_FD: i32 = 252;

/// Redirections for every piece of engine-run code that runs a user's
/// command: stdin from the shell's own /dev/null (never its command pipe;
/// opening /dev/null for each command cost bash a path lookup), stdout
/// and stderr from the engine's own copies. All three are moved, so closed
/// for the command: nothing a user runs can write to the engine's copies,
/// close any of them for good, or keep them open once the shell is gone;
/// and a command that redirected or closed its shell's stdin, stdout or
/// stderr (`exec >/dev/null`) changes them for itself only: bash puts all
/// six back when the command ends.
pub(super) const USER_REDIRECTS: &str = "<&252- >&250- 2>&251-";

/// What a shell is told first: the function that ends every command. It
/// prints the marker (its two halves, passed as separate words so that
/// even `set -x` traces never show it whole), the status of the command
/// before it (a function starts with that `$?`) and the shell's flags
/// (`$-`). bash reads a pipe one byte at a time, and this line is much of
/// what a shell pays per command beyond the command itself, so the
/// function is what keeps it short; read-only, so no user's function of
/// the same name replaces it. stderr needs no marker of its own: by the
/// time the shell prints this one, all the command wrote to stderr is in
/// that pipe.
const DEFINE_END: &str = "__pcl_e() { builtin printf '%s%s%d %s\\n' \"$1\" \"$2\" $? \"$-\"; }; builtin readonly -f __pcl_e\n";

fn end_line(a: &str, b: &str) -> String {
    format!("__pcl_e {a} {b}\n")
}

/// Job control (`set -m`) gives each command its own process group, which
/// is how a timeout or an interrupt finds what to signal. A command that
/// turns it off has it turned back on before the next one.
const JOB_CONTROL_ON: &str = "builtin set -m\n";

#[derive(Clone)]
pub(crate) struct ShellSpec {
    pub program: String,
    pub workdir: PathBuf,
    pub env: Vec<(String, String)>,
    pub setup: Option<String>,
    /// Told of every shell started, to clean up if the engine host dies.
    pub guard: Option<Arc<Guard>>,
    /// Notified when the engine's command is interrupted: a shell that
    /// then does not answer is replaced.
    pub interrupted: Arc<Notify>,
}

/// Where a command's output goes as it arrives.
pub(crate) trait OutputSink {
    fn stdout(&mut self, data: Vec<u8>) -> impl Future<Output = ()> + Send;
    fn stderr(&mut self, data: Vec<u8>) -> impl Future<Output = ()> + Send;
    /// Resolves once nobody waits for the command any more (its caller
    /// went away, or the link to it did): the command is then stopped as
    /// if it had timed out, so the shell is free when the caller returns.
    fn abandoned(&mut self) -> impl Future<Output = ()> + Send {
        std::future::pending()
    }
    /// The pause after each read of the command's output, if it is not to
    /// be read as soon as it arrives: many tiny tasks in a row then cost
    /// the engine host one wakeup and one packet per round instead of
    /// several each.
    fn read_gap(&self) -> Option<Duration> {
        None
    }
}

/// Collects output in memory, for short engine-made scripts.
#[derive(Debug, Default)]
pub(crate) struct Capture {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

impl OutputSink for Capture {
    async fn stdout(&mut self, data: Vec<u8>) {
        self.stdout.extend(data);
    }
    async fn stderr(&mut self, data: Vec<u8>) {
        self.stderr.extend(data);
    }
}

pub(crate) struct Shell {
    spec: ShellSpec,
    child: Child,
    pid: i32,
    stdin: ChildStdin,
    stdout: OutputPipe,
    stderr: OutputPipe,
    /// The last command's end showed job control off.
    job_control_off: bool,
}

impl Shell {
    /// Start the shell in its workdir and run the setup script, whose
    /// failure fails the start.
    pub(crate) async fn start(spec: ShellSpec) -> Result<Shell, EngineError> {
        let mut shell = Self::spawn(spec)?;
        shell.stdin.write_all(DEFINE_END.as_bytes()).await?;
        // A non-interactive bash that sees its foreground job die of SIGINT
        // exits as if it got SIGINT itself, unless SIGINT is trapped; a
        // trap (not an ignore, which children would inherit) keeps the
        // shell alive through `pcl interrupt`.
        shell
            .run_script("builtin set -m; trap : INT", None, &mut Capture::default())
            .await?;
        if let Some(setup) = shell.spec.setup.clone() {
            let mut capture = Capture::default();
            let end = shell.run_user(&setup, None, &mut capture).await?;
            if end.status != 0 || end.outcome != ExecOutcome::Finished {
                return Err(EngineError::Setup {
                    status: end.status,
                    stderr: String::from_utf8_lossy(&capture.stderr)
                        .trim_end()
                        .to_string(),
                });
            }
        }
        Ok(shell)
    }

    fn spawn(spec: ShellSpec) -> Result<Shell, EngineError> {
        let mut command = Command::new(&spec.program);
        if spec.program.rsplit('/').next() == Some("bash") {
            command.args(["--noprofile", "--norc"]);
        }
        command
            .current_dir(&spec.workdir)
            .envs(spec.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        // SAFETY: setsid, open, dup2 and close are async-signal-safe. A session of its
        // own lets us find and kill everything the shell starts, and keeps
        // terminal signals aimed at the engine host away from it. The
        // duplicates of stdout and stderr are the engine's own channel.
        unsafe {
            command.pre_exec(|| {
                libc::setsid();
                if libc::dup2(1, OUT_FD) < 0 || libc::dup2(2, ERR_FD) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // The engine host's own descriptors are still open here, so
                // with many engines the lowest free one can be NULL_FD itself.
                let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDONLY);
                if null < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                if null != NULL_FD {
                    if libc::dup2(null, NULL_FD) < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    libc::close(null);
                }
                Ok(())
            });
        }
        let mut child = spawn_recorded(
            || command.spawn(),
            |child| child.id().map_or(-1, |p| p as i32),
        )
        .map_err(|source| EngineError::Spawn {
            program: spec.program.clone(),
            source,
        })?;
        let pid = child.id().map(|p| p as i32).unwrap_or(-1);
        if let Some(guard) = &spec.guard {
            guard.watch(pid);
        }
        let (Some(stdin), Some(stdout), Some(stderr)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            return Err(std::io::Error::other("shell started without pipes").into());
        };
        Ok(Shell {
            spec,
            child,
            pid,
            stdin,
            stdout: OutputPipe::new(stdout.into_owned_fd()?)?,
            stderr: OutputPipe::new(stderr.into_owned_fd()?)?,
            job_control_off: false,
        })
    }

    pub(crate) fn pid(&self) -> i32 {
        self.pid
    }

    /// Run a command typed by a user. It is evaluated by the shell itself
    /// (so `cd`, `export` and assignments persist), quoted so that nothing
    /// in it can break out of the wrapper.
    pub(crate) async fn run_user<S: OutputSink>(
        &mut self,
        command: &str,
        timeout: Option<Duration>,
        sink: &mut S,
    ) -> Result<ExecEnd, EngineError> {
        if command.contains('\0') {
            return Err(EngineError::NulInCommand);
        }
        // eval's own redirections are undone when it returns, as a
        // group's are, and without the group bash reads 4 bytes fewer
        // (one system call each) and runs one command fewer.
        self.run_lines(
            &format!(
                "eval {} {USER_REDIRECTS}\n",
                ansi_c_quote(command.as_bytes())
            ),
            timeout,
            sink,
        )
        .await
    }

    /// Run shell code the engine built itself, where every user-supplied
    /// piece is already quoted.
    pub(crate) async fn run_script<S: OutputSink>(
        &mut self,
        script: &str,
        timeout: Option<Duration>,
        sink: &mut S,
    ) -> Result<ExecEnd, EngineError> {
        self.run_lines(
            &format!("{{ {script}\n}} {USER_REDIRECTS}\n"),
            timeout,
            sink,
        )
        .await
    }

    /// Run top-level lines of engine-made shell code. Unlike `run_script`
    /// they are not one compound command, so an interrupt that aborts one
    /// line (bash drops the rest of the command a SIGINT hit) leaves the
    /// next lines to run. Each line must redirect its own stdin and close
    /// the engine's own descriptors (`USER_REDIRECTS`).
    pub(crate) async fn run_lines<S: OutputSink>(
        &mut self,
        lines: &str,
        timeout: Option<Duration>,
        sink: &mut S,
    ) -> Result<ExecEnd, EngineError> {
        let token = marker_token();
        let (a, b) = token.split_at(token.len() / 2);
        let job_control = if self.job_control_off {
            JOB_CONTROL_ON
        } else {
            ""
        };
        let wrapper = format!("{job_control}{lines}{}", end_line(a, b));
        if self.stdin.write_all(wrapper.as_bytes()).await.is_err() {
            let scan = CommandEnd::new(&token);
            return self.restart_after_death(sink, scan).await;
        }
        let mut scan = CommandEnd::new(&token);
        // Read into without zeroing first: most commands print a few bytes,
        // and clearing both buffers per command showed in profiles.
        let mut out_buf = Vec::with_capacity(PIPE_READ);
        let mut err_buf = Vec::with_capacity(PIPE_READ);
        let mut deadline = timeout.map(|t| Instant::now() + t);
        let mut timed_out = false;
        let mut abandoned = false;
        let mut kill_stage = 0;
        // Armed from the start: an interrupt is seen even while we are not
        // polling (`notify_waiters` keeps no permit for later commands).
        let interrupts = self.spec.interrupted.clone();
        let mut interrupted = std::pin::pin!(interrupts.notified());
        let mut interrupt_check: Option<Instant> = None;
        loop {
            if let Some((status, job_control)) = scan.end() {
                self.job_control_off = !job_control;
                // The command has ended, so all it wrote to stderr is in
                // the pipe.
                self.stderr.read_held(&mut err_buf)?;
                let data = std::mem::take(&mut err_buf);
                if !data.is_empty() {
                    sink.stderr(data).await;
                }
                let outcome = if timed_out {
                    ExecOutcome::TimedOut
                } else {
                    ExecOutcome::Finished
                };
                let status = if timed_out { status::TIMED_OUT } else { status };
                return Ok(ExecEnd { status, outcome });
            }
            // Re-asked each round: a batch reads its last task's end at once.
            let gap = sink.read_gap();
            self.stdout.read_with_gap(gap)?;
            self.stderr.read_with_gap(gap)?;
            let far = || Instant::now() + Duration::from_secs(86400);
            let sleep_until = deadline.unwrap_or_else(far);
            let check_at = interrupt_check.unwrap_or_else(far);
            tokio::select! {
                n = self.stdout.read_buf(&mut out_buf), if scan.wants_stdout() => {
                    let n = n?;
                    if n == 0 {
                        return self.restart_after_death(sink, scan).await;
                    }
                    let data = scan.out.feed(&out_buf[..n]);
                    out_buf.clear();
                    if gap.is_some() {
                        // A batch prints a task's stderr marker first: a
                        // round's tasks are then all complete, one packet.
                        self.stderr.read_held(&mut err_buf)?;
                        if !err_buf.is_empty() {
                            sink.stderr(err_buf.clone()).await;
                            err_buf.clear();
                        }
                    }
                    if !data.is_empty() { sink.stdout(data).await; }
                }
                n = self.stderr.read_buf(&mut err_buf) => {
                    if n? == 0 {
                        return self.restart_after_death(sink, scan).await;
                    }
                    let data = err_buf.clone();
                    err_buf.clear();
                    sink.stderr(data).await;
                }
                // The shell's own exit, seen even while a job it left
                // running (`sleep 600 & exit`) holds its pipes open.
                _ = self.child.wait() => {
                    return self.restart_after_death(sink, scan).await;
                }
                _ = sink.abandoned(), if !abandoned => {
                    abandoned = true;
                    if !timed_out {
                        deadline = Some(Instant::now());
                    }
                }
                _ = interrupted.as_mut() => {
                    interrupted.set(interrupts.notified());
                    interrupt_check.get_or_insert_with(|| Instant::now() + KILL_GRACE);
                }
                _ = tokio::time::sleep_until(check_at), if interrupt_check.is_some() => {
                    interrupt_check = None;
                    // Interrupted, still not done, and no job of its own
                    // left to signal: the shell itself is what runs (a
                    // builtin loop) or it stopped answering. Only a fresh
                    // shell gives the engine back.
                    if signal_jobs(self.pid, 0) == 0 {
                        return self
                            .replace_stuck(
                                status::INTERRUPTED,
                                "the command did not stop on interrupt; the shell was replaced and its state was lost",
                            )
                            .await;
                    }
                }
                _ = tokio::time::sleep_until(sleep_until), if deadline.is_some() => {
                    timed_out = true;
                    kill_stage += 1;
                    match kill_stage {
                        1 => { signal_jobs(self.pid, libc::SIGTERM); }
                        2 => { signal_jobs(self.pid, libc::SIGKILL); }
                        _ => {
                            // The command is the shell itself (a builtin
                            // loop, say): only replacing the shell stops it.
                            return self
                                .replace_stuck(
                                    status::TIMED_OUT,
                                    "the command timed out and did not yield to signals; the shell was replaced",
                                )
                                .await;
                        }
                    }
                    deadline = Some(Instant::now() + KILL_GRACE);
                }
            }
        }
    }

    /// Put a fresh shell in place of one that does not answer.
    async fn replace_stuck(&mut self, status: i32, why: &str) -> Result<ExecEnd, EngineError> {
        kill_session(self.pid);
        self.replace().await?;
        Ok(ExecEnd {
            status,
            outcome: ExecOutcome::ShellRestarted(why.into()),
        })
    }

    /// The shell ended mid-command: pass on everything it printed, on both
    /// streams (one pipe's end does not mean the other was read to its
    /// end), report its exit status, and put a fresh shell in its place.
    async fn restart_after_death<S: OutputSink>(
        &mut self,
        sink: &mut S,
        scan: CommandEnd,
    ) -> Result<ExecEnd, EngineError> {
        let status = self.child.wait().await?;
        // What the shell left running in its session could hold the pipes
        // open for ever; what escaped the session gets a moment.
        kill_session(self.pid);
        let CommandEnd { mut out } = scan;
        let drain_until = Instant::now() + KILL_GRACE;
        // stdout up to the marker, if it came; stderr to its end.
        for (pipe, mut scanner, is_err) in [
            (&mut self.stdout, Some(&mut out), false),
            (&mut self.stderr, None, true),
        ] {
            let mut buf = vec![0u8; PIPE_READ];
            pipe.read_with_gap(None)?;
            while scanner.as_ref().is_none_or(|s| s.after().is_none()) {
                match tokio::time::timeout_at(drain_until, pipe.read(&mut buf)).await {
                    Ok(Ok(n)) if n > 0 => {
                        let data = match scanner.as_mut() {
                            Some(scanner) => scanner.feed(&buf[..n]),
                            None => buf[..n].to_vec(),
                        };
                        emit(sink, is_err, data).await;
                    }
                    _ => break,
                }
            }
        }
        emit(sink, false, out.into_rest()).await;
        let code = status.code().unwrap_or_else(|| {
            use std::os::unix::process::ExitStatusExt;
            128 + status.signal().unwrap_or(0)
        });
        self.replace().await?;
        Ok(ExecEnd {
            status: code,
            outcome: ExecOutcome::ShellRestarted(format!(
                "the shell exited with status {code}; a fresh shell replaced it and its state was lost"
            )),
        })
    }

    async fn replace(&mut self) -> Result<(), EngineError> {
        let fresh = Box::pin(Shell::start(self.spec.clone())).await?;
        let old = std::mem::replace(self, fresh);
        drop(old);
        Ok(())
    }
}

impl Drop for Shell {
    fn drop(&mut self) {
        kill_session(self.pid);
        forget_spawned(self.pid);
    }
}

async fn emit<S: OutputSink>(sink: &mut S, is_err: bool, data: Vec<u8>) {
    match (data.is_empty(), is_err) {
        (true, _) => {}
        (false, false) => sink.stdout(data).await,
        (false, true) => sink.stderr(data).await,
    }
}

pub(super) fn random_hex() -> String {
    hex::encode(random_bytes::<16>())
}

pub(super) fn random_bytes<const N: usize>() -> [u8; N] {
    use ring::rand::{SecureRandom, SystemRandom};
    let mut bytes = [0u8; N];
    SystemRandom::new()
        .fill(&mut bytes)
        .expect("the system random source works");
    bytes
}
