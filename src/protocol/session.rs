//! CLI <-> daemon messages: one request per connection, answered by a
//! stream of replies.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::data::DataRequest;
use super::verbs::{MapEnd, MapRequest, MapTask, PxRequest, RestartRequest};

/// How far `pcl up` is: hosts settled (up or failed) of all.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LaunchProgress {
    pub settled: usize,
    pub total: usize,
    /// Every host settled, and which share a workdir is known.
    pub ready: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Request {
    Up,
    Down,
    Ids,
    Status,
    Px(PxRequest),
    Restart(RestartRequest),
    Map(MapRequest),
    /// Run `request` as a background job; answered by `Job(id)` at once.
    /// `argv` is the command line, kept so `pcl result` renders the
    /// replies exactly as the sync call would have.
    Async {
        argv: Vec<String>,
        request: Box<Request>,
    },
    Jobs,
    /// Wait for one job, or for every running job.
    Wait(Option<u64>),
    /// Replay a job's replies (after waiting for it to finish).
    Result(u64),
    Abort(u64),
    Interrupt {
        targets: String,
    },
    Data(DataRequest),
    /// Part of the CLI's stdin, after a request whose source is `Stdin`.
    Chunk(#[serde(with = "serde_bytes")] Vec<u8>),
    /// The end of the CLI's stdin.
    Eof,
}

impl Request {
    /// Whether the daemon runs this request as a job (abortable, and
    /// `--async`-able); the session's own bookkeeping verbs are not.
    pub fn is_job(&self) -> bool {
        !matches!(
            self,
            Request::Up
                | Request::Down
                | Request::Ids
                | Request::Status
                | Request::Async { .. }
                | Request::Jobs
                | Request::Wait(_)
                | Request::Result(_)
                | Request::Abort(_)
                | Request::Interrupt { .. }
                | Request::Restart(_)
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Stream {
    Stdout,
    Stderr,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Reply {
    Progress(LaunchProgress),
    Up(UpReport),
    Ids(Vec<u32>),
    Status(StatusReport),
    /// Part of one engine's output. Engines come in id order; each
    /// engine's stdout before its stderr, then its `EngineDone`.
    Output {
        id: u32,
        stream: Stream,
        #[serde(with = "serde_bytes")]
        data: Vec<u8>,
    },
    EngineDone(EngineDone),
    Done,
    Error(String),
    /// The id of the job this call runs as; first reply of every job.
    Job(u64),
    /// First reply of `Result`: the job's command line, then its replies.
    JobArgv(Vec<String>),
    Jobs(Vec<JobInfo>),
    /// A map's item count, when known before it starts.
    MapTotal(u64),
    Task(MapTask),
    MapEnd(MapEnd),
    /// Part of the value of variable `name` on engine `id` (`pull`);
    /// several in a row for one value are concatenated.
    Value {
        id: u32,
        name: String,
        #[serde(with = "serde_bytes")]
        data: Vec<u8>,
    },
    /// `pull --file`: engine `id`'s copy goes to `path`, an absolute path
    /// resolved when the call was made. An async job keeps the bytes at
    /// `kept` (in the session directory) for `pcl result` to copy there.
    /// `from` is the engine whose file it is: another than `id` when the
    /// two share a workdir and the file was fetched once, from `from`.
    Pulled {
        id: u32,
        path: PathBuf,
        kept: Option<PathBuf>,
        from: u32,
    },
    /// `push --file`: engine `id`'s copy was written by engine `by` (one
    /// copy per shared workdir); comes before `id`'s `EngineDone`.
    WrittenBy {
        id: u32,
        by: u32,
    },
    /// Something pcl has to say about the call as a whole, for stderr.
    Remark(String),
    /// Bytes moved so far by a transfer, out of `total` when known. A
    /// push to several hosts counts its slowest host in `done`, and every
    /// host's bytes together in `all`.
    Transfer {
        done: u64,
        total: Option<u64>,
        all: Option<u64>,
    },
    /// A px engine's command ended; its `EngineDone` follows in its turn.
    Finished(u32),
    /// The engines a px runs on, first of its replies.
    Targets(Vec<u32>),
}

/// Where an engine is, as `pcl status` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EngineState {
    Starting,
    Idle,
    Busy,
    Dead,
}

/// Where a connected host's traffic travels, as `pcl status` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Route {
    /// QUIC over UDP, straight to the host.
    Quic,
    /// QUIC's datagrams over the ssh channel the host was started on.
    Ssh,
}

impl Route {
    pub fn name(self) -> &'static str {
        match self {
            Route::Quic => "quic",
            Route::Ssh => "ssh",
        }
    }
}

/// Where an async job is, as `pcl jobs` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    Running,
    Done,
    Aborted,
}

impl EngineState {
    pub fn name(self) -> &'static str {
        match self {
            EngineState::Starting => "starting",
            EngineState::Idle => "idle",
            EngineState::Busy => "busy",
            EngineState::Dead => "dead",
        }
    }
}

impl JobState {
    pub fn name(self) -> &'static str {
        match self {
            JobState::Running => "running",
            JobState::Done => "done",
            JobState::Aborted => "aborted",
        }
    }
}

/// Padded like a string, for tables (`{:<6}`).
impl std::fmt::Display for EngineState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.name())
    }
}

impl std::fmt::Display for JobState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.name())
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JobInfo {
    pub id: u64,
    pub verb: String,
    pub command: String,
    pub state: JobState,
    pub engines: Vec<u32>,
    pub elapsed_s: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EngineStatus {
    pub id: u32,
    pub host: String,
    pub state: EngineState,
    pub job: Option<String>,
    /// Why a dead engine is dead.
    pub reason: Option<String>,
    /// The engines sharing this one's workdir, itself included, folded
    /// (`0-3`): the same value for every engine of the group. `None`
    /// until its host has been probed.
    pub workdir_group: Option<String>,
    /// How the daemon reaches the engine's host; `None` while it is not
    /// connected.
    pub transport: Option<Route>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StatusReport {
    pub session: String,
    /// The Slurm job the engines run in, when they run on Slurm nodes.
    pub slurm_job: Option<String>,
    pub engines: Vec<EngineStatus>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UpReport {
    pub status: StatusReport,
    /// (host, reason) for every host that did not come up.
    pub failures: Vec<(String, String)>,
    /// (host, note) for what a user should know of a host that came up:
    /// the route `transport = "auto"` chose when it was not UDP.
    pub notes: Vec<(String, String)>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EngineDone {
    pub id: u32,
    pub host: String,
    pub status: i32,
    /// What pcl itself has to say about this engine's run: a timeout, a
    /// replaced shell, a dead engine.
    pub note: Option<String>,
}
