//! `--joblog`: one row per finished run, in GNU parallel's format, so the
//! tools that read parallel's joblogs read pcl's.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use crate::protocol::engine::TaskEnd;
use crate::quoting::substitute;

pub(super) struct Joblog {
    file: BufWriter<File>,
}

impl Joblog {
    pub(super) fn create(path: &Path) -> std::io::Result<Self> {
        let file = File::create(path)
            .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
        let mut file = BufWriter::new(file);
        file.write_all(
            b"Seq\tHost\tStarttime\tJobRuntime\tSend\tReceive\tExitval\tSignal\tCommand\n",
        )?;
        Ok(Self { file })
    }

    /// Seq counts from 1, as in parallel. A shell reports death by signal
    /// N as status 128+N, which is all pcl can see of it.
    pub(super) fn row(
        &mut self,
        host: &str,
        template: &str,
        item: &[u8],
        end: &TaskEnd,
    ) -> std::io::Result<()> {
        let status = end.end.status;
        let signal = if (129..=128 + 64).contains(&status) {
            status - 128
        } else {
            0
        };
        let command = substitute(template, item).replace(['\t', '\n'], " ");
        writeln!(
            self.file,
            "{}\t{host}\t{:.3}\t{:.3}\t0\t{}\t{status}\t{signal}\t{command}",
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
