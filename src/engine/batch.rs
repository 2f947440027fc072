//! `map`'s engine side: a batch of tasks run one after the other in one
//! engine's shell, each in a subshell, each answered as soon as it ends.
//! One request per batch (not per task) is what makes thousands of tiny
//! tasks per second possible.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use quinn::SendStream;

use super::host::Engine;
use super::procs::signal_jobs;
use super::{Capture, EngineError, ansi_c_quote};
use crate::protocol::engine::{BatchItem, EngineReply, ExecEnd, ExecOutcome, TaskEnd};
use crate::transport::write_frame;

/// The command for one item: every `{}` becomes the shell-quoted item; with
/// no `{}`, the quoted item is appended after a space (GNU parallel's rule).
pub fn substitute(template: &str, item: &[u8]) -> String {
    let quoted = ansi_c_quote(item);
    if template.contains("{}") {
        template.replace("{}", &quoted)
    } else {
        format!("{template} {quoted}")
    }
}

/// SIGINT the engine's running command. Reads only the pid atomic, so it
/// works while a command holds the shell's lock.
pub(super) fn interrupt(engine: &Engine, cancel: bool) {
    if cancel {
        engine.cancel.fetch_add(1, Ordering::SeqCst);
    }
    signal_jobs(engine.pid.load(Ordering::SeqCst), libc::SIGINT);
}

pub(super) async fn run_batch(
    engine: &Engine,
    template: &str,
    items: Vec<BatchItem>,
    timeout: Option<Duration>,
    send: &mut SendStream,
) -> Result<(), EngineError> {
    // Read before queueing for the lock: a cancel sent while this batch
    // waits behind another one stops it too.
    let epoch = engine.cancel.load(Ordering::SeqCst);
    let mut shell = engine.shell.lock().await;
    for BatchItem { seq, item } in items {
        if engine.cancel.load(Ordering::SeqCst) != epoch {
            break;
        }
        let command = substitute(template, &item);
        // The subshell sees the engine's variables, functions and cwd but
        // cannot change them for the next task.
        let script = format!("( eval {} )", ansi_c_quote(command.as_bytes()));
        let mut capture = Capture::default();
        let start_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let started = Instant::now();
        let end = shell.run_script(&script, timeout, &mut capture).await;
        engine.pid.store(shell.pid(), Ordering::SeqCst);
        let end = end.unwrap_or_else(|e| ExecEnd {
            status: 255,
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
    write_frame(send, &EngineReply::BatchDone).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::substitute;

    #[test]
    fn braces_become_the_quoted_item() {
        assert_eq!(substitute("echo {} {}", b"a b"), "echo $'a b' $'a b'");
        assert_eq!(substitute("echo", b"x"), "echo $'x'");
        assert_eq!(
            substitute("echo {}", b"$(touch x)'\""),
            "echo $'\\x24\\x28touch x\\x29\\x27\\x22'"
        );
    }
}
