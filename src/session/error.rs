use thiserror::Error;

#[derive(Debug, Error)]
pub(crate) enum SessionError {
    #[error("invalid session name `{0}`: use letters, digits, `_`, `-` and `.`")]
    BadName(String),
    #[error("no session '{0}': run pcl up")]
    NoSession(String),
    #[error(
        "several sessions are running ({0}) and none is 'default': pick one with \
         --session NAME or PCL_SESSION=NAME"
    )]
    SeveralRunning(String),
    #[error("session '{0}' belongs to another user: each user runs their own sessions")]
    OtherUser(String),
    #[error("session '{0}' is already running: pcl down first, or pick another --session")]
    AlreadyRunning(String),
    #[error("session '{0}' is already starting: wait for that pcl up, or pick another --session")]
    AlreadyStarting(String),
    #[error("{path} is not private to this user (owner or mode): remove it and retry")]
    NotPrivate { path: String },
    #[error("session '{0}' did not start: {1}")]
    DaemonFailed(String, String),
    #[error("invalid targets `{0}`: {1}")]
    BadTargets(String, String),
    #[error("the session closed the connection before answering")]
    Closed,
    #[error(transparent)]
    Transport(#[from] crate::transport::TransportError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Data(#[from] crate::protocol::data::DataError),
    #[error(transparent)]
    Slurm(#[from] crate::launcher::slurm::SlurmError),
    /// A request that cannot be carried out as asked (a data request, or
    /// any request from a client the daemon will not serve); says why.
    #[error("{0}")]
    Refused(String),
}
