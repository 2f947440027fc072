//! Starting engine hosts. A launcher only knows how to start the `pcl
//! engine` process somewhere and where to reach it afterwards; the
//! handshake that follows is the same for every launcher.

mod bootstrap;
mod error;
mod handshake;
mod local;
pub(crate) mod slurm;
mod ssh;

use std::net::IpAddr;

use tokio::process::Child;

pub(crate) use error::LaunchError;
pub(crate) use handshake::{EngineHostProcess, ExitNote, launch};
pub(crate) use local::LocalLauncher;
pub(crate) use slurm::SlurmLauncher;
pub(crate) use ssh::SshLauncher;

use crate::config::HostSpec;

/// An engine host process that has been started but not yet greeted.
pub(crate) struct Spawned {
    pub child: Child,
    /// Where the engine host's QUIC port will be, seen from the daemon;
    /// else why the session will not look for it there.
    pub address: Result<IpAddr, String>,
    /// The remote side first reports whether it needs the binary uploaded
    /// (`PCL-BOOT` line); local engines start directly.
    pub bootstrap: bool,
}

/// Fits `local`, `ssh` and `slurm` (`srun` inside an allocation).
pub(crate) trait Launcher {
    fn spawn(
        &self,
        host: &HostSpec,
        session: &str,
    ) -> impl Future<Output = Result<Spawned, LaunchError>> + Send;
}
