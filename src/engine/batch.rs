//! `map`'s engine side: a batch of tasks run one after the other in one
//! engine's shell, each in a subshell, each answered as soon as it ends.
//! One request per batch (not per task), and one sourced script per batch
//! (bash reads a pipe a byte at a time, a file in blocks), is what makes
//! thousands of tiny tasks per second possible.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use memchr::memmem;

use quinn::SendStream;

use super::host::Engine;
use super::marker::marker_token;
use super::procs::signal_jobs;
use super::scratch::{create_exclusive, scratch_dir};
use super::shell::USER_REDIRECTS;
use super::{Capture, EngineError, OutputSink, Shell};
use crate::protocol::engine::{BatchItem, EngineReply, ExecEnd, ExecOutcome, TaskEnd};
use crate::protocol::status;
use crate::quoting::{ansi_c_quote, substitute};
use crate::transport::{encode_frame_into, write_frame};

/// SIGINT the engine's running command. Reads only the pid atomic, so it
/// works while a command holds the shell's lock.
pub(super) fn interrupt(engine: &Engine, id: u32, cancel: bool) {
    if cancel {
        engine.cancel.fetch_add(1, Ordering::SeqCst);
        if let Ok(stop) = stop_file(id) {
            // Already there is as good: the batch stops either way.
            let _ = create_exclusive(&stop);
        }
    }
    signal_jobs(engine.pid.load(Ordering::SeqCst), libc::SIGINT);
    engine.interrupted.notify_waiters();
}

/// The pause after each read of a batch's output (see
/// `OutputSink::read_gap`): a tiny task takes about a millisecond, so a
/// round gathers about a hundred of them, and each round costs the engine
/// host and the daemon a wakeup, a packet and its acknowledgement (at
/// 25 ms those were still half the daemon's CPU per task). A task's
/// result is at most that much later to be seen, which a person watching
/// does not notice; the batch's last one is read at once, so the next
/// batch never waits for it.
const READ_GAP: Duration = Duration::from_millis(100);

/// Its presence stops engine `id`'s running batch before its next task.
fn stop_file(id: u32) -> std::io::Result<PathBuf> {
    Ok(scratch_dir()?.join(format!("stop-{id}")))
}

/// Microseconds since the epoch, as `$EPOCHREALTIME` tells them.
fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

pub(super) async fn run_batch(
    engine: &Engine,
    id: u32,
    template: &str,
    items: Vec<BatchItem>,
    timeout: Option<Duration>,
    send: &mut SendStream,
) -> Result<(), EngineError> {
    // Read before queueing for the lock: a cancel sent while this batch
    // waits behind another one stops it too.
    let epoch = engine.cancel.load(Ordering::SeqCst);
    let mut shell = engine.shell.lock().await;
    let _ = std::fs::remove_file(stop_file(id)?);
    if engine.cancel.load(Ordering::SeqCst) == epoch {
        match timeout {
            Some(t) => run_each(engine, &mut shell, epoch, template, items, t, send).await?,
            None => run_sourced(engine, &mut shell, id, template, items, send).await?,
        }
        engine.pid.store(shell.pid(), Ordering::SeqCst);
    }
    write_frame(send, &EngineReply::BatchDone).await?;
    Ok(())
}

/// The command for one task: a subshell sees the engine's variables,
/// functions and cwd but cannot change them for the next task. Stdin is
/// already /dev/null: `run_script` redirects the whole script.
fn task_script(template: &str, item: &[u8]) -> String {
    let command = substitute(template, item);
    quiet_job(&format!(
        "( builtin eval {} )",
        ansi_c_quote(command.as_bytes())
    ))
}

/// `job` with its own stderr kept but the shell's report of how it ended
/// (`Terminated` for a task killed by its timeout) sent nowhere: the shell
/// writes that to its own stderr, which is /dev/null around the job.
fn quiet_job(job: &str) -> String {
    format!("{{ {job} 2>&249 249>&-; }} 249>&2 2>/dev/null")
}

/// With a per-task timeout: one shell call per task, each with its own
/// deadline.
async fn run_each(
    engine: &Engine,
    shell: &mut Shell,
    epoch: u64,
    template: &str,
    items: Vec<BatchItem>,
    timeout: Duration,
    send: &mut SendStream,
) -> Result<(), EngineError> {
    for BatchItem { seq, item } in items {
        if engine.cancel.load(Ordering::SeqCst) != epoch {
            break;
        }
        let mut capture = Capture::default();
        let start_ms = now_us() / 1000;
        let started = Instant::now();
        let end = shell
            .run_script(&task_script(template, &item), Some(timeout), &mut capture)
            .await;
        engine.pid.store(shell.pid(), Ordering::SeqCst);
        let end = end.unwrap_or_else(|e| ExecEnd {
            status: status::UNREACHABLE,
            outcome: ExecOutcome::ShellRestarted(e.to_string()),
        });
        let task = TaskEnd {
            seq,
            start_ms,
            runtime_ms: started.elapsed().as_millis() as u64,
            end,
            stdout: capture.stdout,
            stderr: capture.stderr,
        };
        write_frame(send, &EngineReply::Task(task)).await?;
    }
    Ok(())
}

