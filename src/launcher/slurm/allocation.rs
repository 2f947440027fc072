//! An allocation pcl asks Slurm for itself (the `[slurm]` table), held
//! for exactly as long as the session: `salloc` runs a small holder
//! command here that prints the job's variables and then waits for its
//! stdin, a pipe from the daemon, to close. `pcl down` closes it, and so
//! does the daemon's death, however it dies: salloc then gives the
//! allocation back and nothing of the session stays in the queue.

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};

use super::error::SlurmError;
use super::{job_name, query, srun_hint};
use crate::config::{Allocation, SlurmRequest};

/// First word of the holder's one line of output.
const HOLDER_PREFIX: &str = "PCL-SLURM";
/// Runs where the daemon runs (salloc starts it locally), inside the
/// allocation's environment.
const HOLDER: &str = "printf 'PCL-SLURM %s %s %s\\n' \"$SLURM_JOB_ID\" \"$SLURM_JOB_NODELIST\" \
                      \"${SLURM_TASKS_PER_NODE:-}\"; exec cat >/dev/null";
/// How long salloc may take to give the allocation back.
const RELEASE_WAIT: Duration = Duration::from_secs(10);

/// A granted allocation, held until `release` (or the daemon's end).
pub(crate) struct HeldAllocation {
    salloc: Child,
    /// The holder's stdin: closing it ends the allocation.
    holder: Option<ChildStdin>,
    pub allocation: Allocation,
}

/// salloc's arguments for `request`.
fn salloc_args(request: &SlurmRequest, session: &str) -> Vec<String> {
    let mut args = vec![format!("--job-name={}", job_name(session))];
    let mut option = |name: &str, value: Option<String>| {
        if let Some(value) = value {
            args.push(format!("--{name}={value}"));
        }
    };
    option("nodes", request.nodes.map(|n| n.to_string()));
    option(
        "ntasks-per-node",
        request.tasks_per_node.map(|n| n.to_string()),
    );
    option("time", request.time.clone());
    option("partition", request.partition.clone());
    option("account", request.account.clone());
    option("qos", request.qos.clone());
    // Last, so that for an option given twice the user's value wins.
    args.extend(request.options.iter().cloned());
    args.extend(["--".into(), "sh".into(), "-c".into(), HOLDER.into()]);
    args
}

