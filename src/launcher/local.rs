use std::net::{IpAddr, Ipv4Addr};
use std::process::Stdio;

use tokio::process::Command;

use super::{LaunchError, Launcher, Spawned};
use crate::config::HostSpec;

/// Engine hosts as child processes of the daemon, on loopback only.
pub(crate) struct LocalLauncher;

impl Launcher for LocalLauncher {
    async fn spawn(&self, host: &HostSpec, session: &str) -> Result<Spawned, LaunchError> {
        let program = match &host.engine_path {
            Some(path) => path.into(),
            None => std::env::current_exe()?,
        };
        let child = Command::new(&program)
            .args(["engine", "--session", session, "--bind", "127.0.0.1:0"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|source| LaunchError::Spawn {
                program: program.display().to_string(),
                source,
            })?;
        Ok(Spawned {
            child,
            address: Ok(IpAddr::V4(Ipv4Addr::LOCALHOST)),
            bootstrap: false,
        })
    }
}
