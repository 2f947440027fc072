//! One engine: a persistent shell whose variables, functions, exports and
//! working directory carry over from one command to the next.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, ChildStdin, Command};
use tokio::time::Instant;

use super::guard::Guard;
use super::marker::MarkerScanner;
use super::pipe::OutputPipe;
use super::procs::{kill_session, signal_jobs};
use super::{EngineError, ansi_c_quote};
use crate::protocol::engine::{ExecEnd, ExecOutcome};

/// Exit status reported for a command stopped by its timeout, as timeout(1).
pub const TIMEOUT_STATUS: i32 = 124;

/// How long a timed-out command gets between SIGTERM and SIGKILL of its
/// process groups, and then before the shell itself is given up on.
const KILL_GRACE: Duration = Duration::from_secs(1);

#[derive(Clone)]
pub struct ShellSpec {
    pub program: String,
    pub workdir: PathBuf,
    pub env: Vec<(String, String)>,
    pub setup: Option<String>,
    /// Told of every shell started, to clean up if the engine host dies.
    pub guard: Option<Arc<Guard>>,
}

/// Where a command's output goes as it arrives.
pub trait OutputSink {
    fn stdout(&mut self, data: Vec<u8>) -> impl Future<Output = ()> + Send;
    fn stderr(&mut self, data: Vec<u8>) -> impl Future<Output = ()> + Send;
    /// Resolves once nobody waits for the command any more (its caller
    /// went away, or the link to it did): the command is then stopped as
    /// if it had timed out, so the shell is free when the caller returns.
    fn abandoned(&mut self) -> impl Future<Output = ()> + Send {
        std::future::pending()
    }
    /// How often to read the command's output, if not as soon as it
    /// arrives: many tiny tasks in a row then cost the engine host one
    /// wakeup and one packet per round instead of several each.
    fn poll_every(&self) -> Option<Duration> {
        None
    }
}

/// Collects output in memory, for short engine-made scripts.
#[derive(Debug, Default)]
pub struct Capture {
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

pub struct Shell {
    spec: ShellSpec,
    child: Child,
    pid: i32,
    stdin: ChildStdin,
    stdout: OutputPipe,
    stderr: OutputPipe,
}

impl Shell {
    /// Start the shell in its workdir and run the setup script, whose
    /// failure fails the start.
    pub async fn start(spec: ShellSpec) -> Result<Shell, EngineError> {
        let mut shell = Self::spawn(spec)?;
        // A non-interactive bash that sees its foreground job die of SIGINT
        // exits as if it got SIGINT itself, unless SIGINT is trapped; a
        // trap (not an ignore, which children would inherit) keeps the
        // shell alive through `pcl interrupt`.
        shell
            .run_script("trap : INT", None, &mut Capture::default())
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
        // SAFETY: setsid is async-signal-safe. A session of its own lets us
        // find and kill everything the shell starts, and keeps terminal
        // signals aimed at the engine host away from it.
        unsafe {
            command.pre_exec(|| {
                libc::setsid();
                Ok(())
            });
        }
        let mut child = command.spawn().map_err(|source| EngineError::Spawn {
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
        })
    }

    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// Run a command typed by a user. It is evaluated by the shell itself
    /// (so `cd`, `export` and assignments persist), quoted so that nothing
    /// in it can break out of the wrapper.
    pub async fn run_user<S: OutputSink>(
        &mut self,
        command: &str,
        timeout: Option<Duration>,
        sink: &mut S,
    ) -> Result<ExecEnd, EngineError> {
        if command.contains('\0') {
            return Err(EngineError::NulInCommand);
        }
        self.run_script(
            &format!("eval {}", ansi_c_quote(command.as_bytes())),
            timeout,
            sink,
        )
        .await
    }

    /// Run shell code the engine built itself, where every user-supplied
    /// piece is already quoted.
    pub async fn run_script<S: OutputSink>(
        &mut self,
        script: &str,
        timeout: Option<Duration>,
        sink: &mut S,
    ) -> Result<ExecEnd, EngineError> {
        self.run_lines(&format!("{{ {script}\n}} </dev/null\n"), timeout, sink)
            .await
    }

