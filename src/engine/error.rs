use thiserror::Error;

#[derive(Debug, Error)]
pub(crate) enum EngineError {
    #[error("cannot start shell `{program}`: {source}{}", out_of(source))]
    Spawn {
        program: String,
        source: std::io::Error,
    },
    #[error("setup failed with status {status}: {stderr}")]
    Setup { status: i32, stderr: String },
    #[error("cannot use workdir {path}: {source}")]
    Workdir {
        path: String,
        source: std::io::Error,
    },
    #[error("shell I/O failed: {0}")]
    Io(#[from] std::io::Error),
    #[error("bad configuration on stdin: {0}")]
    Config(String),
    #[error("the command contains a NUL byte, which no shell can hold")]
    NulInCommand,
    #[error(transparent)]
    Transport(#[from] crate::transport::TransportError),
}

/// What a failed start of a shell says about the host, and what to do.
fn out_of(error: &std::io::Error) -> &'static str {
    match error.raw_os_error() {
        Some(libc::EAGAIN) => {
            "; this host is out of processes for this user: lower `engines`, or raise the limit (`ulimit -u`)"
        }
        Some(libc::ENOMEM) => "; this host is out of memory: lower `engines`",
        Some(libc::EMFILE | libc::ENFILE) => {
            "; this host is out of file descriptors: lower `engines`, or raise the limit (`ulimit -n`)"
        }
        _ => "",
    }
}
