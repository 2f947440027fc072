//! What travels between the three roles: the CLI and the daemon (over the
//! session's Unix socket), and the daemon and engine hosts (over QUIC).
//! Both use the frames of `transport`.

pub mod data;
pub mod engine;
pub mod relay;
pub mod remote;
pub mod session;
pub mod status;
pub mod verbs;
