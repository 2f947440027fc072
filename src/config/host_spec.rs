//! One host to start engines on, fully resolved.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

const DEFAULT_LINK_TIMEOUT: u32 = 10;
const DEFAULT_RECONNECT_GRACE: u32 = 60;

/// The shell engines run when the cluster file does not name one.
const DEFAULT_SHELL: &str = "bash";

/// How engine hosts are started on a host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum LauncherKind {
    /// Through the system OpenSSH client. The default for every host, even
    /// one named `localhost`: only `launcher = "local"` skips ssh.
    #[default]
    Ssh,
    /// As local processes, no ssh.
    Local,
    /// With `srun`, one job step per node of a Slurm allocation.
    Slurm,
}

impl LauncherKind {
    /// As the cluster file writes it.
    pub(crate) fn name(self) -> &'static str {
        match self {
            LauncherKind::Ssh => "ssh",
            LauncherKind::Local => "local",
            LauncherKind::Slurm => "slurm",
        }
    }
}

/// Where the session's traffic to a host travels (`transport`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Transport {
    /// QUIC straight over UDP when the host answers there within a short
    /// bound, else the ssh channel. Hosts started without ssh always use
    /// UDP.
    #[default]
    Auto,
    /// QUIC over UDP only.
    Quic,
    /// QUIC's datagrams over the ssh channel the engine host was started
    /// on: for hosts behind a bastion or a firewall that passes only ssh.
    Ssh,
}

impl Transport {
    /// As the cluster file writes it.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Transport::Auto => "auto",
            Transport::Quic => "quic",
            Transport::Ssh => "ssh",
        }
    }
}

/// Everything needed to start engines on one host: one per expanded host
/// name, with `[defaults]` already applied.
///
/// The serde derives are for handing a validated cluster from one pcl
/// process to another; cluster files are read with `Cluster::parse`/`load`,
/// which check what serde alone would not.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct HostSpec {
    /// Host name as ssh will be given it (one name, never a range).
    pub host: String,
    pub launcher: LauncherKind,
    pub transport: Transport,
    /// Engines on this host, at least 1.
    pub engines: u32,
    pub user: Option<String>,
    pub port: Option<u16>,
    /// Passed to ssh as given; ssh itself expands a leading `~`.
    pub identity: Option<PathBuf>,
    /// Extra ssh arguments, passed verbatim before the host name, e.g.
    /// `["-o", "ConnectTimeout=5"]`.
    pub ssh_options: Vec<String>,
    /// Raw: `~` is expanded on the engine side, where home is known.
    pub workdir: Option<String>,
    /// Where pcl is on the host; `None` lets the launcher upload itself.
    pub engine_path: Option<String>,
    pub shell: String,
    /// Shell code run in every engine's shell before it is ready.
    pub setup: Option<String>,
    /// Seconds of silence on the link before calls to this host fail.
    pub link_timeout: u32,
    /// Seconds a lost host may take to come back with its state before
    /// it is given up and its engines stopped.
    pub reconnect_grace: u32,
    /// Whether this host takes part in relayed pushes: fed by a peer and
    /// passing the bytes on. `false` (or a host peers cannot dial) gets
    /// its copy straight from the daemon.
    pub relay: bool,
    /// The Slurm job whose allocation this node belongs to (the `slurm`
    /// launcher runs its step there); set once the allocation is known.
    pub slurm_job: Option<String>,
}

impl HostSpec {
    /// A host with every setting at its default: ssh, 1 engine, bash.
    pub(crate) fn new(host: impl Into<String>) -> HostSpec {
        HostSpec {
            host: host.into(),
            launcher: LauncherKind::default(),
            transport: Transport::default(),
            engines: 1,
            user: None,
            port: None,
            identity: None,
            ssh_options: Vec::new(),
            workdir: None,
            engine_path: None,
            shell: DEFAULT_SHELL.to_owned(),
            setup: None,
            link_timeout: DEFAULT_LINK_TIMEOUT,
            reconnect_grace: DEFAULT_RECONNECT_GRACE,
            relay: true,
            slurm_job: None,
        }
    }
}
