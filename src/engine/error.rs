use thiserror::Error;

#[derive(Debug, Error)]
pub enum EngineError {
    #[error("cannot start shell `{program}`: {source}")]
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