    /// Run top-level lines of engine-made shell code. Unlike `run_script`
    /// they are not one compound command, so an interrupt that aborts one
    /// line (bash drops the rest of the command a SIGINT hit) leaves the
    /// next lines to run. Each line must redirect its own stdin.
    pub async fn run_lines<S: OutputSink>(
        &mut self,
        lines: &str,
        timeout: Option<Duration>,
        sink: &mut S,
    ) -> Result<ExecEnd, EngineError> {
        let token = random_hex();
        let (a, b) = token.split_at(token.len() / 2);
        // Job control (`set -m`) gives each command its own process group.
        // The marker is printed from two variables so that even `set -x`
        // traces never show it whole.
        let wrapper = format!(
            "set -m; __pcl_a={a}; __pcl_b={b}\n{lines}\
             __pcl_s=$?; builtin printf '%s%s' \"$__pcl_a\" \"$__pcl_b\" >&2; \
             builtin printf '%s%s%d\\n' \"$__pcl_a\" \"$__pcl_b\" \"$__pcl_s\"\n"
        );
        if self.stdin.write_all(wrapper.as_bytes()).await.is_err() {
            return self.restart_after_death(sink, Vec::new(), Vec::new()).await;
        }
        let mut out = MarkerScanner::new(token.as_bytes());
        let mut err = MarkerScanner::new(token.as_bytes());
        let mut out_buf = vec![0u8; 64 << 10];
        let mut err_buf = vec![0u8; 64 << 10];
        let mut deadline = timeout.map(|t| Instant::now() + t);
        let mut timed_out = false;
        let mut abandoned = false;
        let mut kill_stage = 0;
        loop {
            if err.after().is_some() {
                if let Some(status) = out.after().and_then(parse_status) {
                    let outcome = if timed_out {
                        ExecOutcome::TimedOut
                    } else {
                        ExecOutcome::Finished
                    };
                    let status = if timed_out { TIMEOUT_STATUS } else { status };
                    return Ok(ExecEnd { status, outcome });
                }
            }
            // Re-asked each round: a batch reads its last task's end at once.
            let every = sink.poll_every();
            self.stdout.poll_every(every)?;
            self.stderr.poll_every(every)?;
            let sleep_until =
                deadline.unwrap_or_else(|| Instant::now() + Duration::from_secs(86400));
            tokio::select! {
                n = self.stdout.read(&mut out_buf), if out.after().is_none() || !has_newline(out.after()) => {
                    let n = n?;
                    if n == 0 {
                        let rest = (out.into_rest(), err.into_rest());
                        return self.restart_after_death(sink, rest.0, rest.1).await;
                    }
                    let data = out.feed(&out_buf[..n]);
                    if !data.is_empty() { sink.stdout(data).await; }
                }
                n = self.stderr.read(&mut err_buf), if err.after().is_none() => {
                    let n = n?;
                    if n == 0 {
                        let rest = (out.into_rest(), err.into_rest());
                        return self.restart_after_death(sink, rest.0, rest.1).await;
                    }
                    let data = err.feed(&err_buf[..n]);
                    if !data.is_empty() { sink.stderr(data).await; }
                }
                _ = sink.abandoned(), if !abandoned => {
                    abandoned = true;
                    if !timed_out {
                        deadline = Some(Instant::now());
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
                            kill_session(self.pid);
                            self.replace().await?;
                            return Ok(ExecEnd {
                                status: TIMEOUT_STATUS,
                                outcome: ExecOutcome::ShellRestarted(
                                    "the command timed out and did not yield to signals; the shell was replaced".into(),
                                ),
                            });
                        }
                    }
                    deadline = Some(Instant::now() + KILL_GRACE);
                }
            }
        }
    }

    /// The shell ended mid-command: pass on what it printed, report its
    /// exit status, and put a fresh shell in its place.
    async fn restart_after_death<S: OutputSink>(
        &mut self,
        sink: &mut S,
        stdout_rest: Vec<u8>,
        stderr_rest: Vec<u8>,
    ) -> Result<ExecEnd, EngineError> {
        if !stdout_rest.is_empty() {
            sink.stdout(stdout_rest).await;
        }
        if !stderr_rest.is_empty() {
            sink.stderr(stderr_rest).await;
        }
        let status = self.child.wait().await?;
        let code = status.code().unwrap_or_else(|| {
            use std::os::unix::process::ExitStatusExt;
            128 + status.signal().unwrap_or(0)
        });
        kill_session(self.pid);
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
    }
}

fn has_newline(after: Option<&[u8]>) -> bool {
    after.is_some_and(|a| a.contains(&b'\n'))
}

fn parse_status(after: &[u8]) -> Option<i32> {
    let line = &after[..after.iter().position(|&b| b == b'\n')?];
    std::str::from_utf8(line).ok()?.parse().ok()
}

pub(super) fn random_hex() -> String {
    use ring::rand::{SecureRandom, SystemRandom};
    let mut bytes = [0u8; 16];
    SystemRandom::new()
        .fill(&mut bytes)
        .expect("the system random source works");
    hex::encode(bytes)
}
