use thiserror::Error;

#[derive(Debug, Error)]
pub(crate) enum LaunchError {
    #[error("cannot run `{program}`: {source}")]
    Spawn {
        program: String,
        source: std::io::Error,
    },
    #[error("cannot resolve host `{host}`: {reason}")]
    Resolve { host: String, reason: String },
    #[error("{0}")]
    Exited(String),
    /// ssh refused to go on without a person to answer it.
    #[error("{said}\nwhat to do: {hint}")]
    NeedsUser { said: String, hint: String },
    #[error("no handshake within {0} s (is `pcl engine` runnable there? see the session log)")]
    HandshakeTimeout(u64),
    #[error("unexpected handshake line `{0}`")]
    BadHandshake(String),
    #[error(
        "host is `{remote}` but this pcl is built for `{local}`: install pcl there and set engine_path"
    )]
    Platform { remote: String, local: String },
    /// srun could not start the node's step; the hint says what to change.
    #[error("{said}\nwhat to do: {hint}")]
    StepRefused { said: String, hint: String },
    #[error(transparent)]
    Slurm(#[from] super::slurm::SlurmError),
    #[error("I/O with the engine host failed: {0}")]
    Io(#[from] std::io::Error),
}
