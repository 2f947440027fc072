//! Daemon <-> engine host messages.

use serde::{Deserialize, Serialize};

use super::data::{Digest, EngineData};

/// First token of the line an engine host prints once it listens.
pub const HANDSHAKE_PREFIX: &str = "PCL-ENGINE/1";

/// The QUIC close code of `pcl down`: the engine host stops at once,
/// without waiting for the end of its tether to get through (behind a
/// bastion, or over a link just back from an outage, ssh may take its
/// time).
pub const SESSION_DOWN: u32 = 1;

/// Sent by the daemon as one JSON line on the engine host's stdin, never on
/// its command line. Nothing in it is secret: the engine learns only the
/// fingerprint of the certificate the daemon will present, and the
/// daemon's private key never leaves the daemon.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EngineHostConfig {
    pub session: String,
    pub client_fingerprint: String,
    /// Host name as the cluster file names it (`PCL_HOST`).
    pub host: String,
    pub first_id: u32,
    pub engines: u32,
    pub engine_count: u32,
    pub workdir: Option<String>,
    pub shell: String,
    pub setup: Option<String>,
    /// With no daemon connected for this long, the engine host stops
    /// everything and exits: nothing outlives a session that is gone.
    pub reconnect_grace_secs: u32,
    /// Whether to listen on UDP; the ssh channel it was started on is
    /// served either way.
    pub listen_udp: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum EngineRequest {
    /// Wait until every engine's shell is ready (setup done); answered by
    /// `EngineReply::Started`.
    Start,
    /// Run a user command in the shells of engines `ids` of this host, all
    /// at once, on one stream (a stream per engine cost the daemon and
    /// the engine host about as much as the command itself); answered by
    /// `Exec` replies, each engine's output chunks then its end.
    Exec {
        ids: Vec<u32>,
        command: String,
        timeout_ms: Option<u64>,
    },
    /// SIGINT the command running in engine `id`'s shell, without waiting
    /// for its lock. With `cancel`, batches already sent to that engine
    /// also stop before their next task. Answered by ending the stream.
    Interrupt { id: u32, cancel: bool },
    /// Run `template` once per item, each in a subshell of engine `id`'s
    /// shell, one after the other; answered by one `Task` per item as it
    /// finishes, then `BatchDone`.
    Batch {
        id: u32,
        template: String,
        items: Vec<BatchItem>,
        timeout_ms: Option<u64>,
    },
    /// Data movement (push, pull, scatter, gather); the bulk kinds are
    /// followed by `Bulk` frames.
    Data(EngineData),
    /// A step of the probe for workdirs shared between hosts.
    Workdir(WorkdirProbe),
}

/// Which hosts' workdirs are one directory (an NFS home seen by every
/// node) cannot be told from device and inode numbers, which coincide
/// across file servers. So each host makes a marker file of a random
/// name in its workdir, every host looks for every marker by name, and
/// the markers are removed.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum WorkdirProbe {
    /// Make a fresh marker (replacing an earlier one); answered by
    /// `Marked`.
    Mark,
    /// Which of these markers (`Marked` tokens) the workdir holds;
    /// answered by `Seen`, one entry per token.
    Look(Vec<String>),
    /// Remove the marker; answered by `Unmarked`.
    Unmark,
}

/// Marker tokens are this many hex digits (128 random bits).
pub const MARKER_TOKEN_LEN: usize = 32;

/// The marker's file name for `token`. Its shape (`.` first, `.pcl-` in
/// it, `.tmp` last) is that of pcl's temporary files, which the guard and
/// the journal of a killed engine host remove.
pub fn marker_name(token: &str) -> String {
    format!(".pcl-workdir-{token}.tmp")
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BatchItem {
    pub seq: u64,
    #[serde(with = "serde_bytes")]
    pub item: Vec<u8>,
}

/// One finished task of a batch.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TaskEnd {
    pub seq: u64,
    /// Start, in milliseconds since the Unix epoch, and run time.
    pub start_ms: u64,
    pub runtime_ms: u64,
    pub end: ExecEnd,
    #[serde(with = "serde_bytes")]
    pub stdout: Vec<u8>,
    #[serde(with = "serde_bytes")]
    pub stderr: Vec<u8>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum EngineReply {
    /// One entry per engine of the host, in id order: `Err` carries why
    /// that engine's shell could not start.
    Started(Vec<Result<(), String>>),
    /// Part of engine `id`'s answer to an `Exec`.
    Exec {
        id: u32,
        event: ExecEvent,
    },
    Error(String),
    Task(TaskEnd),
    BatchDone,
    /// Part of the bytes a `Data` request asked for.
    Data(#[serde(with = "serde_bytes")] Vec<u8>),
    /// The end of those bytes, with their checksum.
    DataEnd(Digest),
    /// A `Data` request that stores something succeeded.
    Stored,
    /// A marker was made in `workdir` (the engine host's own path to it).
    Marked {
        token: String,
        workdir: String,
    },
    Seen(Vec<bool>),
    Unmarked,
    /// A `RelayFile` host made its temporary file and waits for the bytes.
    RelayReady,
    /// A `RelayFile` host has written this many bytes of the file.
    Relayed(u64),
    /// A `RelayFile` host lost its upstream peer (`attached`), or none
    /// came: the daemon should `Feed` it from byte `at` of the bulk stream.
    Resume {
        at: u64,
        why: String,
        attached: bool,
    },
    /// A `RelayFile` host could not reach its downstream peer `peer`
    /// (an index into `downstream`); that one needs the bytes another way.
    PeerUnreachable {
        peer: usize,
        why: String,
    },
}

/// What one engine of an `Exec` says: output as it comes, then `Done` or
/// `Error`, its last word.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ExecEvent {
    Stdout(#[serde(with = "serde_bytes")] Vec<u8>),
    Stderr(#[serde(with = "serde_bytes")] Vec<u8>),
    Done(ExecEnd),
    Error(String),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecEnd {
    pub status: i32,
    pub outcome: ExecOutcome,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ExecOutcome {
    Finished,
    /// The timeout fired; the command's process groups were killed and the
    /// shell kept its state.
    TimedOut,
    /// The shell itself ended (`exit`, a crash, or a timeout it would not
    /// yield to); a fresh one replaced it and the old state is gone.
    ShellRestarted(String),
}
