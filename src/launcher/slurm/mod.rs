//! Engine hosts on the nodes of a Slurm allocation. Each node gets its own
//! one-task job step (`srun --nodes=1 --ntasks=1 --nodelist=NODE
//! --overlap`), so each engine host has a stdin and a stdout of its own
//! for the handshake, exactly as over ssh: one step across all nodes
//! would broadcast one stdin to every task and merge their stdouts. The
//! step is the tether: the engine host ends when srun's stdin closes, and
//! Slurm ends the step when srun dies. A step that Slurm ends (scancel,
//! the time limit, a failed node) takes only that node's engines, and
//! `why_step_ended` says why in Slurm's words.

mod allocation;
mod error;
pub(crate) mod query;

use std::net::IpAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tokio::process::Command;

pub(crate) use allocation::HeldAllocation;
pub(crate) use error::SlurmError;

use super::bootstrap::remote_script;
use super::{LaunchError, Launcher, Spawned};
use crate::config::{Allocation, HostSpec};

/// Looks at a completing job for up to 3 s.
const JOB_END_POLLS: usize = 15;

/// The job name pcl gives its own allocation and steps, so that `squeue`
/// shows whose they are.
pub(crate) fn job_name(session: &str) -> String {
    format!("pcl-{session}")
}

/// The allocation this process runs in, from Slurm's variables; `None`
/// outside one.
pub(crate) fn current_allocation() -> Result<Option<Allocation>, SlurmError> {
    let var = |names: &[&str]| names.iter().find_map(|name| std::env::var(name).ok());
    let Some(job) = var(&["SLURM_JOB_ID", "SLURM_JOBID"]) else {
        return Ok(None);
    };
    let nodes = var(&["SLURM_JOB_NODELIST", "SLURM_NODELIST"])
        .ok_or(SlurmError::NoNodeList(job.clone()))?;
    let tasks = var(&["SLURM_TASKS_PER_NODE"]);
    Ok(Some(Allocation::parse(&job, &nodes, tasks.as_deref())?))
}

/// `program` as PATH finds it, or the error that says what to do.
pub(crate) fn on_path(program: &'static str) -> Result<PathBuf, SlurmError> {
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join(program))
        .find(|path| path.is_file())
        .ok_or(SlurmError::NotOnPath(program))
}

/// Engine hosts started with `srun` inside the host's allocation.
pub(crate) struct SlurmLauncher;

impl SlurmLauncher {
    fn srun(host: &HostSpec, job: &str, session: &str, overlap: bool) -> Command {
        let mut srun = Command::new("srun");
        srun.arg(format!("--jobid={job}"))
            .arg(format!("--job-name={}", job_name(session)))
            .arg(format!("--nodelist={}", host.host))
            // One task on one node, whatever SLURM_NTASKS and the like
            // in the environment say for the user's own steps.
            .args(["--nodes=1", "--ntasks=1", "--ntasks-per-node=1"])
            // The engines' shells are not MPI ranks.
            .arg("--mpi=none")
            // A batch script's `--export=NONE` would leave the engine
            // host without HOME and PATH.
            .arg("--export=ALL");
        if overlap {
            srun.arg("--overlap");
        }
        srun
    }

    /// Where the daemon reaches the node: Slurm's `NodeAddr` for it, else
    /// the node name as the resolver knows it.
    async fn address(host: &HostSpec) -> Result<IpAddr, LaunchError> {
        let from_slurm = query::node_address(&host.host).await;
        let known = from_slurm.is_some();
        let name = from_slurm.unwrap_or_else(|| host.host.clone());
        let resolve_error = |reason: String| LaunchError::Resolve {
            host: host.host.clone(),
            reason: if known {
                reason
            } else {
                format!("Slurm knows no such node (scontrol show node), and {reason}")
            },
        };
        tokio::net::lookup_host((name.as_str(), 0))
            .await
            .map_err(|e| resolve_error(e.to_string()))?
            .next()
            .map(|addr| addr.ip())
            .ok_or_else(|| resolve_error("no address".into()))
    }
}

