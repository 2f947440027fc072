//! pcl: interactive parallel computing across many hosts.
//!
//! One binary plays three roles: the CLI (`cli`), the session daemon
//! (`session`) and the engine host (`engine`). Launchers start engine hosts,
//! the transport connects to them over QUIC, and every verb is one file in
//! `ops`, run inside the daemon against its engine handles.

#![warn(unreachable_pub)]

mod cli;
mod config;
mod engine;
mod join;
mod launcher;
mod ops;
// Public for the integration tests and the fuzz target, which speak the
// protocol to real processes.
pub mod protocol;
mod quoting;
mod session;
pub mod transport;
mod whole_file;

pub use cli::main;
pub(crate) use join::join_all;