/// Without a timeout: the batch runs as one loop in the shell, sourced
/// from a file (bash reads a pipe a byte at a time, a file in blocks),
/// each task answered by a marker on stdout and stderr. Results are cut
/// out of the streams and sent as they complete.
async fn run_sourced(
    engine: &Engine,
    shell: &mut Shell,
    id: u32,
    template: &str,
    items: Vec<BatchItem>,
    send: &mut SendStream,
) -> Result<(), EngineError> {
    let token = marker_token();
    let (a, b) = token.split_at(token.len() / 2);
    let quote = |path: &PathBuf| ansi_c_quote(path.as_os_str().as_encoded_bytes());
    let stop = quote(&stop_file(id)?);
    // One loop in the shell runs the batch, its stdin /dev/null once for
    // all tasks. Each task's marker is printed from two variables so
    // `set -x` never shows it, with the task's status and the time it
    // ended (bash 5's `$EPOCHREALTIME`; the engine reads output in rounds,
    // so its own clock would tell when a round was read); once the stop
    // file appears, one marker with status `x` ends the batch. The stderr
    // marker goes first: whatever stdout marker is read, stderr already
    // holds its task's end (see `run_lines`). With job
    // control on, a SIGINT reaches only the task's process group, but
    // bash breaks a loop whose foreground job died of SIGINT: the task
    // turns it into exit status 130.
    let quiet = quiet_job("( trap 'exit 130' INT; builtin eval \"$__pcl_c\" )");
    let mut script = format!(
        "__pcl_m={a}; __pcl_n={b}\n\
         __pcl_r() {{ for __pcl_c in \"${{__pcl_l[@]}}\"; do [[ -e {stop} ]] && break; \
         {quiet}; __pcl_s=$?; \
         builtin printf '%s%s' \"$__pcl_m\" \"$__pcl_n\" >&2; \
         builtin printf '%s%s%s %s\\n' \"$__pcl_m\" \"$__pcl_n\" \"$__pcl_s\" \"${{EPOCHREALTIME-}}\"; done; \
         [[ -e {stop} ]] && {{ builtin printf '%s%s' \"$__pcl_m\" \"$__pcl_n\" >&2; \
         builtin printf '%s%s%s\\n' \"$__pcl_m\" \"$__pcl_n\" x; }}; unset __pcl_l __pcl_c __pcl_s; }}\n\
         __pcl_l=("
    );
    for BatchItem { item, .. } in &items {
        script.push_str(&ansi_c_quote(substitute(template, item).as_bytes()));
        script.push(' ');
    }
    // The end of this script, whatever an earlier one left after it.
    script.push_str(")\nbuiltin return\n");
    let path = scratch_dir()?.join(format!("batch-{id}.sh"));
    write_batch_script(engine, &path, &script)?;
    let lines = format!(
        ". {} {USER_REDIRECTS}; __pcl_r {USER_REDIRECTS}\n",
        quote(&path)
    );
    let mut source_name = path.as_os_str().as_encoded_bytes().to_vec();
    source_name.extend_from_slice(b": line ");
    let mut splitter = Splitter {
        token: token.into_bytes(),
        source_name,
        items: items.into_iter().map(|i| i.seq).collect(),
        next: 0,
        stdout: Cut::default(),
        stderr: Cut::default(),
        done_out: Vec::new(),
        start_us: now_us(),
        send,
        failed: None,
        cancelled: false,
    };
    let end = shell.run_lines(&lines, None, &mut splitter).await;
    if let Some(e) = splitter.failed.take() {
        return Err(e);
    }
    // The shell died mid-task: that task ends with what it printed.
    if let Ok(
        end @ ExecEnd {
            outcome: ExecOutcome::ShellRestarted(_),
            ..
        },
    ) = end
    {
        if let Some(&seq) = splitter.items.get(splitter.next) {
            let task = TaskEnd {
                seq,
                start_ms: splitter.start_us / 1000,
                runtime_ms: now_us().saturating_sub(splitter.start_us) / 1000,
                end,
                stdout: std::mem::take(&mut splitter.stdout.buf),
                stderr: std::mem::take(&mut splitter.stderr.buf),
            };
            write_frame(splitter.send, &EngineReply::Task(task)).await?;
        }
    }
    Ok(())
}

