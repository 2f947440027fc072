use thiserror::Error;

use crate::config::AllocationError;

/// Why pcl could not get or use a Slurm allocation. Slurm's own words are
/// kept whole; the message ends with what to do.
#[derive(Debug, Error)]
pub(crate) enum SlurmError {
    #[error(
        "not inside a Slurm allocation (SLURM_JOB_ID is not set)\nwhat to do: run `pcl up \
         --slurm` inside `salloc` or a batch script (`sbatch`), or give pcl a cluster file \
         with a [slurm] table so that it asks Slurm for nodes itself"
    )]
    NoAllocation,
    #[error(
        "`{0}` is not on PATH\nwhat to do: pcl starts engines on Slurm nodes with srun (and \
         asks for nodes with salloc); load Slurm (e.g. `module load slurm`) or add its bin \
         directory to PATH"
    )]
    NotOnPath(&'static str),
    #[error(
        "SLURM_JOB_ID is {0} but SLURM_JOB_NODELIST is not set\nwhat to do: run pcl in the \
         allocation's own shell or batch script, where Slurm sets both"
    )]
    NoNodeList(String),
    #[error(transparent)]
    Allocation(#[from] AllocationError),
    #[error("Slurm refused the allocation:\n{said}\nwhat to do: {hint}")]
    Refused { said: String, hint: String },
    #[error("stopped waiting for Slurm; the request for job {0} was withdrawn")]
    Withdrawn(String),
    #[error("cannot run `{program}`: {source}")]
    Spawn {
        program: &'static str,
        source: std::io::Error,
    },
    #[error("I/O with salloc failed: {0}")]
    Io(#[from] std::io::Error),
}
