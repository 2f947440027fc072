//! `pcl up` with Slurm nodes: put in the nodes of the allocation pcl runs
//! in, or show the wait for the one the daemon asks Slurm for.

use std::time::{Duration, Instant};

use anyhow::bail;
use indicatif::{ProgressBar, ProgressStyle};
use tokio::signal::unix::{Signal, SignalKind, signal};

use crate::config::Cluster;
use crate::launcher::slurm::{SlurmError, current_allocation, job_name, on_path, query};

/// How often the queue is asked about a pending allocation.
const POLL_EVERY: Duration = Duration::from_secs(1);
/// How often the caller looks for the daemon's socket meanwhile.
const PAUSE: Duration = Duration::from_millis(100);

/// The cluster with the nodes of the current allocation in place, or
/// as it is when the daemon is to ask Slurm for nodes (a `[slurm]`
/// table; `--slurm` prefers the allocation pcl already runs in).
pub(super) fn place_current_allocation(
    cluster: Cluster,
    prefer_current: bool,
) -> anyhow::Result<Cluster> {
    let Some(nodes) = &cluster.slurm else {
        if prefer_current {
            bail!(
                "--slurm with a cluster file needs Slurm nodes in it: add a [slurm] table, or a \
                 [[hosts]] table with launcher = \"slurm\""
            );
        }
        return Ok(cluster);
    };
    let asks = nodes.request.is_some();
    match current_allocation()? {
        Some(allocation) if prefer_current || !asks => {
            on_path("srun")?;
            Ok(cluster.place_allocation(&allocation)?)
        }
        _ if asks => {
            on_path("salloc")?;
            on_path("srun")?;
            Ok(cluster)
        }
        _ => Err(SlurmError::NoAllocation.into()),
    }
}

/// While the daemon waits for its allocation: on a terminal, a line
/// with the job id, its state and Slurm's reason (`Priority`,
/// `Resources`); Ctrl-C gives up.
pub(super) struct AllocationWait {
    name: String,
    bar: Option<ProgressBar>,
    last_poll: Option<Instant>,
    interrupt: Signal,
}

impl AllocationWait {
    pub(super) fn new(session: &str, on_terminal: bool) -> std::io::Result<AllocationWait> {
        let bar = on_terminal.then(|| {
            let bar = ProgressBar::new_spinner();
            bar.set_style(
                ProgressStyle::with_template("{spinner} {msg} [{elapsed}]")
                    .expect("valid template"),
            );
            bar.set_message("asking Slurm for nodes");
            bar.enable_steady_tick(Duration::from_millis(100));
            bar
        });
        Ok(AllocationWait {
            name: job_name(session),
            bar,
            last_poll: None,
            interrupt: signal(SignalKind::interrupt())?,
        })
    }

    /// Wait a moment, telling what Slurm says now and then; `false` once
    /// the user pressed Ctrl-C.
    pub(super) async fn pause(&mut self) -> bool {
        let due = self.last_poll.is_none_or(|at| at.elapsed() >= POLL_EVERY);
        if let Some(bar) = self.bar.as_ref().filter(|_| due) {
            self.last_poll = Some(Instant::now());
            if let Some(job) = query::queued(&self.name).await {
                let reason = job.reason.map(|r| format!(" ({r})")).unwrap_or_default();
                bar.set_message(format!(
                    "waiting for Slurm: job {} {}{reason}",
                    job.job, job.state
                ));
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(PAUSE) => true,
            _ = self.interrupt.recv() => false,
        }
    }

    /// Take the line off the terminal before something else is said.
    pub(super) fn clear(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

impl Drop for AllocationWait {
    fn drop(&mut self) {
        // Past the wait, Ctrl-C ends `pcl up` as it always does (the
        // session goes on starting; `pcl down` stops it): tokio's handler
        // would otherwise swallow it for the rest of the process.
        // SAFETY: restoring the default disposition of SIGINT.
        unsafe {
            libc::signal(libc::SIGINT, libc::SIG_DFL);
        }
    }
}
