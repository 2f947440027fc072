//! The requests of the verbs that carry more than a target list, and what
//! a map sends back per item: the CLI builds them, the daemon runs them.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;

/// `pcl px`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PxRequest {
    pub targets: String,
    pub command: String,
    pub timeout_ms: Option<u64>,
    /// Every engine's output as it comes, engines interleaved (a terminal,
    /// `--stream`); otherwise in engine order, the first unfinished engine's
    /// as it comes.
    pub stream: bool,
}

/// `pcl map`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MapRequest {
    pub targets: String,
    pub command: String,
    pub input: MapInput,
    pub unordered: bool,
    /// Runs per item at most (GNU parallel's `--retries`); 0 and 1 mean once.
    pub retries: u32,
    pub timeout_ms: Option<u64>,
    /// Absolute path of a GNU parallel style joblog to write.
    pub joblog: Option<PathBuf>,
    /// Add to the joblog rather than start it afresh (`--joblog +FILE`).
    pub joblog_append: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum MapInput {
    Items(Vec<ByteBuf>),
    /// Lines of a file the daemon reads itself (same user, same machine);
    /// `remove`: a spool file the CLI made for an async map from stdin.
    File {
        path: PathBuf,
        remove: bool,
    },
    /// Lines follow the request on the socket, as frames of
    /// `Vec<ByteBuf>`; an empty frame ends them.
    Stream,
}

/// One finished item, sent to the CLI.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MapTask {
    pub seq: u64,
    pub item: ByteBuf,
    pub engine: u32,
    pub host: String,
    pub status: i32,
    pub note: Option<String>,
    pub stdout: ByteBuf,
    pub stderr: ByteBuf,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MapEnd {
    pub done: u64,
    pub failed: u64,
    /// Items that never ran (abort, or no engine left).
    pub unrun: u64,
    pub aborted: bool,
}

/// `pcl restart`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RestartRequest {
    pub targets: String,
}
