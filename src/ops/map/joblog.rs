//! `--joblog`: one row per item, in GNU parallel's format, so the tools
//! that read parallel's joblogs (parallel's own `--resume`,
//! `--resume-failed`, `--retry-failed`) read pcl's.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::Path;

use crate::protocol::engine::{ExecOutcome, TaskEnd};
use crate::quoting::substitute;

const HEADER: &[u8] =
    b"Seq\tHost\tStarttime\tJobRuntime\tSend\tReceive\tExitval\tSignal\tCommand\n";

/// GNU parallel's Host for a job run on this machine.
pub(super) const LOCAL_HOST: &str = ":";

pub(super) struct Joblog {
    file: BufWriter<File>,
}

impl Joblog {
    /// Creates (or empties) the log and writes its header; with `append`
    /// (parallel's `--joblog +FILE`), adds to it as it is, header and all.
    pub(super) fn open(path: &Path, append: bool) -> std::io::Result<Self> {
        let mut options = OpenOptions::new();
        if append {
            options.append(true).create(true);
        } else {
            options.write(true).create(true).truncate(true);
        }
        let file = options
            .open(path)
            .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
        let mut file = BufWriter::new(file);
        if !append {
            file.write_all(HEADER)?;
        }
        Ok(Self { file })
    }

    /// The row of an item's last run. Seq counts from 1, as in parallel.
    pub(super) fn row(
        &mut self,
        host: &str,
        template: &str,
        item: &[u8],
        end: &TaskEnd,
    ) -> std::io::Result<()> {
        let (exitval, signal) = exit_and_signal(end);
        // Newlines would break the row; parallel writes them as NUL and
        // turns them back when it reads the log.
        let command = substitute(template, item).replace('\n', "\0");
        writeln!(
            self.file,
            "{}\t{host}\t{:.3}\t{:10.3}\t0\t{}\t{exitval}\t{signal}\t{command}",
            end.seq + 1,
            end.start_ms as f64 / 1000.0,
            end.runtime_ms as f64 / 1000.0,
            end.stdout.len(),
        )
    }

    pub(super) fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

/// Exitval and Signal as parallel reports them: a task killed by signal N
/// exited 0 with signal N, and one stopped by `--timeout` has -1 and
/// SIGTERM. A shell shows death by signal N only as status 128+N, so that
/// is what pcl reads as a signal (a task that itself exits 128+N looks
/// the same).
fn exit_and_signal(end: &TaskEnd) -> (i32, i32) {
    let status = end.end.status;
    match end.end.outcome {
        ExecOutcome::TimedOut => (-1, libc::SIGTERM),
        _ if (129..=128 + 64).contains(&status) => (0, status - 128),
        _ => (status, 0),
    }
}
