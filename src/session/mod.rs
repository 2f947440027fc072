//! The session daemon: one per session, detached, reached over a private
//! Unix socket. It holds the engine connections and runs every verb.

mod client;
mod daemon;
mod error;
mod jobs;
mod names;
mod paths;
mod pool;
mod setup;
mod targets;

pub use client::Client;
pub use daemon::{ReplySink, serve, serve_main};
pub use error::SessionError;
pub use jobs::{Job, Jobs, Record};
pub use names::{NameSource, to_reach, to_start};
pub use paths::SessionPaths;
pub use pool::{EngineCall, EnginePool, EngineState, LaunchProgress};
pub use targets::{Targets, fold_ids};