impl HeldAllocation {
    /// Ask Slurm and wait, as long as it takes, for the allocation to be
    /// granted, unless `withdraw` completes first: then the request is
    /// taken back (salloc cancels a pending job on SIGTERM). salloc's
    /// messages go to the daemon's log as they come.
    pub(crate) async fn request(
        request: &SlurmRequest,
        session: &str,
        withdraw: impl Future<Output = ()>,
    ) -> Result<HeldAllocation, SlurmError> {
        let mut salloc = Command::new("salloc")
            .args(salloc_args(request, session))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|source| match source.kind() {
                std::io::ErrorKind::NotFound => SlurmError::NotOnPath("salloc"),
                _ => SlurmError::Spawn {
                    program: "salloc",
                    source,
                },
            })?;
        let holder = salloc.stdin.take();
        let stdout = salloc.stdout.take().expect("piped stdout");
        let stderr = salloc.stderr.take().expect("piped stderr");
        // salloc's words, logged as they come and kept for a refusal.
        let (said_tx, mut said) = tokio::sync::mpsc::unbounded_channel::<String>();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                eprintln!("[slurm] {line}");
                let _ = said_tx.send(line);
            }
        });

        let granted = async {
            let mut lines = BufReader::new(stdout).lines();
            while let Some(line) = lines.next_line().await? {
                if let Some(vars) = line.strip_prefix(HOLDER_PREFIX) {
                    let mut vars = vars.split_whitespace();
                    let (job, nodes, tasks) = (vars.next(), vars.next(), vars.next());
                    return Ok(Some(Allocation::parse(
                        job.unwrap_or_default(),
                        nodes.unwrap_or_default(),
                        tasks,
                    )?));
                }
            }
            Ok::<_, SlurmError>(None)
        };
        let outcome = tokio::select! {
            outcome = granted => outcome,
            () = withdraw => {
                let job = pending_job(&mut said).unwrap_or_else(|| "(not yet numbered)".into());
                stop(&mut salloc).await;
                return Err(SlurmError::Withdrawn(job));
            }
        };
        match outcome {
            Ok(Some(allocation)) => Ok(HeldAllocation {
                salloc,
                holder,
                allocation,
            }),
            Ok(None) | Err(SlurmError::Io(_)) => {
                // salloc ended without the holder's line: refused.
                let _ = tokio::time::timeout(RELEASE_WAIT, salloc.wait()).await;
                // Every line, up to the end of salloc's stderr.
                let mut lines = Vec::new();
                let all = async {
                    while let Some(line) = said.recv().await {
                        lines.push(line);
                    }
                };
                let _ = tokio::time::timeout(RELEASE_WAIT, all).await;
                let said = lines.join("\n");
                Err(SlurmError::Refused {
                    hint: refusal_hint(&said),
                    said: if said.is_empty() {
                        "salloc ended without an allocation".into()
                    } else {
                        said
                    },
                })
            }
            Err(e) => {
                stop(&mut salloc).await;
                Err(e)
            }
        }
    }

    /// Give the allocation back and wait until Slurm no longer lists the
    /// job, so that nothing of the session is left in the queue.
    pub(crate) async fn release(mut self) {
        drop(self.holder.take());
        if tokio::time::timeout(RELEASE_WAIT, self.salloc.wait())
            .await
            .is_err()
        {
            stop(&mut self.salloc).await;
        }
        let deadline = tokio::time::Instant::now() + RELEASE_WAIT;
        while query::listed(&self.allocation.job).await && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// The job id salloc announced (`Pending job allocation N`), if it did.
fn pending_job(said: &mut tokio::sync::mpsc::UnboundedReceiver<String>) -> Option<String> {
    let mut job = None;
    while let Ok(line) = said.try_recv() {
        if let Some(rest) = line.split("job allocation ").nth(1) {
            job = rest.split_whitespace().next().map(str::to_owned);
        }
    }
    job
}

/// SIGTERM, which makes salloc withdraw a pending request or give a
/// granted allocation back; SIGKILL if it does not end.
async fn stop(salloc: &mut Child) {
    if let Some(pid) = salloc.id() {
        // SAFETY: signalling our own child, which has not been reaped.
        unsafe {
            libc::kill(pid as i32, libc::SIGTERM);
        }
    }
    if tokio::time::timeout(RELEASE_WAIT, salloc.wait())
        .await
        .is_err()
    {
        let _ = salloc.kill().await;
    }
}

/// What to do about a refusal, from salloc's words.
fn refusal_hint(said: &str) -> String {
    let said = said.to_ascii_lowercase();
    if said.contains("partition") {
        "name a partition that `sinfo -s` lists (or leave partition out for the default)".into()
    } else if said.contains("account") || said.contains("qos") || said.contains("association") {
        "use an account and QOS you may submit to (`sacctmgr show assoc user=$USER`), or \
         leave them out for your defaults"
            .into()
    } else if said.contains("time limit") {
        "ask for less time, or pick a partition with a longer limit (`sinfo -s`)".into()
    } else if said.contains("node") || said.contains("cpu") || said.contains("task") {
        "ask for fewer nodes or tasks per node than the partition has (`sinfo -N -l`)".into()
    } else {
        srun_hint(&said).unwrap_or_else(|| {
            "fix the [slurm] table (nodes, tasks_per_node, time, partition, account, qos, \
             options) to fit the cluster and your limits"
                .into()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_request_becomes_salloc_options_with_the_users_last() {
        let request = SlurmRequest {
            nodes: Some(3),
            tasks_per_node: Some(2),
            time: Some("30".into()),
            partition: Some("debug".into()),
            account: None,
            qos: Some("short".into()),
            options: vec!["--exclusive".into()],
        };
        assert_eq!(
            salloc_args(&request, "lab"),
            [
                "--job-name=pcl-lab",
                "--nodes=3",
                "--ntasks-per-node=2",
                "--time=30",
                "--partition=debug",
                "--qos=short",
                "--exclusive",
                "--",
                "sh",
                "-c",
                HOLDER,
            ]
        );
    }

    #[test]
    fn refusals_say_what_to_change() {
        let hint = refusal_hint(
            "salloc: error: invalid partition specified: nosuch\n\
             salloc: error: Job submit/allocate failed: Invalid partition name specified",
        );
        assert!(hint.contains("sinfo -s"), "{hint}");
        let hint = refusal_hint("salloc: error: Job submit/allocate failed: Invalid account");
        assert!(hint.contains("sacctmgr"), "{hint}");
    }
}