impl Launcher for SlurmLauncher {
    async fn spawn(&self, host: &HostSpec, session: &str) -> Result<Spawned, LaunchError> {
        let Some(job) = &host.slurm_job else {
            return Err(LaunchError::Slurm(SlurmError::NoAllocation));
        };
        let address = Ok(Self::address(host).await?);
        let script = remote_script(host.engine_path.as_deref(), session)?;
        let overlap = query::overlap_supported().await;
        let child = Self::srun(host, job, session, overlap)
            .args(["sh", "-c", &script])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|source| match source.kind() {
                std::io::ErrorKind::NotFound => LaunchError::Slurm(SlurmError::NotOnPath("srun")),
                _ => LaunchError::Spawn {
                    program: "srun".into(),
                    source,
                },
            })?;
        Ok(Spawned {
            child,
            address,
            bootstrap: true,
        })
    }
}

/// What to do about a step srun could not start, from its words.
pub(crate) fn srun_hint(said: &str) -> Option<String> {
    let said = said.to_ascii_lowercase();
    if said.contains("invalid job id") || said.contains("already completed") {
        Some(
            "the allocation has ended (or is not yours): start a new one (salloc, sbatch) and \
             run pcl up inside it"
                .into(),
        )
    } else if said.contains("requested node configuration is not available")
        || said.contains("invalid node name")
    {
        Some(
            "name only nodes of the allocation (`squeue -j $SLURM_JOB_ID -o %N` lists them), or \
             leave host out of the launcher = \"slurm\" table for all of them"
                .into(),
        )
    } else {
        None
    }
}

/// Why a node's step ended, in Slurm's words: srun's and slurmstepd's
/// error lines (`*** STEP 12.1 ON node2 CANCELLED AT ... ***`, `Node
/// failure on node2`) and, once the whole job has ended, its state and
/// reason (`TIMEOUT`, `TimeLimit`).
pub(crate) async fn why_step_ended(job: &str, stderr_tail: &[String], how: &str) -> String {
    let said: Vec<&str> = stderr_tail
        .iter()
        .map(String::as_str)
        .filter(|line| {
            (line.starts_with("srun:") || line.starts_with("slurmstepd")) && line.contains("error")
        })
        .collect();
    let mut why = if said.is_empty() {
        format!("Slurm step ended (srun {how})")
    } else {
        format!("Slurm step ended: {} (srun {how})", said.join("; "))
    };
    if let Some(state) = job_end(job).await {
        why.push_str(&format!("; job {job} is {}", state.state));
        if let Some(reason) = state.reason {
            why.push_str(&format!(" ({reason})"));
        }
    }
    why
}

/// How a job ended, if it has: a job still running only lost one step.
/// A cancelled or timed-out job completes for a moment before Slurm
/// says which it was.
async fn job_end(job: &str) -> Option<query::JobState> {
    for _ in 0..JOB_END_POLLS {
        let state = query::job_state(job).await?;
        match state.state.as_str() {
            "COMPLETING" => tokio::time::sleep(Duration::from_millis(200)).await,
            "RUNNING" | "CONFIGURING" | "SUSPENDED" => return None,
            _ => return Some(state),
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn srun_errors_get_hints() {
        let hint = srun_hint(
            "srun: error: Unable to confirm allocation for job 99: Invalid job id specified",
        )
        .unwrap();
        assert!(hint.contains("has ended"), "{hint}");
        let hint = srun_hint(
            "srun: error: Unable to create step for job 2: Requested node configuration is \
             not available",
        )
        .unwrap();
        assert!(hint.contains("squeue"), "{hint}");
        assert_eq!(srun_hint("srun: error: something else"), None);
    }

    #[test]
    fn the_step_gets_one_task_on_its_node_with_every_setting_explicit() {
        let host = HostSpec {
            slurm_job: Some("12".into()),
            ..HostSpec::new("node07")
        };
        let srun = SlurmLauncher::srun(&host, "12", "lab", true);
        let args: Vec<_> = srun
            .as_std()
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        for expected in [
            "--jobid=12",
            "--job-name=pcl-lab",
            "--nodelist=node07",
            "--nodes=1",
            "--ntasks=1",
            "--export=ALL",
            "--mpi=none",
            "--overlap",
        ] {
            assert!(args.iter().any(|a| a == expected), "{expected} in {args:?}");
        }
    }
}
