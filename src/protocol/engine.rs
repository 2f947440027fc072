//! Daemon <-> engine host messages.

use serde::{Deserialize, Serialize};

use super::data::{Digest, EngineData};

/// First token of the line an engine host prints once it listens.
pub const HANDSHAKE_PREFIX: &str = "PCL-ENGINE/1";

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
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum EngineRequest {
    /// Wait until every engine's shell is ready (setup done); answered by
    /// `EngineReply::Started`.
    Start,
    /// Run a user command in engine `id`'s shell; answered by output
    /// chunks then `Done`.
    Exec {
        id: u32,
        command: String,
        timeout_ms: Option<u64>,
    },
    /// Data movement (push, pull, scatter, gather); the bulk kinds are
    /// followed by `Bulk` frames.
    Data(EngineData),
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum EngineReply {
    /// One entry per engine of the host, in id order: `Err` carries why
    /// that engine's shell could not start.
    Started(Vec<Result<(), String>>),
    Stdout(#[serde(with = "serde_bytes")] Vec<u8>),
    Stderr(#[serde(with = "serde_bytes")] Vec<u8>),
    Done(ExecEnd),
    Error(String),
    /// Part of the bytes a `Data` request asked for.
    Data(#[serde(with = "serde_bytes")] Vec<u8>),
    /// The end of those bytes, with their SHA-256.
    DataEnd(Digest),
    /// A `Data` request that stores something succeeded.
    Stored,
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
