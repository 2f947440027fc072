//! pcl: interactive parallel computing across many hosts.
//!
//! One binary plays three roles: the CLI (`cli`), the session daemon
//! (`session`) and the engine host (`engine`). Launchers start engine hosts,
//! the transport connects to them over QUIC, and every verb is one file in
//! `ops`, run inside the daemon against its engine handles.

pub mod cli;
pub mod config;
pub mod engine;
mod join;
pub mod launcher;
pub mod ops;
pub mod protocol;
pub mod session;
pub mod transport;

pub(crate) use join::join_all;
