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

pub(crate) use client::Client;
pub(crate) use daemon::{ReplySink, serve_main};
pub(crate) use error::SessionError;
pub(crate) use jobs::Record;
pub(crate) use names::{NameSource, to_reach, to_start};
pub(crate) use paths::SessionPaths;
pub(crate) use pool::{EngineCall, EngineCondition, EnginePool, PoolError};
pub(crate) use targets::{Targets, fold_ids};