/// The file an engine's batches are sourced from.
pub(super) struct BatchScript {
    file: File,
    /// Its length, which may be more than the script it holds now.
    len: u64,
}

/// Bytes of an earlier, longer script that may stay behind a shorter one.
const STALE_TAIL: u64 = 64 << 10;

/// The engine's batch script, now holding `script`: created exclusively
/// in the private scratch directory for its first batch (so nothing
/// anyone prepared is ever sourced), then rewritten in place for each
/// next one. A new file per batch would cost the file system an inode
/// each, and allocating inodes among thousands just freed is what an
/// engine host at scale spent most of its time on. Nor is the file cut to
/// each script's length: on ext4 that took a journal transaction per
/// batch, the largest entry in an engine host's profile at 256 engines.
/// The script ends in `return`, so what an earlier one left behind it is
/// never run; only a long leftover (that bash would read for nothing) is
/// cut.
fn write_batch_script(engine: &Engine, path: &Path, script: &str) -> std::io::Result<()> {
    let mut held = engine
        .batch_script
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let batch = match &mut *held {
        Some(batch) => batch,
        empty => empty.insert(BatchScript {
            file: create_exclusive(path)?,
            len: 0,
        }),
    };
    let new_len = script.len() as u64;
    if batch.len > new_len + STALE_TAIL {
        batch.file.set_len(new_len)?;
        batch.len = new_len;
    }
    batch.file.write_all_at(script.as_bytes(), 0)?;
    batch.len = batch.len.max(new_len);
    Ok(())
}

/// One stream of a batch, cut at the task markers.
#[derive(Default)]
struct Cut {
    buf: Vec<u8>,
    /// How far `buf` is known to hold no marker.
    searched: usize,
}

impl Cut {
    /// The next task's bytes and, with `line`, the rest of the marker's
    /// line (the status), once complete.
    fn next(&mut self, token: &[u8], line: bool) -> Option<(Vec<u8>, Vec<u8>)> {
        let from = self.searched.saturating_sub(token.len());
        let Some(at) = memmem::find(&self.buf[from..], token).map(|i| i + from) else {
            self.searched = self.buf.len();
            return None;
        };
        let after = at + token.len();
        let (tail, consumed) = if line {
            let nl = memchr::memchr(b'\n', &self.buf[after..])?;
            (self.buf[after..after + nl].to_vec(), after + nl + 1)
        } else {
            (Vec::new(), after)
        };
        let rest = self.buf.split_off(consumed);
        let mut task = std::mem::replace(&mut self.buf, rest);
        task.truncate(at);
        self.searched = 0;
        Some((task, tail))
    }
}

/// A task's stdout, complete, with what its marker said: the status (none
/// if the batch was cancelled) and, from a bash that tells, the time it
/// ended.
struct Ended {
    stdout: Vec<u8>,
    status: Option<i32>,
    at_us: Option<u64>,
}

/// `$EPOCHREALTIME` (seconds, the locale's decimal point, microseconds)
/// in microseconds.
fn epoch_us(text: &str) -> Option<u64> {
    let (secs, micros) = text.split_once(['.', ','])?;
    if micros.len() != 6 {
        return None;
    }
    Some(secs.parse::<u64>().ok()? * 1_000_000 + micros.parse::<u64>().ok()?)
}

struct Splitter<'a> {
    token: Vec<u8>,
    /// How bash names the batch script in its error messages
    /// (`PATH: line N: `), which is no concern of the user's.
    source_name: Vec<u8>,
    items: Vec<u64>,
    /// Index in `items` of the task running now.
    next: usize,
    stdout: Cut,
    stderr: Cut,
    /// Finished stdouts waiting for their stderr's marker.
    done_out: Vec<Ended>,
    /// When the task running now started, in microseconds since the epoch.
    start_us: u64,
    send: &'a mut SendStream,
    failed: Option<EngineError>,
    /// A task was skipped by a cancel: report nothing more.
    cancelled: bool,
}

