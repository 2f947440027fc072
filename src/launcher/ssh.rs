use std::net::IpAddr;
use std::process::Stdio;

use tokio::process::Command;

use super::bootstrap::remote_script;
use super::{LaunchError, Launcher, Spawned};
use crate::config::{HostSpec, Transport};

/// Engine hosts over the system OpenSSH client, so `~/.ssh/config`,
/// agents, ProxyJump and known_hosts behave as the user expects.
pub(crate) struct SshLauncher;

impl SshLauncher {
    fn ssh(host: &HostSpec) -> Command {
        let mut ssh = Command::new("ssh");
        // The user's own options come first: for ssh the first value of an
        // option wins, so they can override the defaults below.
        ssh.args(&host.ssh_options);
        // Never prompt: a question nobody can answer would hang `pcl up`.
        ssh.args(["-o", "BatchMode=yes", "-o", "ConnectTimeout=10"]);
        // The SSH channel is the tether: it must outlast a link outage
        // that the session may still recover from.
        let alive_count = (host.reconnect_grace / 5 + 1).max(3);
        ssh.args(["-o", "ServerAliveInterval=5", "-o"])
            .arg(format!("ServerAliveCountMax={alive_count}"));
        if let Some(user) = &host.user {
            ssh.args(["-l", user]);
        }
        if let Some(port) = host.port {
            ssh.args(["-p", &port.to_string()]);
        }
        if let Some(identity) = &host.identity {
            ssh.arg("-i").arg(identity);
        }
        ssh
    }

    /// The address ssh itself would connect to, after `~/.ssh/config`
    /// (`HostName` aliases and the like).
    async fn address(host: &HostSpec) -> Result<IpAddr, LaunchError> {
        let resolve_error = |reason: String| LaunchError::Resolve {
            host: host.host.clone(),
            reason,
        };
        let out = Self::ssh(host)
            .arg("-G")
            .arg(&host.host)
            .stdin(Stdio::null())
            .output()
            .await
            .map_err(|source| LaunchError::Spawn {
                program: "ssh".into(),
                source,
            })?;
        if !out.status.success() {
            return Err(resolve_error(
                String::from_utf8_lossy(&out.stderr).trim().to_string(),
            ));
        }
        let text = String::from_utf8_lossy(&out.stdout);
        let hostname = text
            .lines()
            .find_map(|l| l.strip_prefix("hostname "))
            .unwrap_or(&host.host)
            .trim()
            .to_string();
        let mut addrs = tokio::net::lookup_host((hostname.as_str(), 0))
            .await
            .map_err(|e| resolve_error(e.to_string()))?;
        addrs
            .next()
            .map(|a| a.ip())
            .ok_or_else(|| resolve_error("no address".into()))
    }
}

impl Launcher for SshLauncher {
    async fn spawn(&self, host: &HostSpec, session: &str) -> Result<Spawned, LaunchError> {
        let address = match host.transport {
            Transport::Ssh => Err("transport = \"ssh\"".to_string()),
            Transport::Quic => Ok(Self::address(host).await?),
            // A name only the ssh config knows (a ProxyCommand alias) is
            // still reachable over the channel.
            Transport::Auto => Self::address(host).await.map_err(|e| e.to_string()),
        };
        let script = remote_script(host.engine_path.as_deref(), session)?;
        let child = Self::ssh(host)
            .arg("-T")
            .arg(&host.host)
            .arg("--")
            .arg(script)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // With its ProxyCommand or ProxyJump ssh, which a killed ssh
            // would leave behind: the tether's kill ends the whole group.
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .map_err(|source| LaunchError::Spawn {
                program: "ssh".into(),
                source,
            })?;
        Ok(Spawned {
            child,
            address,
            bootstrap: true,
        })
    }
}
