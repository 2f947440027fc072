//! The session daemon: one per session, detached, reached over a private
//! Unix socket. It holds the engine connections and runs every verb.

mod client;
mod daemon;
mod error;
mod jobs;
mod paths;
mod pool;
mod targets;

pub use client::Client;
pub use daemon::{ReplySink, serve, serve_main};
pub use error::SessionError;
pub use jobs::{Job, Jobs, Record};
pub use paths::{SessionPaths, session_name};
pub use pool::{EngineCall, EngineCondition, EnginePool, PoolError};
pub use targets::{Targets, fold_ids};