impl Splitter<'_> {
    /// Every task that is complete now, in one write: the tasks of one
    /// round of reading then cost one packet and one wakeup of the
    /// daemon, not one each.
    async fn emit(&mut self) {
        let mut frames = Vec::new();
        while !self.done_out.is_empty() && !self.cancelled {
            let Some((stderr, _)) = self.stderr.next(&self.token, false) else {
                break;
            };
            let stderr = as_bash_says(stderr, &self.source_name);
            let Ended {
                stdout,
                status,
                at_us,
            } = self.done_out.remove(0);
            let Some(&seq) = self.items.get(self.next) else {
                break;
            };
            let Some(status) = status else {
                self.cancelled = true;
                break;
            };
            self.next += 1;
            let end_us = at_us.unwrap_or_else(now_us);
            let task = TaskEnd {
                seq,
                start_ms: self.start_us / 1000,
                runtime_ms: end_us.saturating_sub(self.start_us) / 1000,
                end: ExecEnd {
                    status,
                    outcome: ExecOutcome::Finished,
                },
                stdout,
                stderr,
            };
            self.start_us = end_us;
            if let Err(e) = encode_frame_into(&EngineReply::Task(task), &mut frames) {
                self.failed.get_or_insert(e.into());
            }
        }
        if !frames.is_empty() {
            if let Err(e) = self.send.write_all(&frames).await {
                self.failed.get_or_insert(std::io::Error::from(e).into());
            }
        }
    }
}

impl OutputSink for Splitter<'_> {
    async fn stdout(&mut self, data: Vec<u8>) {
        self.stdout.buf.extend_from_slice(&data);
        while let Some((stdout, tail)) = self.stdout.next(&self.token, true) {
            let tail = String::from_utf8_lossy(&tail);
            let mut words = tail.split(' ');
            let status = words.next().and_then(|s| s.parse().ok());
            let at_us = words.next().and_then(epoch_us);
            self.done_out.push(Ended {
                stdout,
                status,
                at_us,
            });
        }
        self.emit().await;
    }

    async fn stderr(&mut self, data: Vec<u8>) {
        self.stderr.buf.extend_from_slice(&data);
        self.emit().await;
    }

    /// Not for the last task: the next batch waits for this one's end.
    fn read_gap(&self) -> Option<Duration> {
        (self.next + self.done_out.len() + 1 < self.items.len()).then_some(READ_GAP)
    }
}

/// A task's stderr with bash's naming of pcl's batch script (`PATH: line
/// N: ` at the start of a line) said as bash names a command's own errors
/// (`bash: `).
fn as_bash_says(stderr: Vec<u8>, source_name: &[u8]) -> Vec<u8> {
    if memmem::find(&stderr, source_name).is_none() {
        return stderr;
    }
    let mut out = Vec::with_capacity(stderr.len());
    for line in stderr.split_inclusive(|&b| b == b'\n') {
        let rest = line.strip_prefix(source_name).and_then(|rest| {
            let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
            rest[digits..].strip_prefix(b": ").filter(|_| digits > 0)
        });
        match rest {
            Some(rest) => {
                out.extend_from_slice(b"bash: ");
                out.extend_from_slice(rest);
            }
            None => out.extend_from_slice(line),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::{Cut, as_bash_says, epoch_us};

    #[test]
    fn the_batch_script_is_never_named_in_a_task_error() {
        let name = b"/run/pcl-engine-ab/batch-0-3.sh: line ";
        let stderr = b"/run/pcl-engine-ab/batch-0-3.sh: line 2: nosuch: command not found\n\
                       own words\n/run/pcl-engine-ab/batch-0-3.sh: line x: kept\n"
            .to_vec();
        assert_eq!(
            as_bash_says(stderr, name),
            b"bash: nosuch: command not found\nown words\n/run/pcl-engine-ab/batch-0-3.sh: line x: kept\n"
        );
        assert_eq!(as_bash_says(b"plain".to_vec(), name), b"plain");
    }

    #[test]
    fn a_task_s_end_is_read_from_bash_s_clock_in_any_locale() {
        assert_eq!(epoch_us("1764680000.123456"), Some(1_764_680_000_123_456));
        assert_eq!(epoch_us("1764680000,000042"), Some(1_764_680_000_000_042));
        // bash 4 has no $EPOCHREALTIME: the engine's own clock it is.
        assert_eq!(epoch_us(""), None);
        assert_eq!(epoch_us("1764680000.12"), None);
    }

    #[test]
    fn cuts_tasks_at_markers_split_across_reads() {
        let mut cut = Cut::default();
        cut.buf.extend_from_slice(b"one\nMA");
        assert!(cut.next(b"MARK", true).is_none());
        cut.buf.extend_from_slice(b"RK0");
        assert!(cut.next(b"MARK", true).is_none());
        cut.buf.extend_from_slice(b"\nMARK3\nrest");
        assert_eq!(
            cut.next(b"MARK", true),
            Some((b"one\n".to_vec(), b"0".to_vec()))
        );
        assert_eq!(cut.next(b"MARK", true), Some((Vec::new(), b"3".to_vec())));
        assert_eq!(cut.buf, b"rest");
    }
}
